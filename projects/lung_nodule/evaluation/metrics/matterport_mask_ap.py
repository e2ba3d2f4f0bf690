"""Matterport's mask mAP: per-image mask AP at one IoU, averaged over images."""
from typing import Dict, Optional, Sequence

import numpy as np
from mmengine.evaluator import BaseMetric
from mmengine.logging import MMLogger

from mmdet.registry import METRICS
from ..functional import matterport_mask_ap, on_ignore_regions, sample_masks


@METRICS.register_module()
class MatterportMaskAP(BaseMetric):
    """Mask AP of each image at ``iou_thr``, averaged over images.

    This is what ``mrcnn.utils.compute_ap`` in Matterport's Mask_RCNN (used by
    the paper) gives, averaged over images as in its evaluation notebooks; it is
    not COCO's AP50, which pools the detections of all images into one
    precision/recall curve. Each image's predictions are matched by mask IoU in
    score order (one ground truth per prediction; a second detection of a matched
    nodule is a false positive) and its AP is the area under its interpolated
    precision/recall curve.

    A prediction on an ignore region (``iscrowd``: an excluded finding) that matches no
    nodule is left out, as COCO and LUNA16 leave it out (Matterport has no ignore
    regions).

    Matterport's AP is undefined for an image without ground truth (recall 0/0):
    such images are left out of the mean, and their predictions (false positives)
    are counted in ``fp_per_empty_image``.

    Args:
        iou_thr (float): Mask IoU a match needs. Defaults to 0.5.
        score_thr (float): Predictions scoring below this are dropped first, as
            Matterport's ``DETECTION_MIN_CONFIDENCE`` (0.7) does. Defaults to 0.7.
        collect_device (str): Device to collect results across ranks on.
            Defaults to 'cpu'.
        prefix (str, optional): Prefix of the metric names. Defaults to
            ``'matterport'``.

    Metrics:
        ``mask_mAP_50`` (the number is ``iou_thr`` in percent): the mean AP;
        ``num_images``: images averaged over; ``fp_per_empty_image``.
    """
    default_prefix: Optional[str] = 'matterport'

    def __init__(self,
                 iou_thr: float = 0.5,
                 score_thr: float = 0.7,
                 collect_device: str = 'cpu',
                 prefix: Optional[str] = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        if not 0 < iou_thr <= 1:
            raise ValueError(f'iou_thr must be in (0, 1], got {iou_thr}')
        self.iou_thr = iou_thr
        self.score_thr = score_thr

    def process(self, data_batch: dict, data_samples: Sequence[dict]) -> None:
        """Compute the AP of each image (or its false positives if it has no nodule).

        Args:
            data_batch (dict): A batch from the dataloader (unused).
            data_samples (Sequence[dict]): Predicted data samples with
                ``gt_instances`` (masks, labels) and ``pred_instances``.
        """
        for data_sample in data_samples:
            sample = sample_masks(data_sample, self.score_thr)
            keep = ~on_ignore_regions(sample['pred_masks'], sample['gt_masks'],
                                      sample['ignore_masks'], self.iou_thr)
            if len(sample['gt_masks']) == 0:
                self.results.append(dict(ap=None, empty_fp=int(keep.sum())))
                continue
            ap = matterport_mask_ap(sample['gt_masks'], sample['gt_labels'],
                                    sample['pred_masks'][keep], sample['pred_labels'][keep],
                                    sample['pred_scores'][keep], self.iou_thr)
            self.results.append(dict(ap=ap, empty_fp=None))

    def compute_metrics(self, results: list) -> Dict[str, float]:
        """Average the per-image APs.

        Args:
            results (list): What ``process`` stored, from every rank.

        Returns:
            dict: ``mask_mAP_<iou%>``, ``num_images``, ``fp_per_empty_image``.
        """
        aps = [r['ap'] for r in results if r['ap'] is not None]
        empty = [r['empty_fp'] for r in results if r['ap'] is None]
        if not aps:
            MMLogger.get_current_instance().warning(
                'MatterportMaskAP: no image with ground truth; the mAP is NaN')
        name = f'mask_mAP_{round(self.iou_thr * 100)}'
        return {
            name: float(np.mean(aps)) if aps else float('nan'),
            'num_images': float(len(aps)),
            'fp_per_empty_image': float(np.mean(empty)) if empty else 0.0,
        }

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(iou_thr={self.iou_thr}, '
                f'score_thr={self.score_thr}, prefix={self.prefix!r})')
