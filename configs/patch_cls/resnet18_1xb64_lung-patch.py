# ResNet-18 on 50x50 lung patches (Table I, row 4).
_base_ = [
    '_base_/models/resnet18.py',
    '_base_/datasets/lung_patch_bs64.py',
    '_base_/schedules/lung_patch_bs64.py',
    '_base_/default_runtime.py',
]

# Input size: the native 50x50 patch, read as 3 identical grey channels.
# The stride-2 stem, the max-pool and three stride-2 stages take it to a 2x2
# map (50 -> 25 -> 13 -> 13 -> 7 -> 4 -> 2) before the global average pool.
