"""Whole-scan inference through the real mmdet path, with a Mask R-CNN the test trains
for two iterations (tools/train.py on the tiny COCO set): the batched forward gives what
``mmdet.apis.inference_detector`` gives, the CLI runs and writes valid outputs, and a
checkpoint that does not fit the config is a clear error naming it.
"""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from projects.lung_nodule.apis.outputs import CANDIDATE_COLUMNS
from projects.lung_nodule.ct.measure import NODULE_COLUMNS
from tests.infer_helpers import make_nodule_scan
from tests.scanner_inputs import write_dicom_series, write_sitk_volume

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIG = 'configs/lung/mask_rcnn_r101_fpn_all.py'
# A tiny Mask R-CNN (ResNet-18 FPN) on 128x128 slices; the rest is the real config.
TINY = [
    'load_from=None', 'model.backbone.depth=18', 'model.backbone.init_cfg=None',
    'model.neck.in_channels=[64,128,256,512]',
    'train_dataloader.batch_size=1', 'train_dataloader.num_workers=0',
    'train_dataloader.persistent_workers=False', 'val_dataloader.num_workers=0',
    'val_dataloader.persistent_workers=False', 'test_dataloader.num_workers=0',
    'test_dataloader.persistent_workers=False',
    'train_dataloader.dataset.pipeline.2.scale=(128,128)',
    'test_dataloader.dataset.pipeline.1.scale=(128,128)',
    'val_dataloader.dataset.pipeline.1.scale=(128,128)',
    'train_cfg.val_interval=100', 'param_scheduler=[]', 'default_hooks.checkpoint.interval=1',
]
# Inference of an untrained model keeps up to 100 detections per slice, and the mask
# head runs on each (minutes on 2 shared cores): fewer proposals and detections here.
FAST_TEST = ['model.test_cfg.rpn.nms_pre=200', 'model.test_cfg.rpn.max_per_img=50',
             'model.test_cfg.rcnn.max_per_img=5']


def _run(args, cwd=REPO_ROOT, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, env=env)


@pytest.fixture(scope='module')
def trained(tmp_path_factory, tiny_coco_root) -> tuple[Path, list[str]]:
    """(checkpoint, --cfg-options of the tiny model) after 2 training iterations."""
    work = tmp_path_factory.mktemp('infer_train')
    data = [f'train_dataloader.dataset.data_root={tiny_coco_root}/',
            f'val_dataloader.dataset.data_root={tiny_coco_root}/',
            f'test_dataloader.dataset.data_root={tiny_coco_root}/',
            f'val_evaluator.0.ann_file={tiny_coco_root}/annotations/instances_val.json',
            f'test_evaluator.0.ann_file={tiny_coco_root}/annotations/instances_test.json']
    proc = _run(['tools/train.py', CONFIG, '--work-dir', work, '--cfg-options', *TINY, *data,
                 'train_cfg.max_epochs=1'])
    assert proc.returncode == 0, proc.stderr[-4000:]
    checkpoint = work / 'epoch_1.pth'
    assert checkpoint.is_file()
    return checkpoint, TINY + FAST_TEST


def _tiny_cfg(options):
    from mmengine.config import Config, DictAction
    import argparse
    cfg = Config.fromfile(str(REPO_ROOT / CONFIG))
    parser = argparse.ArgumentParser()
    parser.add_argument('--o', nargs='+', action=DictAction)
    cfg.merge_from_dict(parser.parse_args(['--o', *options]).o)
    return cfg


@pytest.mark.slow
def test_batched_forward_equals_inference_detector(trained):
    from mmdet.apis import inference_detector
    from projects.lung_nodule.apis.mmdet_predictor import MMDetSlicePredictor
    checkpoint, options = trained
    predictor = MMDetSlicePredictor(_tiny_cfg(options), checkpoint)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (3, 96, 96), dtype=np.uint8)
    images[:, 30:50, 30:50] = 200  # something object-like
    batched = predictor(images, [0, 1, 2])
    for image, ours in zip(images, batched):
        single = predictor(image[None], [0])[0]
        reference = inference_detector(predictor.model, np.repeat(image[:, :, None], 3, axis=2))
        ref = reference.pred_instances
        ref_masks = ref.masks.cpu().numpy().astype(bool).reshape(-1, 96, 96)
        # batch of 1: the very same computation as inference_detector
        np.testing.assert_array_equal(single.scores, ref.scores.cpu().numpy())
        np.testing.assert_array_equal(single.masks, ref_masks)
        # batch of 3: the same detections up to float noise of batched convolutions
        assert len(ours.scores) == len(single.scores)
        np.testing.assert_allclose(ours.scores, single.scores, atol=1e-4)
        if len(single.masks):
            agree = (ours.masks == single.masks).mean()
            assert agree > 0.999


def _rows(path):
    with open(path, newline='') as handle:
        return list(csv.DictReader(handle))


