"""The false-positive reduction stage: candidates -> 3-view images
(data_prep/candidates_to_views.py), and their rescoring (tools/rescore_candidates.py)."""
import csv
import json
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from data_prep import candidates_to_views
from data_prep.make_synthetic_luna16 import make_synthetic_luna16

from tests.ct_reference import read_annotations_csv

FPR_CONFIG = 'configs/fp_reduction/resnet20_1xb64_candidate-views.py'
HEADER = ['seriesuid', 'coordX', 'coordY', 'coordZ', 'probability']


def _write_csv(path: Path, header, rows) -> Path:
    with open(path, 'w', newline='') as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture(scope='module')
def luna(tmp_path_factory):
    """Three synthetic scans: two training scans, one test scan; their nodules."""
    root = tmp_path_factory.mktemp('fpr')
    make_synthetic_luna16(root, num_scans=3, seed=5, shape=(24, 96, 96))
    nodules = read_annotations_csv(root / 'annotations.csv')
    uids = sorted(p.stem for p in (root / 'subset0').glob('*.mhd'))
    train_a = next(u for u in uids if nodules.get(u))
    train_b, test = [u for u in uids if u != train_a]
    splits = _write_csv(root / 'splits.csv', ['seriesuid', 'split'],
                        [[train_a, 'train'], [train_b, 'train'], [test, 'test']])
    return root, nodules, train_a, train_b, test, splits


def _candidates(root, nodules, train_a, test) -> tuple[Path, Path]:
    (x, y, z), diameter = nodules[train_a][0]
    rows = [[train_a, x + diameter / 8, y, z, 0.9],      # a hit (inside the radius)
            [train_a, x + 40.0, y, z, 0.8],              # a false positive
            [train_a, x, y + 40.0, z, 0.7],              # on an excluded finding
            [test, 0.0, 0.0, z, 0.6]]                    # a test scan: never exported
    candidates = _write_csv(root / 'candidates.csv', HEADER, rows)
    excluded = _write_csv(root / 'excluded.csv', HEADER[:4] + ['diameter_mm'],
                          [[train_a, x, y + 40.0, z, 10.0]])
    return candidates, excluded


def test_views_of_the_training_scans_by_class(luna, tmp_path):
    root, nodules, train_a, train_b, test, splits = luna
    candidates, excluded = _candidates(root, nodules, train_a, test)
    out = tmp_path / 'views'
    code = candidates_to_views.main([
        '--luna-root', str(root), '--annotations', str(root / 'annotations.csv'),
        '--candidates', str(candidates), '--splits', str(splits), '--excluded', str(excluded),
        '--copies', '4', '--out', str(out)])
    assert code == 0
    n_train_nodules = len(nodules.get(train_a, [])) + len(nodules.get(train_b, []))
    positives = sorted((out / 'train/nodule').glob('*.png'))
    negatives = sorted((out / 'train/normal').glob('*.png'))
    assert len(positives) == 4 * n_train_nodules + 1  # copies of each nodule + the hit
    assert len(negatives) == 1  # the false positive; the excluded one is in neither class
    assert not any(test in p.name for p in positives + negatives)
    image = cv2.imread(str(negatives[0]), cv2.IMREAD_UNCHANGED)
    assert image.shape == (32, 32, 3) and image.dtype == np.uint8
    info = json.loads((out / 'info.json').read_text())
    assert info == {'view_size': 32, 'mm_per_pixel': 0.6,
                    'channels': ['axial', 'coronal', 'sagittal']}
    counts = json.loads((out / 'summary.json').read_text())['counts']
    assert counts['candidates_hit'] == 1 and counts['candidates_on_excluded'] == 1
    assert counts['scans_without_candidates'] == 1  # train_b: its nodules only


