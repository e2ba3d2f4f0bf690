# model settings: ResNet-20, He et al.'s CIFAR ResNet (3x3 stride-1 stem, 3 stages of
# 3 basic blocks, 16/32/64 channels): our registered ResNet20 backbone.
_base_ = './patch_classifier.py'

model = dict(
    backbone=dict(type='ResNet20', depth=20),
    head=dict(in_channels=64))
