# Arm "random backbone" of tools/experiments/paper_claims.py (issue 14, the paper's
# second claim: a backbone chosen and pretrained by 50x50 nodule-patch
# classification helps Mask R-CNN).
#
# Everything is the demo's staged config (same data, steps, schedule: heads ->
# layer2-4 -> all) except the backbone's start: mmdet's own random initialisation
# (Kaiming convolutions, BN weight 1 / bias 0 with frozen statistics 0 / 1)
# instead of the patch classifier's weights.
_base_ = '../demo/mask_rcnn_r18_fpn_staged_demo.py'

model = dict(backbone=dict(init_cfg=None))
