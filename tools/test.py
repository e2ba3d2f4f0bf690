"""Test a detector: mmdet's ``tools/test.py`` with our package and ``--eval``.

mmdet 3.x computes metrics from ``test_evaluator``; ``--eval segm`` (or
``--eval bbox segm``) sets the ``metric`` of every ``CocoMetric`` in it, as the
2.x tool's flag did. The metrics are printed and written as JSON to
``<work_dir>/test_metrics.json``.

Example::

    python tools/test.py configs/lung/mask_rcnn_r101_fpn_staged.py \
        work_dirs/mask_rcnn_r101_fpn_staged/iter_12000.pth --eval segm
"""
import argparse
import json
import os
import os.path as osp
from typing import List, Optional

import _bootstrap  # noqa: F401  (puts the repo on sys.path, registers our modules)
from mmengine.config import Config, ConfigDict, DictAction
from mmengine.fileio import dump
from mmengine.logging import print_log
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

from _tool_config import load_tool_config
from mmdet.utils import setup_cache_size_limit_of_dynamo
from projects.lung_nodule.engine import close_distributed

EVAL_CHOICES = ('bbox', 'segm', 'proposal', 'proposal_fast')


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Test (and evaluate) a detector')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='the dir to save the metrics JSON and logs')
    parser.add_argument(
        '--eval',
        nargs='+',
        choices=EVAL_CHOICES,
        help='COCO metrics to compute, e.g. "--eval segm" or "--eval bbox segm"; '
        'sets test_evaluator.metric')
    parser.add_argument('--out', help='dump predictions to a pickle file (.pkl)')
    parser.add_argument(
        '--show-dir',
        help='directory (relative to the work dir) where painted images are saved')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override settings of the config, key=value pairs')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args()
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def apply_eval_option(cfg: Config, metrics: List[str]) -> None:
    """Point every ``CocoMetric`` of ``cfg.test_evaluator`` at ``metrics``."""
    evaluators = cfg.test_evaluator
    evaluators = evaluators if isinstance(evaluators, (list, tuple)) else [evaluators]
    coco = [e for e in evaluators if e.get('type') == 'CocoMetric']
    if not coco:
        raise ValueError('--eval needs a CocoMetric in test_evaluator; the config has '
                         f'{[e.get("type") for e in evaluators]}')
    for evaluator in coco:
        evaluator.metric = list(metrics)


def enable_visualization(cfg: Config, show_dir: str) -> None:
    """Turn on mmdet's ``DetVisualizationHook`` to save painted test images."""
    hooks = cfg.setdefault('default_hooks', ConfigDict())
    if 'visualization' not in hooks:
        raise ValueError('--show-dir needs default_hooks.visualization in the config')
    hooks.visualization.draw = True
    hooks.visualization.test_out_dir = show_dir


def main() -> Optional[dict]:
    args = parse_args()
    setup_cache_size_limit_of_dynamo()

    cfg = load_tool_config(args)
    cfg.load_from = args.checkpoint
    if args.eval:
        apply_eval_option(cfg, args.eval)
    if args.show_dir:
        enable_visualization(cfg, args.show_dir)

    runner = Runner.from_cfg(cfg) if 'runner_type' not in cfg else RUNNERS.build(cfg)
    if args.out is not None:
        from mmdet.evaluation import DumpDetResults
        if not args.out.endswith(('.pkl', '.pickle')):
            raise ValueError(f'--out must be a .pkl file, got {args.out!r}')
        runner.test_evaluator.metrics.append(DumpDetResults(out_file_path=args.out))

    metrics = runner.test()
    if runner.rank == 0:
        metrics = {k: float(v) if isinstance(v, (int, float)) else v for k, v in metrics.items()}
        out_file = osp.join(cfg.work_dir, 'test_metrics.json')
        dump(metrics, out_file, indent=2)
        print_log('test metrics:\n' + json.dumps(metrics, indent=2), logger='current')
        print_log(f'metrics written to {out_file}', logger='current')
    close_distributed()
    return metrics


if __name__ == '__main__':
    main()
