"""Test helper loaded by ``custom_imports`` in the distributed training test.

``RankParamsDumpHook`` saves each rank's parameters when training starts (after
weight init and DDP's broadcast) and when it ends, to ``out_dir/rank{R}_{when}.pth``,
so the test can compare the ranks: mmengine's CheckpointHook saves on rank 0 only.
"""
import os.path as osp

import torch
from mmengine.dist import get_rank
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from mmdet.registry import HOOKS


@HOOKS.register_module()
class RankParamsDumpHook(Hook):
    """Save this rank's parameters before and after training.

    Args:
        out_dir (str): Where ``rank{R}_init.pth`` and ``rank{R}_final.pth`` go.
    """

    def __init__(self, out_dir: str) -> None:
        self.out_dir = out_dir

    def _dump(self, runner, when: str) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        params = {n: p.detach().cpu().clone() for n, p in model.named_parameters()}
        torch.save(params, osp.join(self.out_dir, f'rank{get_rank()}_{when}.pth'))

    def before_train(self, runner) -> None:
        self._dump(runner, 'init')

    def after_train(self, runner) -> None:
        self._dump(runner, 'final')
