"""tools/eval_luna16.py: outputs, size agreement, bad input, --fold (issue 12).

Expected numbers are worked out by hand in the comments.
"""
import importlib.util
import json
import logging
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from data_prep.common import RunSummary, fold_splits, scan_subset
from projects.lung_nodule.evaluation.froc import evaluate_froc
from projects.lung_nodule.evaluation.luna16_inputs import Candidate, Finding
from projects.lung_nodule.evaluation.size_agreement import pair_reported_nodules

from tests.test_light_imports import HEAVY

REPO_ROOT = Path(__file__).resolve().parents[1]
TOOL = REPO_ROOT / 'tools' / 'eval_luna16.py'
CAND_HEADER = 'seriesuid,coordX,coordY,coordZ,probability\n'
TABLE_HEADER = ('nodule_id,coordX,coordY,coordZ,probability,long_axis_mm,short_axis_mm,'
                'mean_diameter_mm,equivalent_diameter_mm,volume_mm3,slice_first,slice_last\n')
KEYS = ('0.125', '0.25', '0.5', '1', '2', '4', '8')


def load_tool():
    spec = importlib.util.spec_from_file_location('eval_luna16_tool', TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='module')
def tool():
    return load_tool()


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def case(tmp_path):
    """Three scans, three nodules of three size bands, inference tables for the two
    scans with nodules.

    P1: N1 (5 mm, band <6) at (0,0,0), N2 (7 mm, band 6-8) at (30,0,0).
    P2: N3 (20 mm, band >=15) at (0,0,0).  P3: no nodule.
    Candidates: N1 hit 0.9, N2 hit 0.6, N3 hit 0.8, FPs 0.7 (P1) and 0.4 (P3).
    """
    write(tmp_path / 'annotations.csv', 'seriesuid,coordX,coordY,coordZ,diameter_mm\n'
          'P1,0,0,0,5\nP1,30,0,0,7\nP2,0,0,0,20\n')
    write(tmp_path / 'excluded.csv', 'seriesuid,coordX,coordY,coordZ,diameter_mm\nP3,0,0,0,-1\n')
    write(tmp_path / 'uids.txt', 'P1\nP2\nP3\n')
    write(tmp_path / 'cands.csv', CAND_HEADER + 'P1,0.5,0,0,0.9\nP1,30.0004,0,0,0.6\n'
          'P2,1,1,0,0.8\nP1,100,0,0,0.7\nP3,50,50,50,0.4\n')
    # predicted sizes (long, mean, equivalent); hand-set
    write(tmp_path / 'infer' / 'P1' / 'nodules.csv', TABLE_HEADER
          + '1,0.5,0,0,0.9,6.0,5.0,5.5,5.0,65.4,3,5\n'
          + '2,30.0,0,0,0.6,6.0,6.0,6.5,7.5,220.9,3,6\n'
          + '3,100,0,0,0.7,4.0,3.0,3.5,3.6,24.4,1,2\n')
    write(tmp_path / 'infer' / 'P2' / 'nodules.csv', TABLE_HEADER
          + '1,1,1,0,0.8,23.0,19.0,21.0,18.0,3053.6,2,9\n')
    return tmp_path


def run_tool(tool, case: Path, *extra: str, candidates=('cands.csv',), out='out') -> int:
    argv = ['--annotations', str(case / 'annotations.csv'), '--excluded', str(case / 'excluded.csv'),
            '--candidates', *[str(case / c) for c in candidates],
            '--seriesuids', str(case / 'uids.txt'), '--out', str(case / out),
            '--bootstrap', '100', *extra]
    return tool.main(argv)


def metrics_of(case: Path, out='out') -> dict:
    return json.loads((case / out / 'metrics.json').read_text())


