#!/usr/bin/env python
"""CPU training step of the lung Mask R-CNN: seconds per step, cores used, top operators.

Issue 9, point 3. Builds the model of CONFIG twice per round, once per RoI layer
variant, each from the same seed, and trains it ``--steps`` steps on the same synthetic
batches (grey ``--size`` slices with 1-3 disc nodules; data loading is left out, it
is about 0.5% of a step). Variants run interleaved (A, B, A, B, ...) so that the load
other jobs put on the machine hits both alike; the load average is read before each
run. Variants (the RoI extractor's ``roi_layer`` in both box and mask heads):

- ``mmcv``: mmdet's default, ``SingleRoIExtractor`` + ``mmcv.ops.RoIAlign`` (one thread);
- ``torchvision``: the same with ``RoIAlign(use_torchvision=True)`` (one thread);
- ``parallel``: ``RegistryRoIExtractor`` + ``ParallelRoIAlign`` (channel blocks on all
  threads), what configs/lung/_base_/mask-rcnn_r101_fpn_luna16.py uses.

Per variant: mean seconds per step and cores used (process CPU time / wall time) after
the first ``--skip`` steps, the losses of every step (same seed: the variants must
agree), and a torch.profiler table of the top operators by self CPU time over
``--profile-steps`` steps. Writes OUT/results.json, OUT/losses.png (the loss curves
side by side), OUT/profile_<variant>.txt and prints a Markdown summary.

Examples::

    # the demo config at 256x256, 50 steps, A/B/A/B
    python benchmarks/bench_train.py --out work_dirs/bench_train/demo
    # the real staged R101 config at 512x512, fewer steps
    python benchmarks/bench_train.py --config configs/lung/mask_rcnn_r101_fpn_staged.py \\
        --size 512 --steps 8 --rounds 1 --out work_dirs/bench_train/r101
"""
from __future__ import annotations

import argparse
import copy
import datetime
import json
import os
import platform
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _mask_rcnn_steps import (REPO, DictAction, build_model, build_optim_wrapper,  # noqa: E402
                              load_config, synthetic_batches, time_training)

VARIANTS = {
    'mmcv': ('SingleRoIExtractor', dict(type='RoIAlign')),
    'torchvision': ('SingleRoIExtractor', dict(type='RoIAlign', use_torchvision=True)),
    'parallel': ('RegistryRoIExtractor', dict(type='ParallelRoIAlign')),
}
DEFAULT_CONFIG = 'configs/lung/demo/mask_rcnn_r18_fpn_staged_demo.py'


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split('\n\n', 1)[1])
    parser.add_argument('--config', default=DEFAULT_CONFIG,
                        help=f'Mask R-CNN config (default: {DEFAULT_CONFIG})')
    parser.add_argument('--size', type=int, default=256,
                        help='side of the square synthetic slices in pixels (default 256)')
    parser.add_argument('--batch-size', type=int, default=2, help='slices per step (default 2)')
    parser.add_argument('--steps', type=int, default=50, help='training steps per run (default 50)')
    parser.add_argument('--skip', type=int, default=3,
                        help='first steps of a run left out of the timings (default 3)')
    parser.add_argument('--rounds', type=int, default=2,
                        help='A, B rounds (default 2: A, B, A, B)')
    parser.add_argument('--variants', nargs='+', default=['mmcv', 'parallel'],
                        choices=sorted(VARIANTS), help='RoI layers to compare, in run order')
    parser.add_argument('--profile-steps', type=int, default=3,
                        help='steps under torch.profiler per variant, 0 for none (default 3)')
    parser.add_argument('--seed', type=int, default=0, help='model and data seed (default 0)')
    parser.add_argument('--out', type=Path, default=Path('work_dirs/bench_train'),
                        help='output folder (default work_dirs/bench_train)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, default={},
                        help='config overrides, key=value (as in tools/train.py)')
    args = parser.parse_args(argv)
    for name in ('size', 'batch_size', 'steps', 'rounds'):
        if getattr(args, name) < 1:
            parser.error(f'--{name.replace("_", "-")} must be >= 1, got {getattr(args, name)}')
    if not 0 <= args.skip < args.steps:
        parser.error(f'--skip must be in [0, --steps), got {args.skip}')
    if args.profile_steps < 0:
        parser.error(f'--profile-steps must be >= 0, got {args.profile_steps}')
    if len(set(args.variants)) != len(args.variants):
        parser.error(f'--variants repeats a name: {args.variants}')
    return args


