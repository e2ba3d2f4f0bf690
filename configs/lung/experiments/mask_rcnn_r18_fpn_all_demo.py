# Arm "all layers" of tools/experiments/paper_claims.py (issue 14, the paper's first
# claim: 0.7334 mAP fine-tuning all layers at once vs 0.7965 staged).
#
# Everything is the demo's staged config (same patch-pretrained backbone, data,
# steps, AdamW rate, warm-up and x0.1 step at 85%) except the staging itself: every
# layer trains from the first step, where the staged schedule trains the heads,
# then ResNet layer2-4 as well, then all layers (each at the same rate).
_base_ = '../demo/mask_rcnn_r18_fpn_staged_demo.py'

# One stage: the hook still checks the patterns and logs the stage, and the
# optimizer sees the same parameter groups as in the staged arm.
custom_hooks = [
    dict(
        type='StagedUnfreezeHook',
        by_epoch=False,
        stages=[dict(name='all', begin=0, trainable=[r'.'], lr_mult=1.0)]),
]
