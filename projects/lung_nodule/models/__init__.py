"""mmpretrain modules of the backbone comparison (the paper's Table I).

Importing this subpackage registers, in mmpretrain's registries:

- ``ResNet20`` (``MODELS``): He et al.'s CIFAR ResNet-20, a ``ResNet_CIFAR``
  subclass;
- ``PatchFolderDataset`` (``DATASETS``): class folders numbered in the order
  of ``classes``, so ``('normal', 'nodule')`` makes ``nodule`` label 1;
- ``BinaryAUC`` (``METRICS``): ROC AUC of one class, which mmpretrain lacks.
"""
from .binary_auc import BinaryAUC, binary_auc
from .patch_folder_dataset import PatchFolderDataset
from .resnet20 import ResNet20

__all__ = ['BinaryAUC', 'PatchFolderDataset', 'ResNet20', 'binary_auc']