def test_outputs_and_figures(tool, case, capsys):
    assert run_tool(tool, case, '--nodules-dir', str(case / 'infer')) == 0
    m = metrics_of(case)
    # 3 scans, 3 nodules all hit; FPs 0.7 (P1), 0.4 (P3). Thresholds (FP/3, TP/3):
    # 0.9 (0, 1/3); 0.8 (0, 2/3); 0.7 (1/3, 2/3); 0.6 (1/3, 1); 0.4 (2/3, 1).
    # 1/8: on (0, 2/3)-(1/3, 2/3): 2/3; 1/4: 2/3; 1/2 .. 8: 1. CPM = (2 * 2/3 + 5) / 7 = 19/21
    assert [m['sensitivity'][k] for k in KEYS] == pytest.approx([2 / 3, 2 / 3, 1, 1, 1, 1, 1])
    assert m['cpm'] == pytest.approx(19 / 21)
    assert set(m['sensitivity_ci95']) == set(KEYS) and len(m['cpm_ci95']) == 2
    assert m['cpm_ci95'][0] <= m['cpm_ci95'][1]
    assert m['counts']['scans'] == 3 and m['counts']['nodules'] == 3
    assert m['counts']['candidates'] == 5 and m['protocol'] == 'scan-list'
    for name in ('froc.png', 'bland_altman.png'):
        assert (case / 'out' / name).read_bytes()[:4] == b'\x89PNG'
    printed = capsys.readouterr().out
    assert '| sensitivity |' in printed and '0.905' in printed  # 19/21 = 0.905
    assert printed.startswith((case / 'out' / 'metrics.md').read_text().strip()[:40])
    assert not list((case / 'out').glob('.*.tmp'))


def test_size_agreement_by_band(tool, case):
    assert run_tool(tool, case, '--nodules-dir', str(case / 'infer')) == 0
    size = metrics_of(case)['size_agreement']
    assert size['pairs'] == 3 and size['reference'] == 'annotated diameter_mm'
    long_axis = size['measures']['long_axis_mm']
    # predicted - reference: N1 6-5 = +1 (<6), N2 6-7 = -1 (6-8), N3 23-20 = +3 (>=15)
    assert long_axis['<6'] == {'n': 1, 'mae_mm': pytest.approx(1.0), 'bias_mm': pytest.approx(1.0)}
    assert long_axis['6-8'] == {'n': 1, 'mae_mm': pytest.approx(1.0),
                                'bias_mm': pytest.approx(-1.0)}
    assert long_axis['8-15'] == {'n': 0, 'mae_mm': None, 'bias_mm': None}
    assert long_axis['>=15'] == {'n': 1, 'mae_mm': pytest.approx(3.0),
                                 'bias_mm': pytest.approx(3.0)}
    # all: MAE (1 + 1 + 3) / 3, bias 1, SD of (1, -1, 3) = sqrt((0 + 4 + 4) / 2) = 2,
    # limits 1 -+ 1.96 * 2
    everything = long_axis['all']
    assert everything['mae_mm'] == pytest.approx(5 / 3) and everything['bias_mm'] == pytest.approx(1)
    assert everything['sd_mm'] == pytest.approx(2) and everything['loa_mm'] == pytest.approx(
        [1 - 3.92, 1 + 3.92])
    # mean diameter: +0.5, -0.5, +1.0 -> MAE 2/3, bias 1/3
    mean = size['measures']['mean_diameter_mm']['all']
    assert mean['mae_mm'] == pytest.approx(2 / 3) and mean['bias_mm'] == pytest.approx(1 / 3)
    # equivalent diameter: 0, +0.5, -2 -> MAE 2.5/3, bias -0.5
    eq = size['measures']['equivalent_diameter_mm']['all']
    assert eq['mae_mm'] == pytest.approx(2.5 / 3) and eq['bias_mm'] == pytest.approx(-0.5)


def test_pairing_takes_the_most_probable_reported_nodule_that_hits(tmp_path):
    # Finding: 6 mm at the origin (hit radius 3 mm). Rows: 0.2 mm away at 0.6, 2 mm away
    # at 0.9 (both hit: the more probable is taken, not the nearer), 3.5 mm away at 0.99
    # (outside the radius: never taken, however probable).
    write(tmp_path / 'S' / 'nodules.csv', TABLE_HEADER + '1,0.2,0,0,0.6,4,3,3.5,3,1,1,2\n'
          '2,0,2,0,0.9,7,6,6.5,6,1,1,2\n' '3,3.5,0,0,0.99,30,20,25,22,1,1,2\n')
    finding = Finding('S', (0.0, 0.0, 0.0), 6.0, False, 'a.csv', 2, 1, 6.0)
    hit = Candidate('S', (0.5, 0.0, 0.0), 0.9, 'c.csv', 7)
    result = evaluate_froc(['S'], [finding], [hit], 0)
    pairs, warnings = pair_reported_nodules(result.matches, tmp_path)
    assert [p.prediction_id for p in pairs] == ['2'] and not warnings
    assert pairs[0].distance_mm == pytest.approx(2.0)
    assert pairs[0].predicted['long_axis_mm'] == 7.0


