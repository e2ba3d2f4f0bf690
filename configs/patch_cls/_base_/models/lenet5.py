# model settings: LeNet-5 (LeCun et al. 1998): 3 tanh convolutions, 1-channel input.
_base_ = './patch_classifier.py'

model = dict(
    backbone=dict(type='LeNet5', num_classes=-1),
    head=dict(in_channels=120))