def with_roi_layer(cfg, variant: str):
    """A copy of ``cfg`` whose box and mask RoI extractors use the variant's layer."""
    extractor, layer = VARIANTS[variant]
    cfg = copy.deepcopy(cfg)
    for key in ('bbox_roi_extractor', 'mask_roi_extractor'):
        roi = cfg.model.roi_head[key]
        roi.type = extractor
        roi.roi_layer = dict(output_size=roi.roi_layer.output_size,
                             sampling_ratio=roi.roi_layer.sampling_ratio, **layer)
    return cfg


def loadavg() -> str:
    try:
        return Path('/proc/loadavg').read_text().split(' ', 3)[:3].__str__()
    except OSError:
        return 'n/a'


def profile_table(cfg, batches: list[dict], args: argparse.Namespace) -> tuple[str, dict]:
    """Top operators by self CPU time over ``--profile-steps`` steps (after 2 warm-up)."""
    from torch.profiler import ProfilerActivity, profile
    model = build_model(cfg, 'cpu', args.seed)
    optim = build_optim_wrapper(cfg, model)
    for batch in batches[:2]:
        model.train_step(batch, optim)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for i in range(args.profile_steps):
            model.train_step(batches[(2 + i) % len(batches)], optim)
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    roi = sum(e.self_cpu_time_total for e in events if 'roi' in e.key.lower())
    table = events.table(sort_by='self_cpu_time_total', row_limit=15)
    top = [dict(name=e.key, self_cpu_ms=e.self_cpu_time_total / 1e3 / args.profile_steps,
                share=e.self_cpu_time_total / total)
           for e in sorted(events, key=lambda e: -e.self_cpu_time_total)[:10]]
    return table, dict(top=top, roi_share=roi / total)


def _write_json(results: dict, path: Path) -> None:
    tmp = path.with_suffix('.json.tmp')
    tmp.write_text(json.dumps(results, indent=1))
    tmp.replace(path)


