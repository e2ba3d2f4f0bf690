# model settings: VGG-16 (Simonyan and Zisserman 2015) with BatchNorm after each of its
# 13 convolutions (mmpretrain's vgg16bn), a deviation from the plain VGG-16:
# every network here trains from scratch with one shared schedule, and BN
# lets the 13-layer plain stack do so. The 4096-wide fully connected layers
# are replaced by the pooled linear head.
# The backbone has no classifier of its own (num_classes=-1): a global
# average pool and a linear 2-class head (normal, nodule) sit on its last
# feature map, the same head for every network of Table I.
model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='VGG', depth=16, norm_cfg=dict(type='BN'), num_classes=-1),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=2,
        in_channels=512,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0),
        topk=(1, ),
    ))
