# dataset settings: 50x50 lung CT patches in ImageNet-style class folders,
# written by data_prep/luna16_to_patches.py:
#   data/luna16_patches/{train,val,test}/{normal,nodule}/*.png
# 8-bit single-channel PNGs (HU clipped to [-1024, 800], scaled to [0, 255]).
dataset_type = 'PatchFolderDataset'
data_root = 'data/luna16_patches/'

# the class order is fixed: label 0 = normal, label 1 = nodule (the positive
# class of precision, recall and AUC). PatchFolderDataset numbers the folders
# in this order; mmpretrain's CustomDataset would number them alphabetically
# (nodule = 0) whatever `classes` says.
metainfo = dict(classes=('normal', 'nodule'))

data_preprocessor = dict(
    num_classes=2,
    # The grey patch is read as 3 identical channels. ImageNet statistics,
    # the normalisation of mmdet's Mask R-CNN data preprocessor: a ResNet-101
    # trained here sees, as the Mask R-CNN backbone, inputs normalised alike.
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    # convert image from BGR to RGB (as mmdet does)
    to_rgb=True,
)

# Input size: the native 50x50 patch, no resize. The ResNets, VGG16 and
# ResNet20 reduce it to 2x2, 1x1 and 13x13 feature maps before the global
# average pool; configs of networks that need another size (LeNet5: 32 px
# grey, AlexNet: 64 px) replace these pipelines.
train_pipeline = [
    dict(type='LoadImageFromFile'),
    # a patch has no preferred orientation: flip both ways
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='RandomFlip', prob=0.5, direction='vertical'),
    dict(type='PackInputs'),
]

test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='PackInputs'),
]

train_dataloader = dict(
    batch_size=64,
    num_workers=2,
    persistent_workers=True,
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        data_prefix='train',
        metainfo=metainfo,
        pipeline=train_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=True),
)

val_dataloader = dict(
    batch_size=64,
    num_workers=2,
    persistent_workers=True,
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        data_prefix='val',
        metainfo=metainfo,
        pipeline=test_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=False),
)

# Accuracy over both classes; precision and recall per class (index 1 is
# nodule); ROC AUC of the nodule score (mmpretrain has no AUC metric).
val_evaluator = [
    dict(type='Accuracy', topk=(1, )),
    dict(
        type='SingleLabelMetric', items=('precision', 'recall'),
        average=None),
    dict(type='BinaryAUC', pos_label='nodule'),
]

# Table I is measured on the held-out test split
test_dataloader = dict(
    batch_size=64,
    num_workers=2,
    persistent_workers=True,
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        data_prefix='test',
        metainfo=metainfo,
        pipeline=test_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=False),
)
test_evaluator = val_evaluator
