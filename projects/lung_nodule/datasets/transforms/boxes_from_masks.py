"""Recompute ground-truth boxes from the masks after a geometric transform."""
from typing import Optional

import numpy as np
from mmcv.transforms import BaseTransform

from mmdet.registry import TRANSFORMS
from mmdet.structures.bbox import autocast_box_type, get_box_type
from mmdet.structures.mask import BitmapMasks


@TRANSFORMS.register_module()
class BoxesFromMasks(BaseTransform):
    """Set each ``gt_bboxes`` to the tight box of its mask; drop emptied masks.

    mmdet's ``Rotate`` and ``TranslateX/Y`` move the masks pixel by pixel but
    transform the boxes geometrically: a rotated box is the box around the
    rotated *box*, up to ~41% wider than the rotated nodule at 45 degrees, and a
    nodule pushed (partly) out of the image keeps a clipped box whatever is left
    of its mask. Put this transform after them: boxes become the tight boxes of
    the moved masks (``x2 = last column + 1``, as ``BitmapMasks.get_bboxes``),
    and instances whose mask left the image (fewer than ``min_area`` pixels)
    are removed from every ``gt_*`` field.

    Required Keys:

    - gt_masks (BitmapMasks)
    - gt_bboxes (BaseBoxes[torch.float32]) (optional)
    - gt_bboxes_labels (np.int64) (optional)
    - gt_ignore_flags (bool) (optional)

    Modified Keys:

    - gt_bboxes
    - gt_masks
    - gt_bboxes_labels
    - gt_ignore_flags

    Added Keys:

    - gt_bboxes (when it was missing)

    Args:
        min_area (int): Instances whose mask has fewer pixels are dropped.
            Defaults to 1.
        box_type (str): Box type of a ``gt_bboxes`` that is created here.
            Defaults to 'hbox'.
    """

    def __init__(self, min_area: int = 1, box_type: Optional[str] = 'hbox') -> None:
        if min_area < 1:
            raise ValueError(f'min_area must be >= 1, got {min_area}')
        self.min_area = min_area
        self.box_type = box_type

    @autocast_box_type()
    def transform(self, results: dict) -> dict:
        """Recompute the boxes and filter the instances of ``results``.

        Args:
            results (dict): Result dict of the pipeline.

        Returns:
            dict: The same dict with tight boxes and only non-empty instances.
        """
        masks = results.get('gt_masks', None)
        if masks is None:
            return results
        if not isinstance(masks, BitmapMasks):
            raise TypeError('BoxesFromMasks needs BitmapMasks (LoadAnnotations with '
                            f'poly2mask=True), got {type(masks).__name__}')
        # sum over (y, x), not a reshape to (n, -1): n is 0 on a slice or crop without a
        # nodule (a negative crop), where reshape cannot infer the -1
        keep = masks.masks.sum(axis=(1, 2)) >= self.min_area
        if not keep.all():
            index = np.flatnonzero(keep)
            masks = masks[index]
            results['gt_masks'] = masks
            for key in ('gt_bboxes_labels', 'gt_ignore_flags'):
                if results.get(key, None) is not None:
                    results[key] = results[key][keep]
        tight = masks.get_bboxes(dst_type='hbox')
        boxes = results.get('gt_bboxes', None)
        if boxes is None:
            _, box_cls = get_box_type(self.box_type)
            results['gt_bboxes'] = box_cls(tight.tensor)
        else:
            results['gt_bboxes'] = type(boxes)(tight.tensor.to(boxes.tensor.dtype))
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(min_area={self.min_area}, '
                f'box_type={self.box_type!r})')
