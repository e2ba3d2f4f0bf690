"""Training-time pieces for mmengine's Runner: hooks and launcher helpers.

Importing it registers ``StagedUnfreezeHook`` in mmdet's ``HOOKS``.
"""
from .distributed import close_distributed, setup_cpu_distributed
from .hooks import StagedUnfreezeHook

__all__ = ['StagedUnfreezeHook', 'close_distributed', 'setup_cpu_distributed']
