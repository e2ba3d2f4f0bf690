# The paper's method (1): the COCO-pretrained Mask R-CNN R101-FPN fine-tuned on all
# layers at once (section IV.B: SGD, learning rate 1e-4, momentum 0.9; 24 epochs,
# see _base_/schedules/sgd-1e-4_24e.py).
_base_ = './_base_/schedules/sgd-1e-4_24e.py'

# mmdet's base freezes the stem and the first stage (frozen_stages=1); "all layers"
# means every ResNet stage trains. BN statistics stay frozen (norm_eval=True), as in
# Matterport's Mask_RCNN, which the paper used.
model = dict(backbone=dict(frozen_stages=-1))
