# The paper's method (2): the COCO-pretrained Mask R-CNN R101-FPN fine-tuned in
# stages (section IV.B): "train network heads first and then fine tune ResNet stage
# 3 and up; lastly, fine tune all layers". SGD, lr 1e-4, momentum 0.9.
#
# Schedule assumptions (the paper gives no stage lengths or rates): Matterport's
# Mask_RCNN, which the paper used, trains heads and 3+/4+ at the base learning
# rate and all layers at a tenth of it, for 40 / 80 / 40 epochs in its COCO sample
# (1:2:1). We keep that ratio over the 24 epochs of _base_/schedules/sgd-1e-4_24e.py:
#   heads  epochs  0-5   FPN, RPN, box and mask heads; the whole ResNet frozen   lr 1e-4
#   3+     epochs  6-17  + ResNet layer2..layer4 (Matterport res3..res5);
#                        stem and layer1 (res2) frozen                           lr 1e-4
#   all    epochs 18-23  every layer                                             lr 1e-5
# BN statistics stay frozen throughout (norm_eval=True), as Matterport's TRAIN_BN=False.
# Shorten a run with, e.g. (epochs 0 | 1 | 2):
#   --cfg-options train_cfg.max_epochs=3 custom_hooks.0.stages.1.begin=1 \
#                 custom_hooks.0.stages.2.begin=2
_base_ = './_base_/schedules/sgd-1e-4_24e.py'

# Built with every ResNet stage trainable: the optimizer and DDP register only the
# parameters that require grad when they are built, so StagedUnfreezeHook does all
# the freezing from the first iteration on (it refuses to start otherwise).
model = dict(backbone=dict(frozen_stages=-1))

# Frozen parameters get no gradient: DDP must not wait for them.
find_unused_parameters = True

# Stages by parameter name (re.match from the start of the name), where each begins
# (epoch) and its learning-rate multiplier (on top of param_scheduler).
custom_hooks = [
    dict(
        type='StagedUnfreezeHook',
        by_epoch=True,
        stages=[
            dict(
                name='heads',
                begin=0,
                trainable=[r'neck\.', r'rpn_head\.', r'roi_head\.'],
                lr_mult=1.0),
            dict(
                name='3+',
                begin=6,
                trainable=[
                    r'backbone\.layer[234]\.', r'neck\.', r'rpn_head\.', r'roi_head\.'
                ],
                lr_mult=1.0),
            dict(name='all', begin=18, trainable=[r'.'], lr_mult=0.1),
        ]),
]
