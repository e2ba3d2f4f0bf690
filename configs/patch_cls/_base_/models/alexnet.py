# model settings: AlexNet (Krizhevsky et al. 2012): its 5 convolutions, 3-channel input;
# the 4096-wide fully connected layers are replaced by the pooled linear head.
# The backbone has no classifier of its own (num_classes=-1): a global
# average pool and a linear 2-class head (normal, nodule) sit on its last
# feature map, the same head for every network of Table I.
model = dict(
    type='ImageClassifier',
    backbone=dict(type='AlexNet', num_classes=-1),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=2,
        in_channels=256,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0),
        topk=(1, ),
    ))
