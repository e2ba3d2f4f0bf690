# Mask R-CNN R101-FPN on LUNA16 slices: model and data every lung config shares.
#
# mmdet's COCO Mask R-CNN R101-FPN (via the dataset piece) with one class and the
# COCO-trained weights as the starting point (the paper fine-tunes a COCO model).
_base_ = './datasets/luna16_coco_instance.py'

custom_imports = dict(imports=['projects.lung_nodule.registry'], allow_failed_imports=False)

# COCO-pretrained: load_from covers the backbone, so its ImageNet init_cfg is off
# (Runner.train() would otherwise try to download torchvision://resnet101 first).
# The 81-class fc_cls / conv_logits do not fit one class: they start from scratch
# (mmengine loads non-strictly and logs the size mismatch).
load_from = 'https://download.openmmlab.com/mmdetection/v2.0/mask_rcnn/mask_rcnn_r101_fpn_1x_coco/mask_rcnn_r101_fpn_1x_coco_20200204-1efe0ed5.pth'  # noqa: E501
#
# Anchors for nodules (3-30 mm: about 4-43 px at 0.7 mm/px): mmdet's scale 8 makes
# 32-512 px anchors on strides 4-64, and with min_pos_iou=0.3 a box under about
# 17x17 px gets no positive anchor. Nodules are round, so the anchors are square,
# at three sizes per location instead of mmdet's three aspect ratios: scales 1.5, 2
# and 3 (6, 8 and 12 px on stride 4 up to 96-192 px on stride 64; still 3 anchors
# per location, so the COCO RPN head's tensors still load). min_pos_iou 0.2 lets the
# 3-5 px cross-sections match their best anchor (match_low_quality). Test boxes of
# the demo's data at native size (3-30 px): 95.5% get a positive anchor with scale 2
# at mmdet's ratios, 100% with these; its detector (650 steps, training seeds
# 0 / 1 / 2) test segm AP50 0.494 / 0.531 / 0.502 -> 0.535 / 0.572 / 0.517
# (benchmarks/RESULTS.md, "Square anchors").
# Check with: python tools/analysis/anchor_coverage.py CONFIG --min-coverage 0.99
model = dict(
    backbone=dict(init_cfg=None),
    rpn_head=dict(anchor_generator=dict(scales=[1.5, 2, 3], ratios=[1.0])),
    train_cfg=dict(rpn=dict(assigner=dict(min_pos_iou=0.2))),
    # RoIAlign of mmcv's results on every CPU core (mmcv's CPU kernel runs on one
    # thread and was about half of a CPU training step): torchvision's kernel on
    # channel blocks in parallel, equal to the last bit (tests/test_roi_align.py;
    # benchmarks/bench_train.py). On CUDA it is torchvision's kernel. The extractor
    # is mmdet's SingleRoIExtractor that can build a registered layer.
    roi_head=dict(
        bbox_roi_extractor=dict(
            type='RegistryRoIExtractor', roi_layer=dict(type='ParallelRoIAlign')),
        mask_roi_extractor=dict(
            type='RegistryRoIExtractor', roi_layer=dict(type='ParallelRoIAlign')),
        bbox_head=dict(num_classes=1),
        mask_head=dict(num_classes=1)))

# One colour per nodule in `tools/test.py --show-dir` and tools/browse_dataset.py
# (the paper's Fig. 4), where mmdet's DetLocalVisualizer colours by class.
visualizer = dict(type='NoduleVisualizer')
