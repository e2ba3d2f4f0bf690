"""Whole-scan inference (tools/infer_scan.py, projects.lung_nodule.apis) with an oracle
network: format, geometry, linking, measurement, outputs, bad input, shards, resume.

The oracle (tests/infer_helpers.py) returns the true cross-sections of phantom
nodules, so every check here is on the pipeline. The real mmdet path is in
tests/test_infer_real_model.py.
"""
from __future__ import annotations

import csv
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from projects.lung_nodule.apis.cohort import merge_shards
from projects.lung_nodule.apis.nodule_inferencer import NoduleInferencer
from projects.lung_nodule.apis.outputs import CANDIDATE_COLUMNS
from projects.lung_nodule.ct.measure import NODULE_COLUMNS
from tests.infer_helpers import OraclePredictor, make_nodule_scan, without_lungs
from tests import scanner_inputs
from tests.scanner_inputs import truncate_file, write_dicom_series, write_dicom_study, write_png

REPO_ROOT = Path(__file__).resolve().parents[1]
UID = '1.3.6.1.4.1.14519.5.2.1.6279.6001.{}'


def write_sitk_volume(volume, spacing_xyz, origin_xyz, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return scanner_inputs.write_sitk_volume(volume, spacing_xyz, origin_xyz, path)


def write_nifti_ras(volume, spacing_xyz, origin_xyz, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return scanner_inputs.write_nifti_ras(volume, spacing_xyz, origin_xyz, path)


def _tool():
    sys.path.insert(0, str(REPO_ROOT / 'tools'))
    spec = importlib.util.spec_from_file_location('infer_scan', REPO_ROOT / 'tools/infer_scan.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='module')
def tool():
    return _tool()


@pytest.fixture(scope='module')
def scan():
    return make_nodule_scan()


def _oracle_cli(tool, monkeypatch, nodules, **oracle_kwargs):
    """tools/infer_scan.py with its network replaced by an oracle; returns the oracle."""
    oracle = OraclePredictor(nodules, **oracle_kwargs)

    def build(args, device):
        return NoduleInferencer.from_predictor(oracle, batch_size=args.batch_size,
                                               infer_pixel_spacing_mm=0.7,
                                               score_thr=args.score_thr)

    monkeypatch.setattr(tool, 'build_inferencer', build)
    return oracle


def _run(tool, inputs, out, *extra) -> int:
    return tool.main(['CONFIG_UNUSED.py', 'CKPT_UNUSED.pth', *map(str, inputs), '--out', str(out),
                      '--no-progress', '--workers', '0', *extra])


@pytest.fixture
def no_files_check(tool, monkeypatch, tmp_path):
    """The oracle needs no config/checkpoint files: give main() two empty ones."""
    for name in ('CONFIG_UNUSED.py', 'CKPT_UNUSED.pth'):
        (tmp_path / name).write_text('')
    monkeypatch.chdir(tmp_path)


def _rows(path: Path) -> list[dict]:
    with open(path, newline='') as handle:
        return list(csv.DictReader(handle))


def _assert_one_per_true_nodule(rows, nodules):
    assert len(rows) == len(nodules)
    for truth in nodules:
        distances = [np.linalg.norm(np.array([float(r['coordX']), float(r['coordY']),
                                              float(r['coordZ'])]) - truth.centre_xyz)
                     for r in rows]
        assert min(distances) < truth.radius_mm
        # one row within the radius, and no other
        assert sum(d < truth.radius_mm for d in distances) == 1


@pytest.mark.parametrize('padding', [-2048, -2000, -3024])
def test_oracle_end_to_end(tool, monkeypatch, no_files_check, tmp_path, padding):
    scan = make_nodule_scan(padding_hu=padding)
    uid = UID.format(padding + 5000)
    mhd = write_sitk_volume(scan.volume, scan.spacing_xyz, scan.origin_xyz,
                            tmp_path / 'subset0' / f'{uid}.mhd')
    _oracle_cli(tool, monkeypatch, scan.nodules)
    out = tmp_path / 'out'
    assert _run(tool, [mhd], out) == 0

    folder = out / uid
    rows = _rows(folder / 'nodules.csv')
    assert tuple(rows[0].keys()) == NODULE_COLUMNS
    _assert_one_per_true_nodule(rows, scan.nodules)
    # ids 1..k, most probable first; the json holds the same rows
    assert [int(r['nodule_id']) for r in rows] == list(range(1, len(rows) + 1))
    table = json.loads((folder / 'nodules.json').read_text())
    assert [row['nodule_id'] for row in table] == [1, 2]
    for row, truth in zip(sorted(rows, key=lambda r: -float(r['long_axis_mm'])),
                          sorted(scan.nodules, key=lambda n: -n.radius_mm)):
        assert abs(float(row['long_axis_mm']) - 2 * truth.radius_mm) < 1.5
        expected_volume = 4 / 3 * np.pi * truth.radius_mm ** 3
        assert abs(float(row['volume_mm3']) - expected_volume) < 0.25 * expected_volume

    labels = sitk.ReadImage(str(folder / 'nodules.nii.gz'))
    source = sitk.ReadImage(str(mhd))
    assert labels.GetSize() == source.GetSize()
    # NIfTI stores geometry as float32: equal to float32 precision
    for ours, theirs in ((labels.GetOrigin(), source.GetOrigin()),
                         (labels.GetSpacing(), source.GetSpacing()),
                         (labels.GetDirection(), source.GetDirection())):
        np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-5)
    values = sitk.GetArrayFromImage(labels)
    assert sorted(np.unique(values).tolist()) == [0, 1, 2]

    pngs = sorted(p.name for p in folder.glob('nodule_*.png'))
    assert pngs == ['nodule_1.png', 'nodule_2.png']
    assert not (folder / 'nodules.seg.dcm').exists()  # not a DICOM input
    done = json.loads((folder / 'done.json').read_text())
    assert done['nodules'] == 2 and done['source'] == str(mhd)
    assert set(done['timings']) >= {'read', 'lung_mask', 'slices', 'network', 'link_measure',
                                    'write'}

    candidates = _rows(out / 'candidates.csv')
    assert tuple(candidates[0].keys()) == CANDIDATE_COLUMNS
    assert len(candidates) == 2 and {c['seriesuid'] for c in candidates} == {uid}
    summary = json.loads((out / 'summary.json').read_text())
    assert summary['scans'] == 1 and summary['nodules'] == 2 and summary['skipped'] == []
    assert set(summary['seconds_per_stage']) >= {'network', 'write'}


def test_score_thr_filters_what_a_person_reads_only(tool, monkeypatch, no_files_check,
                                                    tmp_path, scan):
    mhd = write_sitk_volume(scan.volume, scan.spacing_xyz, scan.origin_xyz, tmp_path / 's.mhd')
    _oracle_cli(tool, monkeypatch, scan.nodules, score=0.3)
    assert _run(tool, [mhd], tmp_path / 'out', '--score-thr', '0.5') == 0
    assert _rows(tmp_path / 'out/s/nodules.csv') == []
    assert not list((tmp_path / 'out/s').glob('*.png'))
    assert sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / 'out/s/nodules.nii.gz'))).max() == 0
    candidates = _rows(tmp_path / 'out/candidates.csv')
    assert len(candidates) == 2 and all(float(c['probability']) == 0.3 for c in candidates)


