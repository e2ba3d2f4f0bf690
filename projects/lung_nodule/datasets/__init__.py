"""Datasets and data transforms.

Importing it registers ``BoxesFromMasks`` and ``DropIgnoredInstances`` in mmdet's
``TRANSFORMS``, ``LungCocoDataset`` (the COCO slices, checked for the lung-mask mode) in
mmdet's ``DATASETS``, and ``PatchFolderDataset`` (class folders numbered in the order of
``classes``, so ``('normal', 'nodule')`` makes ``nodule`` label 1) in mmpretrain's
``DATASETS``.
"""
from .lung_coco_dataset import LungCocoDataset
from .patch_folder_dataset import PatchFolderDataset
from .transforms import BoxesFromMasks, DropIgnoredInstances
from .wrapped import image_dataset

__all__ = ['BoxesFromMasks', 'DropIgnoredInstances', 'LungCocoDataset', 'PatchFolderDataset',
           'image_dataset']
