"""Datasets and data transforms.

Importing it registers ``BoxesFromMasks`` in mmdet's ``TRANSFORMS`` and
``PatchFolderDataset`` (class folders numbered in the order of ``classes``, so
``('normal', 'nodule')`` makes ``nodule`` label 1) in mmpretrain's ``DATASETS``.
"""
from .patch_folder_dataset import PatchFolderDataset
from .transforms import BoxesFromMasks

__all__ = ['BoxesFromMasks', 'PatchFolderDataset']
