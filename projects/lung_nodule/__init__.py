"""Lung-nodule instance segmentation on chest CT, built on OpenMMLab registries.

Configs load this package with::

    custom_imports = dict(imports=['projects.lung_nodule'], allow_failed_imports=False)

Importing it registers our modules (hooks, backbones, metrics, transforms) in the
mmdet / mmpretrain / mmengine registries, and installs the torch >= 2.6 checkpoint
loader of :mod:`projects.lung_nodule.checkpoint`.
"""
from .checkpoint import CHECKPOINT_SAFE_GLOBALS, load_checkpoint_file
from . import engine  # noqa: F401  (StagedUnfreezeHook: mmdet HOOKS)
from . import models  # noqa: F401  (ResNet20, PatchFolderDataset, BinaryAUC: mmpretrain)

__all__ = ['CHECKPOINT_SAFE_GLOBALS', 'load_checkpoint_file']
from . import evaluation  # noqa: F401
from . import datasets  # noqa: F401
from . import visualization  # noqa: F401