@pytest.mark.slow
def test_cli_with_a_briefly_trained_model(trained, tmp_path):
    checkpoint, options = trained
    scan = make_nodule_scan()
    mhd = write_sitk_volume(scan.volume, scan.spacing_xyz, scan.origin_xyz, tmp_path / 'scan.mhd')
    dicom = write_dicom_series(scan.volume, scan.spacing_xyz, scan.origin_xyz, tmp_path / 'dcm')
    out = tmp_path / 'out'
    proc = _run(['tools/infer_scan.py', CONFIG, checkpoint, mhd, tmp_path / 'dcm', '--out', out,
                 '--score-thr', '0.05', '--batch-size', '3', '--cfg-options', *options])
    assert proc.returncode == 0, proc.stderr[-4000:]
    summary = json.loads((out / 'summary.json').read_text())
    assert summary['scans'] == 2 and summary['skipped'] == []
    assert summary['model_score_thr'] == 0.05
    candidates = _rows(out / 'candidates.csv')
    with open(out / 'candidates.csv') as handle:
        assert handle.readline().strip() == ','.join(CANDIDATE_COLUMNS)
    for folder, source in (('scan', mhd), (dicom.series_uid, None)):
        rows = _rows(out / folder / 'nodules.csv')
        with open(out / folder / 'nodules.csv') as handle:
            assert handle.readline().strip() == ','.join(NODULE_COLUMNS)
        labels = sitk.ReadImage(str(out / folder / 'nodules.nii.gz'))
        assert labels.GetSize() == scan.volume.shape[::-1]
        assert np.allclose(labels.GetSpacing(), scan.spacing_xyz)
        assert np.allclose(labels.GetOrigin(), scan.origin_xyz, atol=1e-3)
        values = np.unique(sitk.GetArrayFromImage(labels))
        assert values.tolist() == list(range(len(rows) + 1))
        assert len(list((out / folder).glob('nodule_*.png'))) == len(rows)
        if source is None:
            assert (out / folder / 'nodules.seg.dcm').is_file() == bool(rows)
        mine = [c for c in candidates if c['seriesuid'] == ('scan' if source else dicom.series_uid)]
        assert len(mine) <= 100 and all(float(c['probability']) >= 0.05 for c in mine)
        assert len(mine) == len(rows)  # --score-thr at the model's own: the same nodules


@pytest.mark.slow
def test_checkpoint_that_does_not_fit_the_config_is_named(trained, tmp_path):
    checkpoint, options = trained
    scan = make_nodule_scan()
    mhd = write_sitk_volume(scan.volume, scan.spacing_xyz, scan.origin_xyz, tmp_path / 'scan.mhd')
    # the ResNet-18 weights against the shipped ResNet-101 config
    proc = _run(['tools/infer_scan.py', CONFIG, checkpoint, mhd, '--out', tmp_path / 'out',
                 '--cfg-options', 'load_from=None', 'model.backbone.init_cfg=None'])
    assert proc.returncode == 2
    assert str(checkpoint) in proc.stderr and 'does not match' in proc.stderr
    assert not (tmp_path / 'out').exists()
    # not a checkpoint at all
    garbage = tmp_path / 'garbage.pth'
    garbage.write_bytes(b'not a pickle')
    proc = _run(['tools/infer_scan.py', CONFIG, garbage, mhd, '--out', tmp_path / 'out2',
                 '--cfg-options', *options])
    assert proc.returncode == 2 and str(garbage) in proc.stderr
    # a state dict of something else
    other = tmp_path / 'other.pth'
    torch.save({'state_dict': {'conv.weight': torch.zeros(1)}}, other)
    proc = _run(['tools/infer_scan.py', CONFIG, other, mhd, '--out', tmp_path / 'out3',
                 '--cfg-options', *options])
    assert proc.returncode == 2 and str(other) in proc.stderr


@pytest.mark.slow
def test_dist_infer_two_ranks_equal_one_run(trained, tmp_path):
    checkpoint, options = trained
    scan = make_nodule_scan()
    paths = [write_sitk_volume(scan.volume, scan.spacing_xyz,
                               tuple(np.add(scan.origin_xyz, (0, 0, 5.0 * i))),
                               tmp_path / f'scan{i}.mhd') for i in range(3)]
    # one thread, as torchrun gives each rank: the convolutions then sum in the same order
    # and both runs keep exactly the same detections (with 2 threads the float noise moved
    # a few of this briefly trained model's many near-threshold detections across it)
    one_thread = {**os.environ, 'OMP_NUM_THREADS': '1'}
    one = _run(['tools/infer_scan.py', CONFIG, checkpoint, *paths, '--out', tmp_path / 'one',
                '--no-progress', '--cfg-options', *options], env=one_thread)
    assert one.returncode == 0, one.stderr[-3000:]
    proc = subprocess.run(['bash', 'tools/dist_infer.sh', CONFIG, str(checkpoint), '2',
                           *map(str, paths), '--out', str(tmp_path / 'two'), '--no-progress',
                           '--cfg-options', *options],
                          cwd=REPO_ROOT, capture_output=True, text=True,
                          env={**os.environ, 'PYTHON': sys.executable,
                               'PORT': '29531'})
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert (tmp_path / 'two/candidates.0-of-2.csv').is_file()
    one, two = _rows(tmp_path / 'one/candidates.csv'), _rows(tmp_path / 'two/candidates.csv')
    assert len(one) == len(two)
    # match row to row (shards write the scans in another order)
    unmatched = list(two)
    for a in one:
        match = next(b for b in unmatched if b['seriesuid'] == a['seriesuid'] and all(
            abs(float(a[c]) - float(b[c])) < 1e-3 for c in CANDIDATE_COLUMNS[1:]))
        unmatched.remove(match)
    summary = json.loads((tmp_path / 'two/summary.json').read_text())
    assert summary['scans'] == 3 and summary['merged_from'] == 2


def test_amp_needs_cuda(tmp_path):
    from projects.lung_nodule.apis.mmdet_predictor import MMDetSlicePredictor
    with pytest.raises(ValueError, match='--amp needs a CUDA device'):
        MMDetSlicePredictor(str(REPO_ROOT / CONFIG), tmp_path / 'unused.pth', amp=True)
