# LUNA16 slices as COCO instance segmentation, exported by data_prep/luna16_to_coco.py:
#   data/luna16_coco/images/{train,val,test}/*.png
#   data/luna16_coco/annotations/instances_{train,val,test}.json  (one class, 'nodule')
#
# It is chained on mmdet's COCO Mask R-CNN R101-FPN (rather than listed beside it in
# a leaf's _base_) because mmengine forbids the same key in two sibling bases, and
# mmdet's config already defines every data key: this piece overrides them all.
# Chain: mmdet mask-rcnn_r101_fpn_1x_coco -> datasets/luna16_coco_instance (data)
#        -> mask-rcnn_r101_fpn_luna16 (model) -> schedules/* -> configs/lung/*.py
_base_ = 'mmdet::mask_rcnn/mask-rcnn_r101_fpn_1x_coco.py'

# LungCocoDataset (projects/lung_nodule/datasets) is mmdet's CocoDataset that refuses
# an annotation file exported in another lung-mask mode than `lung_mask_mode`:
# 'blank' (pixels outside the lung mask set to 0 in the PNGs, the paper's) or
# 'filter' (whole slices; the mask only filters detections). It must match the
# export's `--lung-mask-mode` (written into the JSON's info) and whole-scan inference
# reads it from here. mmengine resolves this variable where this file is read: a
# config that changes it must also set it in the three datasets, e.g.
#   --cfg-options lung_mask_mode=filter train_dataloader.dataset.lung_mask_mode=filter
#     val_dataloader.dataset.lung_mask_mode=filter test_dataloader.dataset.lung_mask_mode=filter
# (projects.lung_nodule.ct.slice_image.DEFAULT_LUNG_MASK_MODE is the export's default.)
lung_mask_mode = 'blank'
dataset_type = 'LungCocoDataset'
data_root = 'data/luna16_coco/'  # written by data_prep/luna16_to_coco.py
metainfo = dict(classes=('nodule', ), palette=[(220, 20, 60)])
backend_args = None

# Whole-scan inference (tools/infer_scan.py): a scan whose in-plane pixel size is far
# from this (outside 0.6-1.5x, projects/lung_nodule/apis/inplane.py) has its slices
# resampled in-plane to it before the network; results are mapped back to the scan's
# own grid. 0.7 mm is LUNA16's typical pixel (its scans have 0.46-0.98 mm, all kept).
infer_pixel_spacing_mm = 0.7

# Slices are 8-bit PNGs of HU [-1024, 800] -> [0, 255] (lung-masked in 'blank' mode); cv2 reads the
# grey PNG as 3 equal channels, which is what the COCO-pretrained stem expects.
# Resize keeps 512x512 slices at their native size (scale factor 1, never stretched),
# where mmdet's COCO pipeline resizes to 1333x800. No RandomFlip: mmdet's COCO
# pipeline flips left-right, which swaps the patient's left and right lungs.
# Translation and rotation, as the paper says (it gives no ranges): mmdet's Rotate
# and TranslateX/Y, which move the masks (RandomAffine does not), each on half of
# the slices; up to 15 degrees about the centre; shifts of 0 or 10% of the side
# (mmdet rounds magnitudes to 0.1, so max_mag=0.1 gives 0 or +-51 px). Borders
# fill with 0, the air outside the lungs in our slices (mmdet's default is 128).
# BoxesFromMasks (projects/lung_nodule/datasets) then makes each box the tight
# box of its moved mask (Rotate only rotates the box: loose) and drops nodules
# moved out of the image. Keep Resize at index 2 (tests and tools index it).
geometric_fill = dict(img_border_value=0, mask_border_value=0)
train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=(512, 512), keep_ratio=True),
    dict(type='Rotate', prob=0.5, min_mag=0.0, max_mag=15.0, **geometric_fill),
    dict(type='TranslateX', prob=0.5, min_mag=0.0, max_mag=0.1, **geometric_fill),
    dict(type='TranslateY', prob=0.5, min_mag=0.0, max_mag=0.1, **geometric_fill),
    dict(type='BoxesFromMasks', min_area=1),
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

# 2 slices per step, as Matterport's IMAGES_PER_GPU; slices without nodules are
# left out of training (they stay in val/test, where they count as negatives).
train_dataloader = dict(
    batch_size=2,
    num_workers=2,
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/instances_train.json',
        lung_mask_mode=lung_mask_mode,
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
        lung_mask_mode=lung_mask_mode,
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
        lung_mask_mode=lung_mask_mode,
        data_prefix=dict(img='images/test/'),
        test_mode=True,
        pipeline=test_pipeline))

# COCO box and mask AP (`tools/test.py --eval segm` narrows `metric`), beside the
# paper's likely metric, Matterport's per-image mask AP at IoU 0.5 averaged over
# images (slices without a nodule left out), and the Dice of each nodule with its
# best-matching predicted mask. Both drop predictions under Matterport's
# DETECTION_MIN_CONFIDENCE (0.7) and read the ground truth from the test pipeline.
# Entry 0 is the CocoMetric: `--cfg-options test_evaluator.0.ann_file=...`.
nodule_metrics = [
    dict(type='MatterportMaskAP', iou_thr=0.5, score_thr=0.7),
    dict(type='NoduleDiceMetric', score_thr=0.7),
]
val_evaluator = [
    dict(
        type='CocoMetric',
        ann_file=data_root + 'annotations/instances_val.json',
        metric=['bbox', 'segm'],
        backend_args=backend_args),
    *nodule_metrics,
]
test_evaluator = [
    dict(
        type='CocoMetric',
        ann_file=data_root + 'annotations/instances_test.json',
        metric=['bbox', 'segm'],
        backend_args=backend_args),
    *nodule_metrics,
]
