# Mask R-CNN R101-FPN on LUNA16 slices: model and data every lung config shares.
#
# mmdet's COCO Mask R-CNN R101-FPN (via the dataset piece) with one class and the
# COCO-trained weights as the starting point (the paper fine-tunes a COCO model).
_base_ = './datasets/luna16_coco_instance.py'

custom_imports = dict(imports=['projects.lung_nodule'], allow_failed_imports=False)

# COCO-pretrained: load_from covers the backbone, so its ImageNet init_cfg is off
# (Runner.train() would otherwise try to download torchvision://resnet101 first).
# The 81-class fc_cls / conv_logits do not fit one class: they start from scratch
# (mmengine loads non-strictly and logs the size mismatch).
load_from = 'https://download.openmmlab.com/mmdetection/v2.0/mask_rcnn/mask_rcnn_r101_fpn_1x_coco/mask_rcnn_r101_fpn_1x_coco_20200204-1efe0ed5.pth'  # noqa: E501
model = dict(
    backbone=dict(init_cfg=None),
    roi_head=dict(
        bbox_head=dict(num_classes=1),
        mask_head=dict(num_classes=1)))