def test_a_nodule_found_only_below_the_table_threshold_gets_no_size(tmp_path):
    """The FROC counts a hit at any score; nodules.csv holds only the reported nodules.

    Before the fix, such a nodule was paired with the nearest row of its scan, another
    nodule 20 mm away, and its size error was that other nodule's size.
    """
    write(tmp_path / 'S' / 'nodules.csv', TABLE_HEADER + '1,20,0,0,0.8,15,12,13.5,13,1,1,2\n')
    findings = [Finding('S', (0.0, 0.0, 0.0), 8.0, False, 'a.csv', 2, 1, 8.0),
                Finding('S', (20.0, 0.0, 0.0), 14.0, False, 'a.csv', 3, 2, 14.0)]
    hits = [Candidate('S', (0.5, 0.0, 0.0), 0.2, 'c.csv', 2),  # below the table's 0.5
            Candidate('S', (20.0, 0.0, 0.0), 0.8, 'c.csv', 3)]
    result = evaluate_froc(['S'], findings, hits, 0)
    assert result.counts['nodules_detected'] == 2
    pairs, warnings = pair_reported_nodules(result.matches, tmp_path)
    assert [(p.finding.line, p.prediction_id) for p in pairs] == [(3, '1')] and not warnings
    assert pairs[0].predicted['long_axis_mm'] - pairs[0].reference['long_axis_mm'] == 1.0


def test_size_agreement_counts_pairs_beside_detections(tool, case):
    # N2's row (0.6) is dropped from the table as if under a 0.65 score threshold: the
    # candidate still detects N2 (FROC), but it has no size.
    table = case / 'infer' / 'P1' / 'nodules.csv'
    table.write_text(''.join(line for line in table.read_text().splitlines(keepends=True)
                             if not line.startswith('2,')))
    assert run_tool(tool, case, '--nodules-dir', str(case / 'infer')) == 0
    size = metrics_of(case)['size_agreement']
    assert (size['pairs'], size['detected_nodules']) == (2, 3)
    assert size['measures']['long_axis_mm']['6-8']['n'] == 0
    assert '2 nodules paired with a reported nodule of nodules.csv, 3 detected at any score' in (
        case / 'out' / 'metrics.md').read_text()


def test_data_label_goes_into_every_figure_and_the_report(tool, case, monkeypatch):
    """A figure seen on its own must say what data it shows (the demo: synthetic)."""
    from projects.lung_nodule.evaluation import luna16_eval
    titles = []
    for name in ('froc_png', 'bland_altman_png'):
        real = getattr(luna16_eval, name)

        def spy(*args, _real=real, **kwargs):
            titles.append(args[1])
            return _real(*args, **kwargs)
        monkeypatch.setattr(luna16_eval, name, spy)
    assert run_tool(tool, case, '--nodules-dir', str(case / 'infer'),
                    '--data-label', 'synthetic data') == 0
    assert len(titles) == 2 and all(t.startswith('synthetic data: ') for t in titles)
    assert metrics_of(case)['data_label'] == 'synthetic data'
    assert (case / 'out' / 'metrics.md').read_text().startswith(
        '# LUNA16 FROC (synthetic data, scan-list)')
    titles.clear()
    assert run_tool(tool, case, '--nodules-dir', str(case / 'infer'), out='plain') == 0
    assert len(titles) == 2 and not any('synthetic' in t for t in titles)
    assert metrics_of(case, 'plain')['data_label'] is None
    # what made the candidates tells two FROCs of one run apart (the demo: before and
    # after false-positive reduction)
    titles.clear()
    assert run_tool(tool, case, '--nodules-dir', str(case / 'infer'), '--data-label',
                    'synthetic data', '--candidates-label', 'the detector alone', out='det') == 0
    assert titles[0].startswith('synthetic data: LUNA16 FROC of the detector alone\n')
    assert metrics_of(case, 'det')['candidates_label'] == 'the detector alone'
    assert (case / 'det' / 'metrics.md').read_text().startswith(
        '# LUNA16 FROC (synthetic data, the detector alone, scan-list)')


