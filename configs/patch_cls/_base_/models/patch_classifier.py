# model settings shared by the Table I networks: an image classifier whose
# backbone has no classifier of its own (num_classes=-1), a global average
# pool and a linear 2-class head (normal, nodule). Each network's file sets
# `backbone` and the head's `in_channels` (its last feature map's channels).
model = dict(
    type='ImageClassifier',
    backbone=dict(),  # set by each network's file
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=2,
        in_channels=None,  # set by each network's file
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0),
        topk=(1, ),
    ))
