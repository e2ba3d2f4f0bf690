"""Models; importing this subpackage registers ``ResNet20`` (He et al.'s CIFAR
ResNet-20, a ``ResNet_CIFAR`` subclass) in mmpretrain's ``MODELS``, and in mmdet's
``MODELS`` ``ParallelRoIAlign`` (mmcv's RoIAlign computed on all CPU cores) with
``RegistryRoIExtractor`` (the RoI extractor that can use it)."""
from ..mmpretrain_compat import skip_mmpretrain_multimodal_on_transformers_5

# before resnet20 imports mmpretrain.models; the registry and every config reach
# mmpretrain's models through this package (its datasets and metrics do not import them)
skip_mmpretrain_multimodal_on_transformers_5()

from .resnet20 import ResNet20  # noqa: E402
from .roi_align import ParallelRoIAlign  # noqa: E402
from .roi_extractor import RegistryRoIExtractor  # noqa: E402

__all__ = ['ParallelRoIAlign', 'RegistryRoIExtractor', 'ResNet20']
