# model settings: ResNet-101 (He et al. 2016), the ImageNet layout (7x7 stride-2
# stem + max-pool, 4 stages of bottlenecks, pytorch style): the same module
# names and shapes as mmdet's ResNet-101, so a trained backbone can become
# the Mask R-CNN backbone (configs/lung/mask_rcnn_r101_fpn_staged_patch-backbone.py).
_base_ = './patch_classifier.py'

model = dict(
    backbone=dict(type='ResNet', depth=101, out_indices=(3, ), style='pytorch'),
    head=dict(in_channels=2048))
