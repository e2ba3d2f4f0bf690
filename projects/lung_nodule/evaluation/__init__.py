"""Evaluation of nodule segmentation beside mmdet's ``CocoMetric``.

Importing it registers ``MatterportMaskAP`` (the paper's likely metric: per-image
mask AP at IoU 0.5, averaged over images) and ``NoduleDiceMetric`` in mmdet's
``METRICS``.
"""
from .functional import best_match_dice, mask_iou, matterport_mask_ap
from .metrics import MatterportMaskAP, NoduleDiceMetric

__all__ = [
    'MatterportMaskAP', 'NoduleDiceMetric', 'best_match_dice', 'mask_iou',
    'matterport_mask_ap'
]
