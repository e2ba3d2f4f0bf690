"""Data transforms of the project (registered in ``mmdet.registry.TRANSFORMS``)."""
from .boxes_from_masks import BoxesFromMasks

__all__ = ['BoxesFromMasks']
