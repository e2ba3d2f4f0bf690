# The paper's method (1): the COCO-pretrained Mask R-CNN R101-FPN fine-tuned on all
# layers at once (section IV.B: SGD, learning rate 1e-4, momentum 0.9).
_base_ = './_base_/mask-rcnn_r101_fpn_luna16.py'

# mmdet's base freezes the stem and the first stage (frozen_stages=1); "all layers"
# means every ResNet stage trains. BN statistics stay frozen (norm_eval=True), as in
# Matterport's Mask_RCNN, which the paper used.
model = dict(backbone=dict(frozen_stages=-1))

optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=1e-4, momentum=0.9, weight_decay=1e-4))
