# model settings: LeNet-5 (LeCun et al. 1998): 3 tanh convolutions, 1-channel input.
# The backbone has no classifier of its own (num_classes=-1): a global
# average pool and a linear 2-class head (normal, nodule) sit on its last
# feature map, the same head for every network of Table I.
model = dict(
    type='ImageClassifier',
    backbone=dict(type='LeNet5', num_classes=-1),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=2,
        in_channels=120,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0),
        topk=(1, ),
    ))
