# AlexNet on 50x50 lung patches (Table I, row 2).
_base_ = [
    '_base_/models/alexnet.py',
    '_base_/datasets/lung_patch_bs64.py',
    '_base_/schedules/lung_patch_bs64.py',
    '_base_/default_runtime.py',
]

# Input size: AlexNet's 11x11 stride-4 convolution and three 3x3 stride-2
# max-pools need at least 63x63 pixels (63 -> 15 -> 7 -> 3 -> 1); a 50x50
# patch is resized to 64x64, not to the 224x224 of ImageNet. mmpretrain's
# AlexNet has a fixed 3-channel first layer: the grey patch is read as 3
# identical channels (the dataset default).
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(64, 64)),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='RandomFlip', prob=0.5, direction='vertical'),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(64, 64)),
    dict(type='PackInputs'),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