def test_same_nodules_from_mhd_nifti_ras_and_dicom(tool, monkeypatch, no_files_check, tmp_path,
                                                   scan):
    mhd = write_sitk_volume(scan.volume, scan.spacing_xyz, scan.origin_xyz, tmp_path / 'a.mhd')
    nii = write_nifti_ras(scan.volume, scan.spacing_xyz, scan.origin_xyz, tmp_path / 'b.nii.gz')
    dicom = write_dicom_series(scan.volume, scan.spacing_xyz, scan.origin_xyz, tmp_path / 'dcm')
    _oracle_cli(tool, monkeypatch, scan.nodules)
    out = tmp_path / 'out'
    assert _run(tool, [mhd, nii, tmp_path / 'dcm'], out) == 0
    tables = [_rows(out / name / 'nodules.csv') for name in ('a', 'b', dicom.series_uid)]
    for table in tables:
        _assert_one_per_true_nodule(table, scan.nodules)
    reference = tables[0]
    for table in tables[1:]:
        for row, ref in zip(table, reference):
            for column in ('coordX', 'coordY', 'coordZ'):
                assert abs(float(row[column]) - float(ref[column])) < 0.01
            for column in ('long_axis_mm', 'short_axis_mm', 'volume_mm3'):
                assert abs(float(row[column]) - float(ref[column])) < 1e-3
    # the RAS NIfTI's label volume is in its own (flipped) geometry
    labels = sitk.ReadImage(str(out / 'b/nodules.nii.gz'))
    np.testing.assert_allclose(labels.GetDirection(), sitk.ReadImage(str(nii)).GetDirection(),
                               atol=1e-6)
    assert {r['seriesuid'] for r in _rows(out / 'candidates.csv')} == {'a', 'b', dicom.series_uid}


