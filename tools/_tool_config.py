"""The config set-up that ``tools/train.py`` and ``tools/test.py`` share."""
import argparse
import os.path as osp

from mmengine.config import Config

from projects.lung_nodule.engine import setup_cpu_distributed


def load_tool_config(args: argparse.Namespace) -> Config:
    """Read ``args.config`` and apply ``--launcher``, ``--cfg-options``, ``--work-dir``.

    The work dir follows mmdet's priority: CLI > config > ``./work_dirs/<config name>``.
    ``--launcher pytorch`` without CUDA (``tools/dist_*.sh`` on a CPU) gets gloo.
    """
    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    setup_cpu_distributed(cfg, args.launcher)
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])
    return cfg