def _ras_nifti_copy(mhd: Path, out: Path) -> Path:
    """The same anatomy in RAS order (direction diag(-1, -1, 1)), as NIfTI files often are."""
    import SimpleITK as sitk
    image = sitk.ReadImage(str(mhd))
    flipped = sitk.GetImageFromArray(sitk.GetArrayFromImage(image)[:, ::-1, ::-1].copy())
    flipped.SetSpacing(image.GetSpacing())
    nx, ny, _ = image.GetSize()
    flipped.SetOrigin(image.TransformIndexToPhysicalPoint((nx - 1, ny - 1, 0)))
    flipped.SetDirection((-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0))
    sitk.WriteImage(flipped, str(out))
    return out


@pytest.mark.parametrize('layout', ['mhd', 'ras_nifti'])
def test_background_points_lie_on_lung_structures_away_from_findings(luna, tmp_path, layout):
    root, nodules, train_a, *_ = luna
    from projects.lung_nodule.ct import read_annotations, read_scan
    path = root / 'subset0' / f'{train_a}.mhd'
    if layout == 'ras_nifti':
        path = _ras_nifti_copy(path, tmp_path / f'{train_a}.nii.gz')
    scan = read_scan(path)
    if layout == 'ras_nifti':
        assert np.diag(scan.geometry.direction_matrix).tolist() == [-1.0, -1.0, 1.0]
    findings = [f for f in read_annotations(root / 'annotations.csv')[0]
                if f.seriesuid == train_a]
    points = candidates_to_views.background_points(scan, findings, 20,
                                                   np.random.default_rng(0))
    assert points.shape == (20, 3)
    again = candidates_to_views.background_points(scan, findings, 20, np.random.default_rng(0))
    np.testing.assert_array_equal(points, again)  # the seed decides
    index = np.rint(scan.geometry.world_to_index(points)).astype(int)  # (x, y, z)
    hu = scan.array[index[:, 2], index[:, 1], index[:, 0]]
    assert (hu > candidates_to_views.DENSE_HU).all()  # on tissue, not in the air
    for f in findings:
        distance = np.linalg.norm(points - np.asarray(f.coord_xyz), axis=1)
        assert (distance > max(1.5 * f.radius_mm, 7.5)).all()
    assert candidates_to_views.background_points(
        scan, findings, 0, np.random.default_rng(0)).shape == (0, 3)


def test_background_views_join_the_normal_class(luna, tmp_path):
    root, nodules, train_a, train_b, test, splits = luna
    candidates, excluded = _candidates(root, nodules, train_a, test)
    out = tmp_path / 'views'
    assert candidates_to_views.main([
        '--luna-root', str(root), '--annotations', str(root / 'annotations.csv'),
        '--candidates', str(candidates), '--splits', str(splits), '--excluded', str(excluded),
        '--copies', '4', '--background', '6', '--out', str(out)]) == 0
    counts = json.loads((out / 'summary.json').read_text())['counts']
    assert counts['views_background'] == 12  # 6 on each of the two training scans
    assert len(list((out / 'train/normal').glob('*.png'))) == 1 + 12  # + the false positive
    assert len(list((out / 'train/normal').glob(f'{train_b}_*.png'))) == 6


def test_an_unreadable_scan_is_named_and_the_others_exported(luna, tmp_path):
    root, nodules, train_a, train_b, test, splits = luna
    candidates, _ = _candidates(root, nodules, train_a, test)
    broken = tmp_path / 'luna'
    (broken / 'subset0').mkdir(parents=True)
    for path in (root / 'subset0').iterdir():
        data = path.read_bytes()
        if path.name == f'{train_b}.raw':
            data = data[:100]  # truncated download
        (broken / 'subset0' / path.name).write_bytes(data)
    out = tmp_path / 'views'
    code = candidates_to_views.main([
        '--luna-root', str(broken), '--annotations', str(root / 'annotations.csv'),
        '--candidates', str(candidates), '--splits', str(splits), '--out', str(out)])
    assert code == 0
    summary = json.loads((out / 'summary.json').read_text())
    assert list(summary['skipped_scans']) == [train_b]
    assert list((out / 'train/normal').glob(f'{train_a}_*.png'))
    assert not list(out.parent.glob('.views.partial'))


