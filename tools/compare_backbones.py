"""Train and test the patch classifiers of the paper's Table I on one split.

Every network (LeNet5, AlexNet, VGG16, ResNet18, ResNet20, ResNet50,
ResNet101, or a chosen subset) is trained with its config under
``configs/patch_cls/`` by mmengine's ``Runner`` (the same one
``tools/train.py`` drives), on the same ImageNet-style patch folders, then
tested on the ``test`` split with its final weights. The tool writes:

- ``OUT/backbone_comparison.md``: the table (network, accuracy, precision,
  recall, AUC of the ``nodule`` class, parameters, training time) next to
  the paper's accuracy;
- ``OUT/backbone_comparison.csv``: the same rows, plus config and log paths;
- ``OUT/backbone_comparison.png``: a bar chart of the four metrics.

Each network's logs and checkpoints go to ``WORK_DIR/<config name>/``; the
figures in the table are the test metrics that the Runner logged there.

Examples::

    # smoke run: one epoch of every network
    python tools/compare_backbones.py --data-root data/luna16_patches --quick

    # a CPU-sized run (benchmarks/RESULTS.md): 1 epoch, no per-epoch validation
    python tools/compare_backbones.py --data-root data/luna16_patches \\
        --epochs 1 --cfg-options train_cfg.val_interval=100

    # two networks only, with other settings of the configs changed
    python tools/compare_backbones.py --networks ResNet20 ResNet101 \\
        --cfg-options optim_wrapper.optimizer.lr=5e-4
"""
import argparse
import csv
import datetime
import math
import os
import os.path as osp
import platform
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import projects.lung_nodule.registry  # noqa: E402,F401  (registers our modules, checkpoint loader)

__all__ = ['NETWORKS', 'PAPER_ACCURACY', 'compare', 'run_network']

CONFIG_DIR = REPO_ROOT / 'configs' / 'patch_cls'

# Table I of the paper, in its order: network -> (config, reported accuracy)
NETWORKS: Dict[str, str] = {
    'LeNet5': 'lenet5_1xb64_lung-patch.py',
    'AlexNet': 'alexnet_1xb64_lung-patch.py',
    'VGG16': 'vgg16bn_1xb64_lung-patch.py',
    'ResNet18': 'resnet18_1xb64_lung-patch.py',
    'ResNet20': 'resnet20_1xb64_lung-patch.py',
    'ResNet50': 'resnet50_1xb64_lung-patch.py',
    'ResNet101': 'resnet101_1xb64_lung-patch.py',
}
PAPER_ACCURACY: Dict[str, float] = {
    'LeNet5': 0.950875,
    'AlexNet': 0.958913,
    'VGG16': 0.959116,
    'ResNet18': 0.941875,
    'ResNet20': 0.94275,
    'ResNet50': 0.935875,
    'ResNet101': 0.965945,
}

POSITIVE_CLASS = 'nodule'
METRIC_COLUMNS = ('accuracy', 'precision', 'recall', 'auc')
CSV_COLUMNS = ('network', 'accuracy', 'precision', 'recall', 'auc',
               'params', 'train_time_s', 'epochs', 'train_samples',
               'test_samples', 'paper_accuracy', 'config', 'log_file')