def test_dicom_seg_reads_back_and_matches_the_label_volume(tool, monkeypatch, no_files_check,
                                                           tmp_path, scan):
    import highdicom as hd
    dicom = write_dicom_series(scan.volume, scan.spacing_xyz, scan.origin_xyz, tmp_path / 'dcm')
    _oracle_cli(tool, monkeypatch, scan.nodules)
    assert _run(tool, [tmp_path / 'dcm'], tmp_path / 'out') == 0
    folder = tmp_path / 'out' / dicom.series_uid
    seg = hd.seg.segread(str(folder / 'nodules.seg.dcm'))
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == dicom.series_uid
    assert list(seg.segment_numbers) == [1, 2]
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / 'nodules.nii.gz')))
    import pydicom
    sop_uids = [pydicom.dcmread(str(f), stop_before_pixels=True).SOPInstanceUID
                for f in dicom.files]
    frames = seg.get_pixels_by_source_instance(source_sop_instance_uids=sop_uids,
                                               combine_segments=True, skip_overlap_checks=True)
    assert frames.shape == labels.shape
    np.testing.assert_array_equal(frames, labels)


def test_resampled_3mm_pixels_and_thick_slices(tool, monkeypatch, no_files_check, tmp_path):
    scan = make_nodule_scan(shape_zyx=(16, 64, 64), spacing_xyz=(3.0, 3.0, 5.0),
                            radii_mm=(9.0, 8.0))
    mhd = write_sitk_volume(scan.volume, scan.spacing_xyz, scan.origin_xyz, tmp_path / 'thick.mhd')
    oracle = _oracle_cli(tool, monkeypatch, scan.nodules)
    assert _run(tool, [mhd], tmp_path / 'out') == 0
    done = json.loads((tmp_path / 'out/thick/done.json').read_text())
    assert done['resampling']['model_shape'] == [274, 274]  # 64 px * 3 mm / 0.7 mm
    rows = _rows(tmp_path / 'out/thick/nodules.csv')
    _assert_one_per_true_nodule(rows, scan.nodules)
    for row in rows:  # slices as they are: a 16-18 mm nodule on 5 mm slices
        assert 2 <= int(row['slice_last']) - int(row['slice_first']) + 1 <= 5
    assert oracle.calls > 0
    labels = sitk.ReadImage(str(tmp_path / 'out/thick/nodules.nii.gz'))
    assert labels.GetSize() == (64, 64, 16)
    np.testing.assert_allclose(labels.GetSpacing(), (3.0, 3.0, 5.0))


@pytest.mark.parametrize('mode, kept', [('filter', 2), ('blank', 3)])
def test_filter_mode_drops_detections_outside_the_lung(scan, mode, kept):
    from projects.lung_nodule.ct.io import CTScan
    from projects.lung_nodule.ct.geometry import ScanGeometry
    image = sitk.GetImageFromArray(scan.volume)
    image.SetSpacing(scan.spacing_xyz)
    image.SetOrigin(scan.origin_xyz)
    ct = CTScan(array=sitk.GetArrayViewFromImage(image), geometry=ScanGeometry.from_image(image),
                path=Path('phantom.mhd'), image=image)
    oracle = OraclePredictor(scan.nodules, extra_in_body=2.0)
    inferencer = NoduleInferencer.from_predictor(oracle, lung_mask_mode=mode)
    result = inferencer(ct)
    assert len(result.candidates) == kept


def test_bad_inputs_are_named_and_skipped(tool, monkeypatch, no_files_check, tmp_path, scan):
    good = write_sitk_volume(scan.volume, scan.spacing_xyz, scan.origin_xyz, tmp_path / 'good.mhd')
    truncated = write_sitk_volume(scan.volume, scan.spacing_xyz, scan.origin_xyz,
                                  tmp_path / 'cut.mhd')
    truncate_file(tmp_path / 'cut.raw', 1000)
    picture = write_png(tmp_path / 'picture.nii.gz')
    write_dicom_series(scan.volume, scan.spacing_xyz, scan.origin_xyz, tmp_path / 'mr',
                       modality='MR')
    no_lungs = write_sitk_volume(without_lungs(scan), scan.spacing_xyz, scan.origin_xyz,
                                 tmp_path / 'nolungs.nii.gz')
    missing = tmp_path / 'missing.mhd'
    bad = [truncated, picture, tmp_path / 'mr', no_lungs, missing]
    _oracle_cli(tool, monkeypatch, scan.nodules)
    out = tmp_path / 'out'
    assert _run(tool, [good, *bad], out) == 0  # one scan done: success
    summary = json.loads((out / 'summary.json').read_text())
    assert summary['scans'] == 1
    reasons = {item['input']: item['reason'] for item in summary['skipped']}
    assert set(reasons) == {str(p) for p in bad}
    assert 'cut.raw' in reasons[str(truncated)]
    assert 'no lung' in reasons[str(no_lungs)] and str(no_lungs) in reasons[str(no_lungs)]
    for path in bad:
        assert path.name in reasons[str(path)]
    assert sorted(p.name for p in out.iterdir()) == ['candidates.csv', 'good', 'summary.json']
    # --strict: any skipped scan fails the run; only bad inputs: fails without --strict
    assert _run(tool, [good, picture], tmp_path / 'strict', '--strict') == 1
    assert _run(tool, bad, tmp_path / 'all_bad') == 1