def test_scan_list_from_splits_and_protocol_labels(tool, case):
    write(case / 'fold0_splits.csv', 'seriesuid,split\nP1,test\nP2,train\nP3,val\n')
    write(case / 'fold1_splits.csv', 'seriesuid,split\nP1,train\nP2,test\nP3,test\n')
    write(case / 'c0.csv', CAND_HEADER + 'P1,0.5,0,0,0.9\nP1,30.0004,0,0,0.6\nP1,100,0,0,0.7\n')
    write(case / 'c1.csv', CAND_HEADER + 'P2,1,1,0,0.8\nP3,50,50,50,0.4\n')
    argv = ['--annotations', str(case / 'annotations.csv'), '--excluded', str(case / 'excluded.csv'),
            '--candidates', str(case / 'c0.csv'), str(case / 'c1.csv'),
            '--splits', str(case / 'fold0_splits.csv'), str(case / 'fold1_splits.csv'),
            '--split', 'test', '--out', str(case / 'cv'), '--bootstrap', '0']
    assert tool.main(argv) == 0
    m = metrics_of(case, 'cv')
    # the two folds' test scans are P1, P2, P3: the same FROC as the whole list above
    assert m['cpm'] == pytest.approx(19 / 21) and m['counts']['scans'] == 3
    assert m['protocol'] == 'cross-validation' and m['cpm_ci95'] is None
    # one split file, one candidates file: labelled a random split
    argv = argv[:argv.index('--candidates')] + ['--candidates', str(case / 'cands.csv'),
                                                '--splits', str(case / 'fold1_splits.csv'),
                                                '--out', str(case / 'one'), '--bootstrap', '0']
    assert tool.main(argv) == 0
    m = metrics_of(case, 'one')
    assert m['protocol'] == 'random-split' and 'NOT the 10-fold' in m['protocol_note']
    assert m['counts']['scans'] == 2  # P2, P3
    assert '(random-split)' in (case / 'one' / 'metrics.md').read_text()


# ---------------------------------------------------------------- bad input
def test_candidate_of_an_unlisted_scan_is_reported_and_the_rest_scored(tool, case):
    with open(case / 'cands.csv', 'a') as handle:
        handle.write('Q9,0,0,0,0.99\n')  # line 7
    assert run_tool(tool, case) == 0
    m = metrics_of(case)
    assert any(w.startswith(f'{case / "cands.csv"}, line 7: candidate of scan Q9, which is not '
                            f'in the scan list') for w in m['warnings'])
    assert m['cpm'] == pytest.approx(19 / 21) and m['counts']['candidates'] == 5


def test_nan_coordinates_and_probabilities_are_reported(tool, case):
    with open(case / 'cands.csv', 'a') as handle:
        handle.write('P1,nan,0,0,0.99\nP3,1,2,3,NaN\nP3,1,2,3,abc\n')  # lines 7, 8, 9
    assert run_tool(tool, case) == 0
    warnings = metrics_of(case)['warnings']
    path = case / 'cands.csv'
    assert any(w.startswith(f'{path}, line 7: not a finite number: coordX=') for w in warnings)
    assert any(w.startswith(f'{path}, line 8: not a finite number: probability=') for w in warnings)
    assert any(w.startswith(f'{path}, line 9: not a finite number: probability=') for w in warnings)
    assert metrics_of(case)['cpm'] == pytest.approx(19 / 21)


def test_missing_column_is_an_error_naming_file_and_column(tool, case, caplog):
    write(case / 'bad.csv', 'seriesuid,coordX,coordY,coordZ\nP1,0,0,0\n')
    with caplog.at_level(logging.ERROR):
        assert run_tool(tool, case, candidates=('bad.csv',)) == 1
    assert f'{case / "bad.csv"}: missing column(s) probability' in caplog.text
    assert not (case / 'out' / 'metrics.json').exists()


