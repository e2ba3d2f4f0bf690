# model settings: ResNet-18 (He et al. 2016), the ImageNet layout (7x7 stride-2 stem
# + max-pool, 4 stages of basic blocks).
_base_ = './patch_classifier.py'

model = dict(
    backbone=dict(type='ResNet', depth=18, out_indices=(3, ), style='pytorch'),
    head=dict(in_channels=512))
