# model settings: ResNet-50 (He et al. 2016), the ImageNet layout (7x7 stride-2 stem
# + max-pool, 4 stages of bottlenecks).
_base_ = './patch_classifier.py'

model = dict(
    backbone=dict(type='ResNet', depth=50, out_indices=(3, ), style='pytorch'),
    head=dict(in_channels=2048))
