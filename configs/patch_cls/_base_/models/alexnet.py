# model settings: AlexNet (Krizhevsky et al. 2012): its 5 convolutions, 3-channel input;
# the 4096-wide fully connected layers are replaced by the pooled linear head.
_base_ = './patch_classifier.py'

model = dict(
    backbone=dict(type='AlexNet', num_classes=-1),
    head=dict(in_channels=256))
