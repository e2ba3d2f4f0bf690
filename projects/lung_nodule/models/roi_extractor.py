"""mmdet's ``SingleRoIExtractor`` that also takes RoI layers registered in ``MODELS``.

mmdet's RoI extractors build ``roi_layer=dict(type=...)`` from ``mmcv.ops`` only (a
string type must be an attribute of ``mmcv.ops``), so a registered layer such as
:class:`~projects.lung_nodule.models.roi_align.ParallelRoIAlign` cannot be named in a
text config. This subclass looks a type that ``mmcv.ops`` lacks up in mmdet's
``MODELS`` and otherwise behaves exactly as ``SingleRoIExtractor``::

    bbox_roi_extractor=dict(type='RegistryRoIExtractor',
                            roi_layer=dict(type='ParallelRoIAlign', output_size=7,
                                           sampling_ratio=0))
"""
from typing import List

from mmcv import ops
from mmdet.models.roi_heads.roi_extractors import SingleRoIExtractor
from mmdet.registry import MODELS
from mmdet.utils import ConfigType
from torch import nn

__all__ = ['RegistryRoIExtractor']


@MODELS.register_module()
class RegistryRoIExtractor(SingleRoIExtractor):
    """``SingleRoIExtractor`` whose ``roi_layer`` type may come from mmdet's ``MODELS``.

    Args are those of ``mmdet.models.SingleRoIExtractor``.
    """

    def build_roi_layers(self, layer_cfg: ConfigType,
                         featmap_strides: List[int]) -> nn.ModuleList:
        """One RoI layer per feature level; registered types resolved in ``MODELS``.

        Raises:
            KeyError: The type is neither in ``mmcv.ops`` nor registered.
        """
        layer_type = layer_cfg['type']
        if isinstance(layer_type, str) and not hasattr(ops, layer_type):
            layer_cls = MODELS.get(layer_type)
            if layer_cls is None:
                raise KeyError(f'roi_layer type {layer_type!r} is neither in mmcv.ops nor '
                               f"registered in mmdet's MODELS")
            layer_cfg = dict(layer_cfg, type=layer_cls)
        return super().build_roi_layers(layer_cfg, featmap_strides)