def plot_losses(results: dict, path: Path) -> None:
    """Total loss per step of each variant (round 1) side by side, and their difference."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    variants = list(results['variants'])
    fig, axes = plt.subplots(1, len(variants) + 1, figsize=(4.2 * (len(variants) + 1), 3.6),
                             sharey=False)
    ref = results['variants'][variants[0]]['runs'][0]['loss']
    for ax, name in zip(axes, variants):
        for r, run in enumerate(results['variants'][name]['runs']):
            ax.plot(run['loss'], label=f'round {r + 1}', lw=1.2, alpha=0.8)
        ax.set_title(f'{name}: total loss', fontsize=10)
        ax.set_xlabel('step')
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    ax = axes[-1]
    for name in variants[1:]:
        diff = [abs(a - b) for a, b in zip(results['variants'][name]['runs'][0]['loss'], ref)]
        ax.plot(diff, label=f'|{name} - {variants[0]}|', lw=1.2)
        ax.text(0.02, 0.95 - 0.08 * variants.index(name), f'max {max(diff):.2e}',
                transform=ax.transAxes, fontsize=8, va='top')
    ax.set_title('difference of total loss (round 1)', fontsize=10)
    ax.set_xlabel('step')
    ax.legend(fontsize=8, loc='upper right')
    ax.grid(alpha=0.3)
    fig.suptitle(f"{Path(results['config']).name}, {results['size']}x{results['size']}, "
                 f"batch {results['batch_size']}, seed {results['seed']}", fontsize=10)
    fig.tight_layout()
    tmp = path.with_suffix('.tmp.png')
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    config = Path(args.config)
    if not config.is_absolute() and not config.exists():
        config = REPO / config
    base = load_config(config, args.cfg_options)
    cfgs = {v: with_roi_layer(base, v) for v in args.variants}
    batches = synthetic_batches(args.steps, args.batch_size, args.size, args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    results = dict(
        config=str(args.config), cfg_options=args.cfg_options, size=args.size,
        batch_size=args.batch_size, steps=args.steps, skip=args.skip, seed=args.seed,
        date=datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC'),
        machine=f'{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs',
        torch=torch.__version__, torch_threads=torch.get_num_threads(),
        torch_interop_threads=torch.get_num_interop_threads(),
        variants={v: dict(runs=[]) for v in args.variants})
    print(f'torch {torch.__version__}: {torch.get_num_threads()} intra-op threads, '
          f'{torch.get_num_interop_threads()} inter-op threads, {os.cpu_count()} CPUs')
    for r in range(args.rounds):
        for v in args.variants:
            load = loadavg()
            model = build_model(cfgs[v], 'cpu', args.seed)
            times = time_training(model, build_optim_wrapper(cfgs[v], model), batches,
                                  args.steps, skip=args.skip)
            run = dict(s_per_step=times.seconds_per_step, cores=times.cores_used,
                       loadavg_before=load, loss=[x['loss'] for x in times.losses],
                       losses=times.losses, wall=times.wall, cpu=times.cpu)
            results['variants'][v]['runs'].append(run)
            print(f'round {r + 1} {v:12s} {run["s_per_step"]:.3f} s/step, '
                  f'{run["cores"]:.2f} cores, final loss {run["loss"][-1]:.4f} '
                  f'(load before {load})', flush=True)
            _write_json(results, args.out / 'results.json')  # a stopped run keeps its runs
            del model
    for v in args.variants:
        if args.profile_steps:
            table, summary = profile_table(cfgs[v], batches, args)
            (args.out / f'profile_{v}.txt').write_text(table)
            results['variants'][v]['profile'] = summary
        runs = results['variants'][v]['runs']
        results['variants'][v]['s_per_step'] = sum(x['s_per_step'] for x in runs) / len(runs)
        results['variants'][v]['cores'] = sum(x['cores'] for x in runs) / len(runs)
    ref = args.variants[0]
    for v in args.variants:
        results['variants'][v]['speedup_vs_' + ref] = (
            results['variants'][ref]['s_per_step'] / results['variants'][v]['s_per_step'])
        diffs = [abs(a - b) for a, b in zip(results['variants'][v]['runs'][0]['loss'],
                                            results['variants'][ref]['runs'][0]['loss'])]
        results['variants'][v]['max_abs_loss_diff_vs_' + ref] = max(diffs)
    _write_json(results, args.out / 'results.json')
    plot_losses(results, args.out / 'losses.png')

    print(f'\n| variant | s/step (runs) | cores used (runs) | speed-up vs {ref} | '
          f'RoI ops share of self CPU | max abs loss diff vs {ref} |')
    print('|---|---|---|---|---|---|')
    for v in args.variants:
        res = results['variants'][v]
        share = res.get('profile', {}).get('roi_share')
        print(f"| {v} | {res['s_per_step']:.3f} ("
              + ', '.join(f"{x['s_per_step']:.3f}" for x in res['runs'])
              + f") | {res['cores']:.2f} (" + ', '.join(f"{x['cores']:.2f}" for x in res['runs'])
              + f") | {res['speedup_vs_' + ref]:.2f}x | "
              + (f'{share:.0%}' if share is not None else 'n/a')
              + f" | {res['max_abs_loss_diff_vs_' + ref]:.2e} |")
    print(f'\nwritten: {args.out}/results.json, losses.png'
          + (', profile_*.txt' if args.profile_steps else ''))
    return 0


if __name__ == '__main__':
    sys.exit(main())