OUT_STEM = 'backbone_comparison'


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    from mmengine.config import DictAction

    parser = argparse.ArgumentParser(
        description='Train and test the patch classifiers of Table I on one '
        'patch split, and write the comparison table (Markdown, CSV) and '
        'a bar chart.',
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument(
        '--data-root',
        default='data/luna16_patches',
        help='ImageNet-style patch folders: '
        'DATA_ROOT/{train,val,test}/{normal,nodule}/*.png')
    parser.add_argument(
        '--networks',
        nargs='+',
        choices=list(NETWORKS),
        default=list(NETWORKS),
        help='networks to compare, by their Table I name')
    parser.add_argument(
        '--configs',
        nargs='+',
        metavar='CONFIG',
        help='compare these config files instead of --networks (the '
        'network column is then the config name)')
    parser.add_argument(
        '--work-dir',
        default='work_dirs/compare_backbones',
        help='logs and checkpoints go to WORK_DIR/<config name>/')
    parser.add_argument(
        '--out-dir',
        help='where the table and the chart go (default: WORK_DIR)')
    parser.add_argument(
        '--epochs',
        type=int,
        help='training epochs of every network (default: the configs\' '
        'schedule; the cosine schedule is stretched to fit)')
    parser.add_argument(
        '--quick',
        action='store_true',
        help='smoke run: 1 epoch (unless --epochs), no intermediate '
        'validation or checkpoint except the final one')
    parser.add_argument(
        '--batch-size', type=int, help='batch size of every dataloader')
    parser.add_argument(
        '--num-workers', type=int, help='workers of every dataloader')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override settings of every config, key=value pairs')
    args = parser.parse_args(argv)
    if args.epochs is not None and args.epochs < 1:
        parser.error(f'--epochs must be at least 1, got {args.epochs}')
    if args.batch_size is not None and args.batch_size < 1:
        parser.error(f'--batch-size must be at least 1, got {args.batch_size}')
    if args.num_workers is not None and args.num_workers < 0:
        parser.error(
            f'--num-workers must be 0 or more, got {args.num_workers}')
    for split in ('train', 'val', 'test'):
        for cls in ('normal', POSITIVE_CLASS):
            folder = osp.join(args.data_root, split, cls)
            if not osp.isdir(folder):
                parser.error(f'missing patch folder {folder} (expected '
                             'DATA_ROOT/{train,val,test}/{normal,nodule}/)')
    for config in args.configs or []:
        if not osp.isfile(config):
            parser.error(f'config file not found: {config}')
    return args


def _set_epochs(cfg, epochs: int) -> None:
    """Set the number of epochs and stretch epoch-based schedulers to it."""
    old_epochs = cfg.train_cfg.max_epochs
    cfg.train_cfg.max_epochs = epochs
    schedulers = cfg.param_scheduler
    if isinstance(schedulers, dict):
        schedulers = [schedulers]
    for scheduler in schedulers:
        if not scheduler.get('by_epoch', True):
            continue
        if scheduler.get('T_max') == old_epochs:
            scheduler['T_max'] = epochs
        if scheduler.get('end', None) is not None and \
                scheduler['end'] >= old_epochs:
            scheduler['end'] = epochs
        if 'milestones' in scheduler:
            scheduler['milestones'] = [
                m for m in scheduler['milestones'] if m < epochs
            ]


def build_config(config_path: str, args: argparse.Namespace, work_dir: str):
    """Load one config and apply the comparison's shared overrides."""
    from mmengine.config import Config

    cfg = Config.fromfile(config_path)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    cfg.work_dir = work_dir
    for loader_key in ('train_dataloader', 'val_dataloader',
                       'test_dataloader'):
        loader = cfg[loader_key]
        loader.dataset.data_root = args.data_root
        if args.batch_size is not None:
            loader.batch_size = args.batch_size
        if args.num_workers is not None:
            loader.num_workers = args.num_workers
            if args.num_workers == 0:
                loader.persistent_workers = False
    epochs = args.epochs if args.epochs is not None else (
        1 if args.quick else None)
    if epochs is not None:
        _set_epochs(cfg, epochs)
    if args.quick:
        # validate and save once, at the end
        cfg.train_cfg.val_interval = cfg.train_cfg.max_epochs
        cfg.default_hooks.checkpoint.interval = cfg.train_cfg.max_epochs
    return cfg


def _classwise(metrics: dict, key: str, index: int) -> float:
    values = metrics[key]
    if not isinstance(values, (list, tuple)) or len(values) <= index:
        raise ValueError(f'{key}={values!r} has no value for class {index}')
    return float(values[index])


def run_network(name: str, config_path: str,
                args: argparse.Namespace) -> dict:
    """Train one network, test it, and return its row of the table.

    Args:
        name (str): The network column of the row.
        config_path (str): Its patch classifier config.
        args (argparse.Namespace): Shared settings (data root, epochs, ...).

    Returns:
        dict: The row, with every column of ``CSV_COLUMNS``; metrics are
        fractions in [0, 1] (the Runner logs them in percent).
    """
    from mmengine.runner import Runner

    config_name = osp.splitext(osp.basename(config_path))[0]
    work_dir = osp.join(args.work_dir, config_name)
    cfg = build_config(config_path, args, work_dir)
    runner = Runner.from_cfg(cfg)
    classes = tuple(runner.train_dataloader.dataset.metainfo['classes'])
    if POSITIVE_CLASS not in classes:
        raise ValueError(f'{config_path}: classes {classes} have no '
                         f'{POSITIVE_CLASS!r}')
    pos = classes.index(POSITIVE_CLASS)
    params = sum(p.numel() for p in runner.model.parameters())

    start = time.perf_counter()
    runner.train()
    train_time = time.perf_counter() - start
    metrics = runner.test()

    return dict(
        network=name,
        accuracy=float(metrics['accuracy/top1']) / 100.0,
        precision=_classwise(
            metrics, 'single-label/precision_classwise', pos) / 100.0,
        recall=_classwise(metrics, 'single-label/recall_classwise', pos) /
        100.0,
        auc=float(metrics['roc/auc']) / 100.0,
        params=params,
        train_time_s=round(train_time, 1),
        epochs=cfg.train_cfg.max_epochs,
        train_samples=len(runner.train_dataloader.dataset),
        test_samples=len(runner.test_dataloader.dataset),
        paper_accuracy=PAPER_ACCURACY.get(name, ''),
        config=osp.relpath(config_path, os.getcwd()),
        log_file=osp.join(runner.log_dir, f'{runner.timestamp}.log'),
    )


def _atomic_write(path: str, write) -> None:
    """Write through ``write(tmp_path)`` then rename, never a partial file."""
    tmp_path = f'{path}.tmp{os.getpid()}{osp.splitext(path)[1]}'
    try:
        write(tmp_path)
        os.replace(tmp_path, path)
    finally:
        if osp.exists(tmp_path):
            os.remove(tmp_path)


def _fmt(value, digits: int = 4) -> str:
    if isinstance(value, float):
        return 'n/a' if math.isnan(value) else f'{value:.{digits}f}'
    return str(value)


def write_csv(rows: List[dict], path: str) -> None:
    def write(tmp):
        with open(tmp, 'w', newline='') as f:
            writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
            writer.writeheader()
            for row in rows:
                writer.writerow({k: row[k] for k in CSV_COLUMNS})

    _atomic_write(path, write)


def write_markdown(rows: List[dict], path: str, header: str) -> None:
    lines = [
        '# Patch classifier comparison (paper Table I)', '', header, '',
        '| Network | Accuracy | Precision (nodule) | Recall (nodule) | '
        'AUC (nodule) | Params (M) | Train time (s) | Epochs | '
        'Paper accuracy |',
        '|---|---:|---:|---:|---:|---:|---:|---:|---:|'
    ]
    for row in rows:
        paper = row['paper_accuracy']
        lines.append(
            f"| {row['network']} | {_fmt(row['accuracy'])} | "
            f"{_fmt(row['precision'])} | {_fmt(row['recall'])} | "
            f"{_fmt(row['auc'])} | {row['params'] / 1e6:.3f} | "
            f"{row['train_time_s']:.1f} | {row['epochs']} | "
            f"{_fmt(paper) if paper != '' else '-'} |")
    lines.append('')

    def write(tmp):
        with open(tmp, 'w') as f:
            f.write('\n'.join(lines))

    _atomic_write(path, write)


def write_chart(rows: List[dict], path: str, title: str) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    import numpy as np

    names = [row['network'] for row in rows]
    x = np.arange(len(rows))
    width = 0.2
    fig, ax = plt.subplots(figsize=(max(6.0, 1.3 * len(rows) + 2), 4.5))
    for i, key in enumerate(METRIC_COLUMNS):
        values = [row[key] for row in rows]
        ax.bar(x + (i - 1.5) * width, values, width, label=key)
    paper = [(j, row['paper_accuracy']) for j, row in enumerate(rows)
             if row['paper_accuracy'] != '']
    if paper:
        ax.scatter([x[j] - 1.5 * width for j, _ in paper],
                   [v for _, v in paper],
                   marker='_', s=300, color='black', zorder=3,
                   label='paper accuracy')
    ax.set_xticks(x)
    ax.set_xticklabels(names, rotation=20)
    ax.set_ylim(0.0, 1.05)
    ax.set_ylabel('test score (nodule = positive)')
    ax.set_title(title, fontsize=9)
    ax.legend(loc='upper center', bbox_to_anchor=(0.5, -0.15), ncol=5,
              fontsize=8, frameon=False)
    ax.grid(axis='y', alpha=0.3)
    fig.tight_layout()

    def write(tmp):
        fig.savefig(tmp, dpi=120, format='png')

    try:
        _atomic_write(path, write)
    finally:
        plt.close(fig)


def write_outputs(rows: List[dict], out_dir: str,
                  args: argparse.Namespace) -> Dict[str, str]:
    """Write the table (Markdown, CSV) and the chart; return their paths."""
    import torch

    os.makedirs(out_dir, exist_ok=True)
    # Table I order, whatever order the networks ran in
    order = {name: i for i, name in enumerate(NETWORKS)}
    rows = sorted(rows, key=lambda row: order.get(row['network'], len(order)))
    paths = {
        ext: osp.join(out_dir, f'{OUT_STEM}.{ext}')
        for ext in ('md', 'csv', 'png')
    }
    machine = (f'{platform.node()} ({platform.machine()}, {os.cpu_count()} '
               f'CPUs, torch {torch.__version__}, '
               f"{'CUDA ' + torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU'})")  # noqa: E501
    header = (f'Data: `{args.data_root}`; date: '
              f'{datetime.date.today().isoformat()}; machine: {machine}; '
              f"command: `{' '.join(sys.argv)}`. Metrics on the test split, "
              'final weights; precision, recall and AUC of the nodule class; '
              'training time is the wall time of `Runner.train()`, with the '
              'validation the schedule runs.')
    write_csv(rows, paths['csv'])
    write_markdown(rows, paths['md'], header)
    write_chart(rows, paths['png'], f'Patch classifiers on {args.data_root} '
                '(test split)')
    return paths


def compare(args: argparse.Namespace) -> List[dict]:
    """Run every chosen network and write the outputs after each one."""
    from tqdm import tqdm

    if args.configs:
        jobs = [(osp.splitext(osp.basename(c))[0], c) for c in args.configs]
    else:
        jobs = [(name, str(CONFIG_DIR / NETWORKS[name]))
                for name in args.networks]
    out_dir = args.out_dir or args.work_dir
    rows: List[dict] = []
    failed: List[str] = []
    progress = tqdm(jobs, desc='networks', unit='net', file=sys.stderr)
    for name, config_path in progress:
        progress.set_postfix_str(name)
        try:
            rows.append(run_network(name, config_path, args))
        except Exception as exc:  # keep the other networks' results
            failed.append(f'{name} ({config_path}): '
                          f'{type(exc).__name__}: {exc}')
            tqdm.write(f'[compare_backbones] {name} failed: {exc}',
                       file=sys.stderr)
            continue
        paths = write_outputs(rows, out_dir, args)
        row = rows[-1]
        tqdm.write(
            f"[compare_backbones] {name}: accuracy {row['accuracy']:.4f}, "
            f"precision {row['precision']:.4f}, recall {row['recall']:.4f}, "
            f"AUC {_fmt(row['auc'])}, {row['params'] / 1e6:.3f} M params, "
            f"{row['train_time_s']:.0f} s",
            file=sys.stderr)
    progress.close()
    if rows:
        print('Table written to ' + ', '.join(paths.values()))
    if failed:
        raise RuntimeError('these networks failed:\n  ' + '\n  '.join(failed))
    return rows


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    try:
        compare(args)
    except RuntimeError as exc:
        print(f'compare_backbones: {exc}', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
