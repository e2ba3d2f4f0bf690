"""Metrics, registered on import: ``MatterportMaskAP`` (the paper's likely metric:
per-image mask AP at IoU 0.5, averaged over images) and ``NoduleDiceMetric`` in mmdet's
``METRICS``; ``BinaryAUC`` (ROC AUC of one class, which mmpretrain lacks) in
mmpretrain's."""
from .binary_auc import BinaryAUC, binary_auc
from .matterport_mask_ap import MatterportMaskAP
from .nodule_dice import NoduleDiceMetric

__all__ = ['BinaryAUC', 'MatterportMaskAP', 'NoduleDiceMetric', 'binary_auc']
