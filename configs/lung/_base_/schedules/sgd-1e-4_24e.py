# The paper's optimiser (section IV.B): SGD, learning rate 1e-4, momentum 0.9.
# It gives no schedule length; both methods (all layers, staged) get the same
# 24 epochs (mmdet's 2x; ~1067 steps per epoch on 2134 slices at 2 per step, close
# to Matterport's 1000-step epochs of 2 images), so that they can be compared.
# No step decay (the paper and Matterport use a constant rate); mmdet's linear
# warm-up stays, as the new one-class heads start from random weights.
# Chained on the model base for the reason given in datasets/luna16_coco_instance.py.
_base_ = '../mask-rcnn_r101_fpn_luna16.py'

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=1e-4, momentum=0.9, weight_decay=1e-4))

param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500),
]

train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=24, val_interval=1)

default_hooks = dict(checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=3))

# one device, 2 slices per step; `tools/train.py --auto-scale-lr` scales lr from it
auto_scale_lr = dict(enable=False, base_batch_size=2)
