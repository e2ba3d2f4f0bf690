"""Drop the ignore (``iscrowd``) regions from a training sample before it is cropped."""
import numpy as np
from mmcv.transforms import BaseTransform

from mmdet.registry import TRANSFORMS


@TRANSFORMS.register_module()
class DropIgnoredInstances(BaseTransform):
    """Remove every instance whose ``gt_ignore_flags`` is set from the ``gt_*`` fields.

    The COCO slices carry LUNA16's excluded findings as ``iscrowd`` regions (see
    ``data_prep/luna16_to_coco.py --excluded``), which only scoring needs: mmdet trains
    on them as background. Some transforms count them as objects, though:
    ``RandomCrop(allow_negative_crop=False)`` takes a crop that holds only an excluded
    mass as a crop with an object, and ``CopyPaste`` pastes the mass into another crop.
    Put this transform right after ``LoadAnnotations`` in a training pipeline that has
    such steps; the sample is then exactly what it was without the ignore regions.

    Required Keys:

    - gt_ignore_flags (bool) (optional: without it nothing changes)
    - gt_bboxes, gt_bboxes_labels, gt_masks (optional)

    Modified Keys:

    - gt_ignore_flags, gt_bboxes, gt_bboxes_labels, gt_masks
    """

    KEYS = ('gt_bboxes', 'gt_bboxes_labels', 'gt_masks', 'gt_ignore_flags')

    def transform(self, results: dict) -> dict:
        """Keep the instances that are not ignored.

        Args:
            results (dict): Result dict of the pipeline.

        Returns:
            dict: The same dict without the ignored instances.
        """
        flags = results.get('gt_ignore_flags', None)
        if flags is None or not np.any(flags):
            return results
        keep = np.flatnonzero(~np.asarray(flags, dtype=bool))
        for key in self.KEYS:
            if results.get(key, None) is not None:
                results[key] = results[key][keep]
        return results