def test_study_folder_lists_its_series_and_series_picks_one(tool, monkeypatch, no_files_check,
                                                            tmp_path, scan):
    written = write_dicom_study(tmp_path / 'study', [scan.volume, scan.volume],
                                scan.spacing_xyz, scan.origin_xyz)
    _oracle_cli(tool, monkeypatch, scan.nodules)
    assert _run(tool, [tmp_path / 'study'], tmp_path / 'out') == 1
    reason = json.loads((tmp_path / 'out/summary.json').read_text())['skipped'][0]['reason']
    assert all(series.series_uid in reason for series in written)
    wanted = written[1].series_uid
    assert _run(tool, [tmp_path / 'study'], tmp_path / 'out2', '--series', wanted) == 0
    _assert_one_per_true_nodule(_rows(tmp_path / 'out2' / wanted / 'nodules.csv'), scan.nodules)


def test_same_scan_id_twice_never_overwrites(tool, monkeypatch, no_files_check, tmp_path, scan):
    first = write_sitk_volume(scan.volume, scan.spacing_xyz, scan.origin_xyz,
                              tmp_path / 'a' / 'chest.nii.gz')
    second = write_nifti_ras(scan.volume, scan.spacing_xyz, scan.origin_xyz,
                             tmp_path / 'b' / 'chest.nii.gz')
    _oracle_cli(tool, monkeypatch, scan.nodules)
    out = tmp_path / 'out'
    assert _run(tool, [first, second], out) == 0
    assert json.loads((out / 'chest/done.json').read_text())['source'] == str(first)
    assert json.loads((out / 'chest__2/done.json').read_text())['source'] == str(second)
    # another run into the same folder with another input of that id: refused, kept
    other = write_sitk_volume(scan.volume, scan.spacing_xyz, scan.origin_xyz,
                              tmp_path / 'c' / 'chest.nii.gz')
    assert _run(tool, [other], out) == 1
    assert json.loads((out / 'chest/done.json').read_text())['source'] == str(first)


def _cohort(tmp_path, scan, count=3):
    paths = []
    for i in range(count):
        shifted = tuple(np.add(scan.origin_xyz, (0.0, 0.0, 1000.0 * i)))
        paths.append(write_sitk_volume(scan.volume, scan.spacing_xyz, shifted,
                                       tmp_path / 'cohort' / f'{UID.format(i)}.mhd'))
    # shift the oracle's truth alike: one oracle for all scans
    nodules = []
    from tests.infer_helpers import TrueNodule
    for i in range(count):
        nodules += [TrueNodule(tuple(np.add(n.centre_xyz, (0.0, 0.0, 1000.0 * i))), n.radius_mm)
                    for n in scan.nodules]
    return paths, nodules


def test_two_shards_equal_one_run(tool, monkeypatch, no_files_check, tmp_path, scan):
    paths, nodules = _cohort(tmp_path, scan)
    _oracle_cli(tool, monkeypatch, nodules)
    assert _run(tool, paths, tmp_path / 'one') == 0
    for k in range(2):
        assert _run(tool, paths, tmp_path / 'two', '--shard', f'{k}/2') == 0
    assert (tmp_path / 'two/candidates.0-of-2.csv').is_file()
    merged, count = merge_shards(tmp_path / 'two')
    assert count == 3 * len(scan.nodules)
    assert merged.read_text() == (tmp_path / 'one/candidates.csv').read_text()
    for path in paths:
        one = (tmp_path / 'one' / path.stem / 'nodules.csv').read_text()
        assert (tmp_path / 'two' / path.stem / 'nodules.csv').read_text() == one
    summary = json.loads((tmp_path / 'two/summary.json').read_text())
    assert summary['scans'] == 3 and summary['merged_from'] == 2


