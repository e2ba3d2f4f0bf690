# The staged Mask R-CNN R101-FPN whose backbone is the ResNet-101 patch
# classifier of the backbone comparison (paper section IV.A.1: ResNet-101
# ranked first in Table I, so it became the Mask R-CNN backbone).
#
# Runner.train() applies init_cfg first and load_from after it: a backbone
# init_cfg=Pretrained(patch classifier) would be overwritten by the COCO
# load_from of the staged config. So the patch backbone comes in through
# load_from, as one merged checkpoint: COCO Mask R-CNN weights (FPN, RPN, RoI
# heads) with every backbone.* tensor replaced by the classifier's.
#
#   # 1. train the ResNet-101 patch classifier (or run tools/compare_backbones.py)
#   python tools/train.py configs/patch_cls/resnet101_1xb64_lung-patch.py \
#       --work-dir work_dirs/compare_backbones/resnet101_1xb64_lung-patch
#   # 2. merge its backbone into the COCO checkpoint
#   python tools/model_converters/merge_patch_backbone.py \
#       https://download.openmmlab.com/mmdetection/v2.0/mask_rcnn/mask_rcnn_r101_fpn_1x_coco/mask_rcnn_r101_fpn_1x_coco_20200204-1efe0ed5.pth \
#       work_dirs/compare_backbones/resnet101_1xb64_lung-patch \
#       work_dirs/patch_backbone/mask_rcnn_r101_fpn_coco_patch-r101.pth
#   # 3. train this config
#   python tools/train.py configs/lung/mask_rcnn_r101_fpn_staged_patch-backbone.py
#
# Without COCO weights (FPN and heads from scratch), a config inheriting this
# one sets load_from = None and
#   model = dict(backbone=dict(init_cfg=dict(
#       type='Pretrained', prefix='backbone.', checkpoint=<classifier .pth>)))
#
# The patch classifier was trained on 3-channel grey patches with the same
# ImageNet mean/std and BGR->RGB conversion as mmdet's data preprocessor, and
# its ResNet-101 (mmpretrain) has mmdet's ResNet-101 module names and shapes.
_base_ = './mask_rcnn_r101_fpn_staged.py'

load_from = 'work_dirs/patch_backbone/mask_rcnn_r101_fpn_coco_patch-r101.pth'

# nothing to initialise: load_from brings every backbone tensor
model = dict(backbone=dict(init_cfg=None))
