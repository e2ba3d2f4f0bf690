# ResNet-20 on 50x50 lung patches (Table I, row 5).
_base_ = [
    '_base_/models/resnet20.py',
    '_base_/datasets/lung_patch_bs64.py',
    '_base_/schedules/lung_patch_bs64.py',
    '_base_/default_runtime.py',
]

# Input size: the native 50x50 patch, read as 3 identical grey channels.
# The CIFAR stem keeps full resolution and two stride-2 stages give a 13x13
# map (50 -> 50 -> 25 -> 13) before the global average pool.