def test_empty_candidates_file_is_scored_with_a_warning(tool, case):
    write(case / 'empty.csv', '')
    write(case / 'header_only.csv', CAND_HEADER)
    assert run_tool(tool, case, candidates=('empty.csv', 'header_only.csv')) == 0
    m = metrics_of(case)
    assert f'{case / "empty.csv"}: empty file (no header, no rows): no candidates read' \
        in m['warnings']
    assert any(w.startswith(f'{case / "header_only.csv"}: no candidate rows') for w in m['warnings'])
    # nothing detected: every sensitivity 0
    assert m['cpm'] == 0 and set(m['sensitivity'].values()) == {0}
    assert (case / 'out' / 'froc.png').is_file()


def test_annotation_of_an_unlisted_scan_is_reported(tool, case):
    with open(case / 'annotations.csv', 'a') as handle:
        handle.write('Q9,0,0,0,8\n')  # line 5
    write(case / 'excluded.csv', 'seriesuid,coordX,coordY,coordZ,diameter_mm\nP3,0,0,0,-1\n'
          'P2,x,0,0,5\n')  # line 3: bad coordinate
    assert run_tool(tool, case) == 0
    m = metrics_of(case)
    assert any(w.startswith(f'{case / "annotations.csv"}, line 5: finding of scan Q9, which is '
                            f'not in the scan list') for w in m['warnings'])
    assert any(w.startswith(f'{case / "excluded.csv"}, line 3: coordinates are not finite')
               for w in m['warnings'])
    assert m['counts']['nodules'] == 3 and m['cpm'] == pytest.approx(19 / 21)


@pytest.mark.slow
def test_help_and_light_imports():
    code = ('import runpy, sys\n'
            f'sys.argv = [{str(TOOL)!r}, "--help"]\n'
            'try:\n'
            f'    runpy.run_path({str(TOOL)!r}, run_name="__main__")\n'
            'except SystemExit:\n'
            '    pass\n'
            'import projects.lung_nodule.evaluation.luna16_eval\n'
            f'print("HEAVY=" + ",".join(m for m in {HEAVY!r} if m in sys.modules))')
    # run from / so that only the tool's own sys.path entry can find the package
    result = subprocess.run([sys.executable, '-c', code], cwd='/', capture_output=True, text=True,
                            check=True)
    assert '--nodules-dir' in result.stdout
    assert result.stdout.strip().endswith('HEAVY=')


# ---------------------------------------------------------------- --fold
def test_fold_splits_by_subset():
    scans = {f'{s}.{i}': Path(f'/luna/subset{s}/{s}.{i}.mhd') for s in range(3) for i in range(8)}
    scans['loose'] = Path('/luna/elsewhere/loose.mhd')
    summary = RunSummary()
    splits = fold_splits(scans, 1, (0.6, 0.2, 0.2), seed=0, positive=list(scans)[::2],
                         summary=summary)
    assert {u for u, s in splits.items() if s == 'test'} == {f'1.{i}' for i in range(8)}
    # the 16 others: train:val = 0.6:0.2 = 3:1 -> 12 train, 4 val
    rest = Counter(s for u, s in splits.items() if not u.startswith('1.'))
    assert rest == {'train': 12, 'val': 4}
    assert 'loose' not in splits and 'in no subsetN folder' in summary.problems[0]
    assert scan_subset(Path('/luna/subset7/x.mhd')) == 7 and scan_subset(Path('/a/x.mhd')) is None
    with pytest.raises(ValueError, match='no scan under a subset5 folder'):
        fold_splits(scans, 5, (0.6, 0.2, 0.2), 0, summary=summary)


