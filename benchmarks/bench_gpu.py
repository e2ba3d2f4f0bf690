#!/usr/bin/env python
"""Images per second and peak GPU memory of the staged R101 Mask R-CNN at 512x512.

Issue 9, point 4. For a GPU machine set up by tools/gpu/prepare.sh (no package
registry; SimpleITK need not be installed: nothing here imports it or the CT code).
Measures, each on a freshly built model (same seed):

- training, fp32 and AMP (mmengine's ``AmpOptimWrapper``, float16 autocast + dynamic
  loss scaling), ``--train-batch-size`` slices per step, all layers trainable (the
  schedule's last stage; its "heads" stage back-propagates less);
- inference (``test_step``: boxes and masks), batch 1 and 8, fp32 and AMP (autocast).

Images per second = batch size / mean step time after ``--warmup`` steps; peak memory
= ``torch.cuda.max_memory_allocated()`` over the measurement. Data: the first batches
of the config's training pipeline over ``--data-root`` (a folder written by
data_prep/luna16_to_coco.py and copied with the tree), or, without it, synthetic
512x512 slices with 1-3 disc nodules and their masks; batches are made before the
timing (the loader's time is not counted).

Examples::

    python benchmarks/bench_gpu.py --data-root data/luna16_coco --out work_dirs/bench_gpu
    python benchmarks/bench_gpu.py --device cpu --iters 2 --warmup 1 --size 128  # a check
"""
from __future__ import annotations

import argparse
import datetime
import json
import platform
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _mask_rcnn_steps import (REPO, DictAction, build_model, build_optim_wrapper,  # noqa: E402
                              dataset_batches, load_config, synthetic_batches,
                              time_inference, time_training)

MODES = ('train-fp32', 'train-amp', 'infer-fp32', 'infer-amp')
DEFAULT_CONFIG = 'configs/lung/mask_rcnn_r101_fpn_staged.py'


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split('\n\n', 1)[1])
    parser.add_argument('--config', default=DEFAULT_CONFIG,
                        help=f'Mask R-CNN config (default: {DEFAULT_CONFIG})')
    parser.add_argument('--data-root', type=Path, default=None,
                        help='prepared COCO folder (default: synthetic slices)')
    parser.add_argument('--device', default='cuda', help='torch device (default cuda)')
    parser.add_argument('--size', type=int, default=512,
                        help='side of the synthetic slices (default 512; the data keep theirs)')
    parser.add_argument('--train-batch-size', type=int, default=8,
                        help='slices per training step (default 8)')
    parser.add_argument('--infer-batch-sizes', type=int, nargs='+', default=[1, 8],
                        help='inference batch sizes (default 1 8)')
    parser.add_argument('--modes', nargs='+', default=list(MODES), choices=MODES,
                        help='what to measure (default: all)')
    parser.add_argument('--iters', type=int, default=20, help='timed steps per measurement (default 20)')
    parser.add_argument('--warmup', type=int, default=5, help='untimed steps first (default 5)')
    parser.add_argument('--seed', type=int, default=0, help='model and data seed (default 0)')
    parser.add_argument('--out', type=Path, default=Path('work_dirs/bench_gpu/results.json'),
                        help='JSON with every figure (default work_dirs/bench_gpu/results.json)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, default={},
                        help='config overrides, key=value (as in tools/train.py)')
    args = parser.parse_args(argv)
    for name in ('size', 'train_batch_size', 'iters'):
        if getattr(args, name) < 1:
            parser.error(f'--{name.replace("_", "-")} must be >= 1, got {getattr(args, name)}')
    if args.warmup < 0:
        parser.error(f'--warmup must be >= 0, got {args.warmup}')
    if any(b < 1 for b in args.infer_batch_sizes):
        parser.error(f'--infer-batch-sizes must be >= 1, got {args.infer_batch_sizes}')
    try:
        device = torch.device(args.device)
    except RuntimeError as err:
        parser.error(f'--device {args.device!r}: {err}')
    if device.type == 'cuda' and not torch.cuda.is_available():
        parser.error(f'--device {args.device}: torch {torch.__version__} sees no CUDA device '
                     '(use --device cpu for a check of the script)')
    if args.data_root is not None and not args.data_root.is_dir():
        parser.error(f'--data-root {args.data_root}: no such folder')
    return args