def test_merge_refuses_a_missing_shard(tool, monkeypatch, no_files_check, tmp_path, scan):
    paths, nodules = _cohort(tmp_path, scan)
    _oracle_cli(tool, monkeypatch, nodules)
    assert _run(tool, paths, tmp_path / 'out', '--shard', '1/3') == 0
    with pytest.raises(FileNotFoundError, match=r'shards \[0, 2\] of 3'):
        merge_shards(tmp_path / 'out')


def test_killed_run_resumes(tool, monkeypatch, no_files_check, tmp_path, scan):
    paths, nodules = _cohort(tmp_path, scan)
    oracle = _oracle_cli(tool, monkeypatch, nodules)
    assert _run(tool, paths, tmp_path / 'full') == 0

    class Killed(BaseException):
        """Stands in for SIGKILL in the middle of the second scan's network."""

    calls = {'n': 0}
    original = OraclePredictor.__call__

    def dying(self, images, z_indices, scan_):
        calls['n'] += 1
        if scan_.scan_id == paths[1].stem:
            raise Killed()
        return original(self, images, z_indices, scan_)

    monkeypatch.setattr(OraclePredictor, '__call__', dying)
    out = tmp_path / 'out'
    with pytest.raises(Killed):
        _run(tool, paths, out)
    assert (out / paths[0].stem / 'done.json').is_file()
    assert not (out / paths[1].stem).exists()  # nothing half-written that looks done
    assert not (out / 'candidates.csv').exists()

    monkeypatch.setattr(OraclePredictor, '__call__', original)
    before = oracle.calls
    assert _run(tool, paths, out) == 0
    summary = json.loads((out / 'summary.json').read_text())
    assert summary['scans'] == 3 and summary['scans_resumed'] == 1
    assert (out / 'candidates.csv').read_text() == (tmp_path / 'full/candidates.csv').read_text()
    # the first scan was not run again: only two scans' slices went through the oracle
    lung_batches = json.loads((out / paths[1].stem / 'done.json').read_text())
    assert oracle.calls - before == 2 * -(-lung_batches['slices_used']['count'] // 4)


def test_outputs_of_another_model_are_run_again_not_resumed(tool, monkeypatch, no_files_check,
                                                            tmp_path, scan):
    """A checkpoint retrained at the same path must not resume the old model's scans."""
    paths, nodules = _cohort(tmp_path, scan, count=2)
    oracle = _oracle_cli(tool, monkeypatch, nodules)
    out = tmp_path / 'out'
    assert _run(tool, paths, out) == 0
    first = json.loads((out / paths[0].stem / 'done.json').read_text())['model_id']
    calls = oracle.calls
    assert _run(tool, paths, out) == 0  # same model: every scan resumed, none run
    assert oracle.calls == calls
    assert json.loads((out / 'summary.json').read_text())['scans_resumed'] == 2

    (tmp_path / 'CKPT_UNUSED.pth').write_bytes(b'retrained')  # same path, other weights
    assert _run(tool, paths, out) == 0
    summary = json.loads((out / 'summary.json').read_text())
    assert summary['scans'] == 2 and summary['scans_resumed'] == 0 and oracle.calls > calls
    second = json.loads((out / paths[0].stem / 'done.json').read_text())['model_id']
    assert second != first
    calls = oracle.calls
    assert _run(tool, paths, out, '--score-thr', '0.3') == 0  # another reading threshold
    assert json.loads((out / 'summary.json').read_text())['scans_resumed'] == 0
    assert oracle.calls > calls


def test_luna16_root_with_splits(tool, monkeypatch, no_files_check, tmp_path, scan):
    paths, nodules = _cohort(tmp_path, scan)
    splits = tmp_path / 'splits.csv'
    splits.write_text('seriesuid,split\n'
                      f'{paths[0].stem},train\n{paths[1].stem},test\n{paths[2].stem},test\n'
                      f'{UID.format(99)},test\n')
    _oracle_cli(tool, monkeypatch, nodules)
    out = tmp_path / 'out'
    assert _run(tool, [tmp_path / 'cohort'], out, '--splits', str(splits), '--split', 'test') == 0
    summary = json.loads((out / 'summary.json').read_text())
    assert sorted(r['scan_id'] for r in summary['done']) == [paths[1].stem, paths[2].stem]
    assert [s['input'] for s in summary['skipped']] == [UID.format(99)]


def test_help_runs(tool, capsys):
    with pytest.raises(SystemExit) as exit_info:
        tool.main(['--help'])
    assert exit_info.value.code == 0
    assert '--shard' in capsys.readouterr().out
