# model settings: ResNet-20, He et al.'s CIFAR ResNet (3x3 stride-1 stem, 3 stages of
# 3 basic blocks, 16/32/64 channels): our registered ResNet20 backbone.
# The backbone has no classifier of its own (num_classes=-1): a global
# average pool and a linear 2-class head (normal, nodule) sit on its last
# feature map, the same head for every network of Table I.
model = dict(
    type='ImageClassifier',
    backbone=dict(type='ResNet20', depth=20),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=2,
        in_channels=64,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0),
        topk=(1, ),
    ))
