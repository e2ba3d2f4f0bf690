"""End-to-end demo on synthetic LUNA16-like data the project makes itself.

Runs the real command-line tools one after the other, as a user would:

1. ``data_prep/make_synthetic_luna16.py``  LUNA16-shaped scans + annotations.csv
2. ``data_prep/luna16_to_coco.py``         3 slices per nodule -> COCO, split by scan
3. ``tools/train.py``                      the staged Mask R-CNN R101-FPN config through
                                           its three stages (heads -> 3+ -> all),
                                           shortened to fit a CPU, no weights loaded
4. ``tools/test.py --eval segm``           COCO segm AP / AP50 on the test split

No network is needed: ``load_from=None`` and the backbone's ``init_cfg=None`` (the
real configs keep the COCO / ImageNet URLs for users who have one). The model starts
from random weights and trains for minutes, so its AP is that of a smoke run, not the
paper's; the point is that every stage of the pipeline runs on data with real LUNA16
geometry. Outputs go to ``--out`` (data, config, checkpoints, ``test_metrics.json``).

Example::

    python tools/run_demo.py --out work_dirs/demo
"""
import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import List, Sequence

from _bootstrap import REPO_ROOT
from mmengine.config import Config

STAGED_CONFIG = REPO_ROOT / 'configs/lung/mask_rcnn_r101_fpn_staged.py'


def parse_args(argv: Sequence[str] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument('--out', default='work_dirs/demo', help='output folder')
    parser.add_argument('--num-scans', type=int, default=10, help='synthetic scans')
    parser.add_argument('--shape', type=int, nargs=3, default=(64, 128, 128),
                        metavar=('Z', 'Y', 'X'), help='voxels per synthetic scan')
    parser.add_argument('--epochs', type=int, nargs=3, default=(1, 1, 1),
                        metavar=('HEADS', 'THREE_PLUS', 'ALL'),
                        help='epochs of each stage of the staged fine-tune')
    parser.add_argument('--seed', type=int, default=0, help='seed of the synthetic data')
    parser.add_argument('--workers', type=int, default=2, help='data preparation processes')
    return parser.parse_args(argv)


def run_step(title: str, cmd: List[str]) -> None:
    """Run one tool, streaming its output; stop the demo if it fails."""
    print(f'\n=== {title}\n$ {" ".join(cmd)}', flush=True)
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO_ROOT)
    if proc.returncode != 0:
        sys.exit(f'demo step "{title}" failed with exit code {proc.returncode}')
    print(f'=== {title}: done in {time.perf_counter() - start:.0f} s', flush=True)


def write_demo_config(coco_root: Path, image_size: int, epochs: Sequence[int],
                      out_file: Path) -> Path:
    """The staged config, offline, on the demo data, shortened to ``epochs``.

    Slices keep their native size (the real config's Resize targets 512x512 scans).
    """
    cfg = Config.fromfile(str(STAGED_CONFIG))
    cfg.load_from = None
    cfg.model.backbone.init_cfg = None
    for split in ('train', 'val', 'test'):
        loader = cfg[f'{split}_dataloader']
        loader.dataset.data_root = f'{coco_root}/'
        for step in loader.dataset.pipeline:
            if step.type == 'Resize':
                step.scale = (image_size, image_size)
    for split in ('val', 'test'):  # the CocoMetric entries of the evaluator lists
        for metric in cfg[f'{split}_evaluator']:
            if metric.type == 'CocoMetric':
                metric.ann_file = f'{coco_root}/annotations/instances_{split}.json'
    cfg.param_scheduler = [
        dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=20)
    ]
    # random init learns nothing at the paper's 1e-4 in minutes
    cfg.optim_wrapper.optimizer.lr = 0.02
    cfg.train_cfg.max_epochs = sum(epochs)
    cfg.train_cfg.val_interval = sum(epochs)
    hook = next(h for h in cfg.custom_hooks if h.type == 'StagedUnfreezeHook')
    begins = [0, epochs[0], epochs[0] + epochs[1]]
    for stage, begin in zip(hook.stages, begins):
        stage.begin = begin
    cfg.dump(str(out_file))
    return out_file


def main(argv: Sequence[str] = None) -> None:
    args = parse_args(argv)
    out = Path(args.out).resolve()
    luna_root, coco_root = out / 'luna16', out / 'luna16_coco'
    py = sys.executable

    run_step('1/4 synthetic LUNA16', [
        py, 'data_prep/make_synthetic_luna16.py', '--out', str(luna_root), '--num-scans',
        str(args.num_scans), '--seed', str(args.seed), '--shape', *map(str, args.shape),
        '--workers', str(args.workers)
    ])
    run_step('2/4 LUNA16 -> COCO slices', [
        py, 'data_prep/luna16_to_coco.py', '--luna-root', str(luna_root), '--annotations',
        str(luna_root / 'annotations.csv'), '--out', str(coco_root), '--workers',
        str(args.workers)
    ])
    config = write_demo_config(coco_root, max(args.shape[1:]), args.epochs,
                               out / 'mask_rcnn_r101_fpn_staged_demo.py')
    train_dir = out / 'train'
    run_step('3/4 staged Mask R-CNN training (heads -> 3+ -> all)',
             [py, 'tools/train.py', str(config), '--work-dir', str(train_dir)])
    checkpoint = train_dir / f'epoch_{sum(args.epochs)}.pth'
    test_dir = out / 'test'
    run_step('4/4 test, COCO segm metrics', [
        py, 'tools/test.py', str(config), str(checkpoint), '--eval', 'segm', '--work-dir',
        str(test_dir)
    ])
    metrics = json.loads((test_dir / 'test_metrics.json').read_text())
    print('\nDemo finished. Test-split metrics (random init, minutes of CPU training):')
    if not metrics:
        print('  none: the model made no detection above the score threshold, as expected '
              'after a few minutes of training from random weights; train longer '
              '(--epochs) or start from COCO weights (load_from) for real figures')
    for key, value in metrics.items():
        print(f'  {key}: {value}')
    print(f'Everything is under {out}')


if __name__ == '__main__':
    main()
