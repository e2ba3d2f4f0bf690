"""Data transforms of the project (registered in ``mmdet.registry.TRANSFORMS``)."""
from .boxes_from_masks import BoxesFromMasks
from .drop_ignored_instances import DropIgnoredInstances

__all__ = ['BoxesFromMasks', 'DropIgnoredInstances']