def test_nothing_to_export_leaves_no_output(luna, tmp_path):
    root, nodules, train_a, train_b, test, _ = luna
    candidates, _ = _candidates(root, nodules, train_a, test)
    only_test = _write_csv(tmp_path / 'splits.csv', ['seriesuid', 'split'], [[test, 'test']])
    out = tmp_path / 'views'
    code = candidates_to_views.main([
        '--luna-root', str(root), '--annotations', str(root / 'annotations.csv'),
        '--candidates', str(candidates), '--splits', str(only_test), '--out', str(out)])
    assert code == 1
    assert not (out / 'train').exists() and not (out / 'info.json').exists()


@pytest.fixture(scope='module')
def classifier_checkpoint(repo_root, tmp_path_factory):
    """An untrained view classifier saved as tools/train.py saves one (with its classes)."""
    from mmengine.config import Config
    from mmengine.registry import DefaultScope
    from mmpretrain.registry import MODELS

    import projects.lung_nodule.registry  # noqa: F401
    cfg = Config.fromfile(str(repo_root / FPR_CONFIG))
    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(cfg.model)
    path = tmp_path_factory.mktemp('fpr_ckpt') / 'epoch_1.pth'
    torch.save({'state_dict': model.state_dict(),
                'meta': {'dataset_meta': {'classes': ('normal', 'nodule')}}}, path)
    return path


def _rescore_module(repo_root, monkeypatch):
    monkeypatch.syspath_prepend(str(repo_root / 'tools'))
    sys.modules.pop('rescore_candidates', None)
    import rescore_candidates
    return rescore_candidates


def test_rescoring_combines_both_stages(luna, tmp_path, repo_root, monkeypatch,
                                        classifier_checkpoint):
    root, nodules, train_a, train_b, test, _ = luna
    rescore = _rescore_module(repo_root, monkeypatch)
    run = tmp_path / 'infer'
    (run / test).mkdir(parents=True)
    (run / test / 'done.json').write_text(json.dumps(
        {'scan_id': test, 'source': str(root / 'subset0' / f'{test}.mhd')}))
    other = '1.2.3.4'  # no folder in the run: keeps its detector probability
    _write_csv(run / 'candidates.csv', HEADER, [[test, 0.0, 0.0, -20.0, 0.64],
                                                [test, 10.0, 5.0, -25.0, 0.25],
                                                [other, 1.0, 2.0, 3.0, 0.5]])
    common = [str(repo_root / FPR_CONFIG), str(classifier_checkpoint), str(run)]
    assert rescore.main(common) == 0
    rows = list(csv.DictReader(open(run / 'candidates_rescored.csv')))
    assert list(rows[0]) == list(rescore.COLUMNS)
    for row in rows[:2]:
        det, cls = float(row['detector_probability']), float(row['classifier_probability'])
        assert 0.0 <= cls <= 1.0
        assert float(row['probability']) == pytest.approx(np.sqrt(det * cls), abs=2e-6)
    assert rows[2]['classifier_probability'] == ''
    assert float(rows[2]['probability']) == 0.5

    # w = 0: the detector's ranking, unchanged
    assert rescore.main(common + ['--classifier-weight', '0', '--out', str(tmp_path / 'w0.csv')]) == 0
    rows = list(csv.DictReader(open(tmp_path / 'w0.csv')))
    assert [float(r['probability']) for r in rows] == [0.64, 0.25, 0.5]


def test_rescoring_refuses_a_bad_weight(repo_root, monkeypatch, tmp_path):
    rescore = _rescore_module(repo_root, monkeypatch)
    with pytest.raises(SystemExit):
        rescore.parse_args(['cfg.py', 'w.pth', str(tmp_path), '--classifier-weight', '1.5'])


def test_both_tools_explain_themselves(repo_root, capsys):
    with pytest.raises(SystemExit) as exit_info:
        candidates_to_views.parse_args(['--help'])
    assert exit_info.value.code == 0
    assert 'false-positive reduction' in capsys.readouterr().out
    import subprocess
    proc = subprocess.run([sys.executable, 'tools/rescore_candidates.py', '--help'],
                          cwd=repo_root, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and '--classifier-weight' in proc.stdout
