"""Nodule metrics, registered in ``mmdet.registry.METRICS``."""
from .matterport_mask_ap import MatterportMaskAP
from .nodule_dice import NoduleDiceMetric

__all__ = ['MatterportMaskAP', 'NoduleDiceMetric']