@pytest.mark.slow
def test_luna16_to_coco_fold_option(tmp_path):
    from data_prep import luna16_to_coco
    from data_prep.common import read_splits_csv
    from data_prep.make_synthetic_luna16 import make_synthetic_luna16

    root = tmp_path / 'luna'
    make_synthetic_luna16(root, num_scans=4, seed=2, shape=(16, 64, 64))
    moved = sorted(p.stem for p in (root / 'subset0').glob('*.mhd'))[:2]
    (root / 'subset1').mkdir()
    for uid in moved:
        for suffix in ('.mhd', '.raw'):
            shutil.move(root / 'subset0' / f'{uid}{suffix}', root / 'subset1' / f'{uid}{suffix}')
    out = tmp_path / 'coco'
    code = luna16_to_coco.main(['--luna-root', str(root), '--annotations',
                                str(root / 'annotations.csv'), '--out', str(out), '--fold', '1'])
    assert code == 0
    splits = read_splits_csv(out / 'splits.csv')
    assert sorted(u for u, s in splits.items() if s == 'test') == moved
    assert set(splits.values()) - {'test'} <= {'train', 'val'} and len(splits) == 4
    test_json = json.loads((out / 'annotations' / 'instances_test.json').read_text())
    assert {im['seriesuid'] for im in test_json['images']} <= set(moved)
    assert np.all([s != 'test' for u, s in splits.items() if u not in moved])


def sphere_labels(shape, spheres):
    """A label volume (1 mm voxels) with value v inside each (centre_zyx, diameter, v)."""
    zz, yy, xx = np.indices(shape)
    labels = np.zeros(shape, dtype=np.uint16)
    for (cz, cy, cx), diameter, value in spheres:
        inside = (zz - cz) ** 2 + (yy - cy) ** 2 + (xx - cx) ** 2 <= (diameter / 2) ** 2
        labels[inside] = value
    return labels


def test_reference_sizes_measured_from_label_volumes(tool, case):
    import SimpleITK as sitk

    from projects.lung_nodule.ct.geometry import ScanGeometry
    from projects.lung_nodule.ct.measure import measure_label_volume

    # value = data row of annotations.csv: P1 rows 1 (5 mm) and 2 (7 mm), P2 row 3 (20 mm)
    volumes = {'P1': sphere_labels((20, 40, 40), [((10, 10, 10), 5, 1), ((10, 25, 25), 7, 2)]),
               'P2': sphere_labels((28, 28, 28), [((14, 14, 14), 20, 3)])}
    (case / 'labels').mkdir()
    for uid, labels in volumes.items():
        sitk.WriteImage(sitk.GetImageFromArray(labels), str(case / 'labels' / f'{uid}.nii.gz'))
    assert run_tool(tool, case, '--nodules-dir', str(case / 'infer'), '--reference-labels',
                    str(case / 'labels')) == 0
    size = metrics_of(case)['size_agreement']
    assert size['pairs'] == 3 and 'label volumes' in size['reference']
    # the reference of each nodule is the measurement of *its* label (the MEASURE code's
    # figures), so a swapped row <-> label mapping would change the errors
    measured = {}
    for uid, labels in volumes.items():
        geometry = ScanGeometry((labels.shape[2], labels.shape[1], labels.shape[0]), (1, 1, 1),
                                (0, 0, 0))
        measured.update({m.nodule_id: m for m in measure_label_volume(labels, geometry)})
    assert abs(measured[3].equivalent_diameter_mm - 20) < 1  # a real 20 mm sphere
    predicted_long = {1: 6.0, 2: 6.0, 3: 23.0}
    errors = {v: predicted_long[v] - measured[v].long_axis_mm for v in (1, 2, 3)}
    long_axis = size['measures']['long_axis_mm']
    assert long_axis['<6']['bias_mm'] == pytest.approx(errors[1])
    assert long_axis['6-8']['bias_mm'] == pytest.approx(errors[2])
    assert long_axis['>=15']['bias_mm'] == pytest.approx(errors[3])
    assert (case / 'out' / 'bland_altman.png').is_file()
    # a scan without its label volume: warned, its nodules left out of the agreement
    (case / 'labels' / 'P2.nii.gz').unlink()
    assert run_tool(tool, case, '--nodules-dir', str(case / 'infer'), '--reference-labels',
                    str(case / 'labels')) == 0
    m = metrics_of(case)
    assert m['size_agreement']['pairs'] == 2
    assert any('P2.nii.gz: no reference label volume' in w for w in m['warnings'])
