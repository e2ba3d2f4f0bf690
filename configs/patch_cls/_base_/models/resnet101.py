# model settings: ResNet-101 (He et al. 2016), the ImageNet layout (7x7 stride-2
# stem + max-pool, 4 stages of bottlenecks, pytorch style): the same module
# names and shapes as mmdet's ResNet-101, so a trained backbone can become
# the Mask R-CNN backbone (configs/lung/mask_rcnn_r101_fpn_staged_patch-backbone.py).
# The backbone has no classifier of its own (num_classes=-1): a global
# average pool and a linear 2-class head (normal, nodule) sit on its last
# feature map, the same head for every network of Table I.
model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='ResNet',
        depth=101,
        num_stages=4,
        out_indices=(3, ),
        style='pytorch'),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=2,
        in_channels=2048,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0),
        topk=(1, ),
    ))
