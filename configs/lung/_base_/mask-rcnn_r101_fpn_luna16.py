# Mask R-CNN R101-FPN on LUNA16 slices: what every lung config shares.
#
# It inherits mmdet's COCO Mask R-CNN R101-FPN and overrides what does not fit CT:
# one class, the LUNA16 COCO export of data_prep/luna16_to_coco.py, images kept at
# their native 512x512 (mmdet's COCO pipeline resizes to 1333x800), and no flips.
_base_ = 'mmdet::mask_rcnn/mask-rcnn_r101_fpn_1x_coco.py'

custom_imports = dict(imports=['projects.lung_nodule'], allow_failed_imports=False)

# ---------------------------------------------------------------- model
# COCO-pretrained: load_from covers the backbone, so its ImageNet init_cfg is off
# (Runner.train() would otherwise try to download torchvision://resnet101 first).
load_from = 'https://download.openmmlab.com/mmdetection/v2.0/mask_rcnn/mask_rcnn_r101_fpn_1x_coco/mask_rcnn_r101_fpn_1x_coco_20200204-1efe0ed5.pth'  # noqa: E501
model = dict(
    backbone=dict(init_cfg=None),
    roi_head=dict(
        bbox_head=dict(num_classes=1),
        mask_head=dict(num_classes=1)))

# ---------------------------------------------------------------- data
dataset_type = 'CocoDataset'
data_root = 'data/luna16_coco/'  # written by data_prep/luna16_to_coco.py
metainfo = dict(classes=('nodule', ), palette=[(220, 20, 60)])
backend_args = None

# Slices are 8-bit PNGs of HU [-1024, 800] -> [0, 255], lung-masked; cv2 reads the
# grey PNG as 3 equal channels, which is what the COCO-pretrained stem expects.
# Resize keeps 512x512 slices at their native size (scale factor 1, never stretched).
train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=(512, 512), keep_ratio=True),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='Resize', scale=(512, 512), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]

train_dataloader = dict(
    batch_size=2,
    num_workers=2,
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/instances_train.json',
        data_prefix=dict(img='images/train/'),
        filter_cfg=dict(filter_empty_gt=True, min_size=0),
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1,
    num_workers=2,
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/instances_val.json',
        data_prefix=dict(img='images/val/'),
        pipeline=test_pipeline))
test_dataloader = dict(
    batch_size=1,
    num_workers=2,
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/instances_test.json',
        data_prefix=dict(img='images/test/'),
        test_mode=True,
        pipeline=test_pipeline))

val_evaluator = dict(
    type='CocoMetric',
    ann_file=data_root + 'annotations/instances_val.json',
    metric=['bbox', 'segm'],
    backend_args=backend_args)
test_evaluator = dict(
    type='CocoMetric',
    ann_file=data_root + 'annotations/instances_test.json',
    metric=['bbox', 'segm'],
    backend_args=backend_args)
