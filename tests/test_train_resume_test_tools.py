"""tools/train.py trains, saves, resumes; tools/test.py loads the checkpoint (torch >= 2.6)."""
import json
import math
import subprocess
import sys

import pytest
import torch

from projects.lung_nodule.checkpoint import load_checkpoint_file

# A tiny Mask R-CNN (ResNet-18 FPN) on 128x128 slices; the rest is the real config.
TINY = [
    'load_from=None',
    'model.backbone.depth=18',
    'model.backbone.init_cfg=None',
    'model.neck.in_channels=[64,128,256,512]',
    'train_dataloader.batch_size=1',
    'train_dataloader.num_workers=0',
    'train_dataloader.persistent_workers=False',
    'test_dataloader.num_workers=0',
    'test_dataloader.persistent_workers=False',
    'val_dataloader.num_workers=0',
    'val_dataloader.persistent_workers=False',
    'train_dataloader.dataset.pipeline.2.scale=(128,128)',
    'test_dataloader.dataset.pipeline.1.scale=(128,128)',
    'val_dataloader.dataset.pipeline.1.scale=(128,128)',
    'train_cfg.val_interval=100',
    'param_scheduler=[]',
    'default_hooks.checkpoint.interval=1',
]


def _data_options(root) -> list:
    return [
        f'train_dataloader.dataset.data_root={root}/',
        f'val_dataloader.dataset.data_root={root}/',
        f'test_dataloader.dataset.data_root={root}/',
        f'val_evaluator.0.ann_file={root}/annotations/instances_val.json',
        f'test_evaluator.0.ann_file={root}/annotations/instances_test.json',
    ]


def _run(args, cwd) -> str:
    proc = subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc.stdout + proc.stderr


@pytest.mark.slow
def test_train_resume_then_test(repo_root, tiny_coco_root, tmp_path):
    assert tuple(int(v) for v in torch.__version__.split('.')[:2]) >= (2, 6)
    config = 'configs/lung/mask_rcnn_r101_fpn_all.py'
    work_dir = tmp_path / 'work'
    opts = TINY + _data_options(tiny_coco_root)

    # 2 images, batch 1: one epoch is 2 iterations
    _run(['tools/train.py', config, '--work-dir', str(work_dir), '--cfg-options',
          *opts, 'train_cfg.max_epochs=1'], repo_root)
    first = work_dir / 'epoch_1.pth'
    assert first.is_file()
    ckpt = load_checkpoint_file(str(first), map_location='cpu')
    assert ckpt['meta']['iter'] == 2

    log = _run(['tools/train.py', config, '--work-dir', str(work_dir), '--resume',
                '--cfg-options', *opts, 'train_cfg.max_epochs=2'], repo_root)
    assert 'resumed epoch: 1, iter: 2' in log
    second = work_dir / 'epoch_2.pth'
    resumed = load_checkpoint_file(str(second), map_location='cpu')
    assert resumed['meta']['iter'] == 4 and resumed['meta']['epoch'] == 2

    test_dir = tmp_path / 'test'
    log = _run(['tools/test.py', config, str(second), '--eval', 'segm',
                '--work-dir', str(test_dir), '--cfg-options', *opts], repo_root)
    metrics = json.loads((test_dir / 'test_metrics.json').read_text())
    assert 'coco/segm_mAP' in metrics and 'coco/segm_mAP_50' in metrics
    # the paper's likely metric and the per-nodule Dice, beside CocoMetric's
    assert 'matterport/mask_mAP_50' in metrics and 'nodule/dice' in metrics
    assert not any(k.startswith('coco/bbox') for k in metrics)  # --eval segm only
    counts = ('num_images', 'num_nodules', 'fp_per_empty_image')
    assert all(math.isnan(v) or -1.0 <= v <= 1.0  # NaN: no detection scores 0.7
               for k, v in metrics.items() if not k.endswith(counts))
    assert 'coco/segm_mAP_50' in log
