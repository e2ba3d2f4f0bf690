"""Register every module of the project in the OpenMMLab registries.

Configs name this module in ``custom_imports`` and the tools import it before they
build a config. It is the one place that imports torch, mmengine, mmdet and
mmpretrain on the package's behalf; :mod:`projects.lung_nodule` itself stays light
so that the CT code and the data converters load without them.

Importing it registers:

- mmdet ``HOOKS``: ``StagedUnfreezeHook``;
- mmdet ``TRANSFORMS``: ``BoxesFromMasks``, ``DropIgnoredInstances``; ``DATASETS``:
  ``LungCocoDataset`` (refuses data exported in another lung-mask mode);
- mmdet ``METRICS``: ``MatterportMaskAP``, ``NoduleDiceMetric``;
- mmdet ``VISUALIZERS``: ``NoduleVisualizer``;
- mmdet ``MODELS``: ``ParallelRoIAlign`` (mmcv's RoIAlign on all CPU cores),
  ``RegistryRoIExtractor`` (the RoI extractor that can build it);
- mmpretrain ``MODELS``: ``ResNet20``; ``DATASETS``: ``PatchFolderDataset``;
  ``METRICS``: ``BinaryAUC``;
- mmengine's local ``CheckpointLoader`` scheme: the torch >= 2.6 loader of
  :mod:`projects.lung_nodule.checkpoint`.
"""
from . import checkpoint  # noqa: F401  (installs the checkpoint loader)
from . import datasets  # noqa: F401
from . import engine  # noqa: F401
from . import models  # noqa: F401
from .evaluation import metrics  # noqa: F401
from . import visualization  # noqa: F401

__all__: list = []
