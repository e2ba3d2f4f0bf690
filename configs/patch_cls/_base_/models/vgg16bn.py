# model settings: VGG-16 (Simonyan and Zisserman 2015) with BatchNorm after each of its
# 13 convolutions (mmpretrain's vgg16bn), a deviation from the plain VGG-16:
# every network here trains from scratch with one shared schedule, and BN
# lets the 13-layer plain stack do so. The 4096-wide fully connected layers
# are replaced by the pooled linear head.
_base_ = './patch_classifier.py'

model = dict(
    backbone=dict(
        type='VGG', depth=16, norm_cfg=dict(type='BN'), num_classes=-1),
    head=dict(in_channels=512))