def _peak_gib(device: torch.device) -> float | None:
    if device.type != 'cuda':
        return None
    return torch.cuda.max_memory_allocated(device) / 2**30


def _reset_peak(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device)
    config = Path(args.config)
    if not config.is_absolute() and not config.exists():
        config = REPO / config
    # The model's modules only; the datasets and transforms with --data-root.
    modules = ['projects.lung_nodule.models']
    if args.data_root is not None:
        modules.append('projects.lung_nodule.registry')
    cfg = load_config(config, args.cfg_options, modules)
    steps = args.warmup + args.iters
    n_batches = min(steps, 8)

    def batches_of(size: int) -> list[dict]:
        if args.data_root is not None:
            return dataset_batches(cfg, args.data_root, n_batches, size)
        return synthetic_batches(n_batches, size, args.size, args.seed)

    import mmcv
    results = dict(
        config=str(args.config), cfg_options=args.cfg_options,
        data=str(args.data_root) if args.data_root else f'synthetic {args.size}x{args.size}',
        device=str(device),
        device_name=torch.cuda.get_device_name(device) if device.type == 'cuda' else
        platform.processor() or platform.machine(),
        torch=torch.__version__, cuda=torch.version.cuda, mmcv=mmcv.__version__,
        date=datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC'),
        iters=args.iters, warmup=args.warmup, measurements=[])
    print(f"{results['device_name']}: torch {torch.__version__} (CUDA {torch.version.cuda}), "
          f"mmcv {mmcv.__version__}; data {results['data']}", flush=True)

    for mode in args.modes:
        kind, precision = mode.split('-')
        amp = precision == 'amp'
        sizes = [args.train_batch_size] if kind == 'train' else args.infer_batch_sizes
        for batch_size in sizes:
            row = dict(mode=mode, batch_size=batch_size)
            if amp and device.type != 'cuda':
                row['skipped'] = ("AMP is measured on a GPU (mmengine's AmpOptimWrapper needs "
                                  "one; mmcv's CPU nms takes float32 only)")
                print(f'{mode:10s} batch {batch_size}: skipped ({row["skipped"]})')
                results['measurements'].append(row)
                continue
            batches = batches_of(batch_size)
            model = build_model(cfg, device, args.seed)
            _reset_peak(device)
            if kind == 'train':
                times = time_training(model, build_optim_wrapper(cfg, model, amp=amp), batches,
                                      steps, skip=args.warmup)
                row['final_loss'] = times.losses[-1]['loss']
            else:
                times = time_inference(model, batches, steps, skip=args.warmup, amp=amp)
            row.update(s_per_step=times.seconds_per_step,
                       images_per_s=batch_size / times.seconds_per_step,
                       peak_gpu_gib=_peak_gib(device))
            results['measurements'].append(row)
            peak = f", peak {row['peak_gpu_gib']:.2f} GiB" if row['peak_gpu_gib'] else ''
            print(f"{mode:10s} batch {batch_size}: {row['images_per_s']:.1f} images/s "
                  f"({row['s_per_step'] * 1e3:.0f} ms/step){peak}", flush=True)
            del model, batches
    results['simpleitk_imported'] = sys.modules.get('SimpleITK') is not None
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix('.tmp')
    tmp.write_text(json.dumps(results, indent=1))
    tmp.replace(args.out)

    print('\n| mode | batch | images/s | ms/step | peak GPU memory (GiB) |')
    print('|---|---|---|---|---|')
    for row in results['measurements']:
        if 'skipped' in row:
            print(f"| {row['mode']} | {row['batch_size']} | skipped: {row['skipped']} | | |")
            continue
        peak = f"{row['peak_gpu_gib']:.2f}" if row['peak_gpu_gib'] is not None else 'n/a'
        print(f"| {row['mode']} | {row['batch_size']} | {row['images_per_s']:.1f} | "
              f"{row['s_per_step'] * 1e3:.0f} | {peak} |")
    print(f'\nwritten: {args.out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
