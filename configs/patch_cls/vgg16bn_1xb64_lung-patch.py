# VGG-16 (with BN) on 50x50 lung patches (Table I, row 3).
_base_ = [
    '_base_/models/vgg16bn.py',
    '_base_/datasets/lung_patch_bs64.py',
    '_base_/schedules/lung_patch_bs64.py',
    '_base_/default_runtime.py',
]

# Input size: the native 50x50 patch, read as 3 identical grey channels.
# The five 2x2 max-pools take it to a 1x1 map (50 -> 25 -> 12 -> 6 -> 3 -> 1)
# before the global average pool; no resize is needed.
