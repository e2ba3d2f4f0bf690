# LeNet-5 on 50x50 lung patches (Table I, row 1).
_base_ = [
    '_base_/models/lenet5.py',
    '_base_/datasets/lung_patch_bs64.py',
    '_base_/schedules/lung_patch_bs64.py',
    '_base_/default_runtime.py',
]

# Input size: LeNet-5 is defined for 32x32 grey images (its three 5x5
# convolutions and two 2x2 pools leave a 1x1 map of 120 features), and
# mmpretrain's LeNet5 has a fixed 1-channel first layer: read the patch as
# one grey channel and resize 50 -> 32.
data_preprocessor = dict(
    # one channel scaled to about [-1, 1], the range of LeNet's tanh units
    mean=[127.5],
    std=[127.5],
    to_rgb=False,
)

train_pipeline = [
    dict(type='LoadImageFromFile', color_type='grayscale'),
    dict(type='Resize', scale=(32, 32)),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='RandomFlip', prob=0.5, direction='vertical'),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile', color_type='grayscale'),
    dict(type='Resize', scale=(32, 32)),
    dict(type='PackInputs'),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
