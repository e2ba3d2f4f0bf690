"""Models; importing this subpackage registers ``ResNet20`` (He et al.'s CIFAR
ResNet-20, a ``ResNet_CIFAR`` subclass) in mmpretrain's ``MODELS``, and in mmdet's
``MODELS`` ``ParallelRoIAlign`` (mmcv's RoIAlign computed on all CPU cores) with
``RegistryRoIExtractor`` (the RoI extractor that can use it)."""
from .resnet20 import ResNet20
from .roi_align import ParallelRoIAlign
from .roi_extractor import RegistryRoIExtractor

__all__ = ['ParallelRoIAlign', 'RegistryRoIExtractor', 'ResNet20']
