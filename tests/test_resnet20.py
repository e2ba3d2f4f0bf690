"""ResNet20: He et al.'s CIFAR ResNet-20 as an mmpretrain backbone."""
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmpretrain.models.backbones import ResNet_CIFAR
from mmpretrain.models.backbones.resnet import BasicBlock
from mmpretrain.registry import MODELS

import projects.lung_nodule.registry  # noqa: F401  (registers our modules, checkpoint loader)
from projects.lung_nodule.models import ResNet20

# 3x3 stem 3->16 + BN, 3 stages x 3 basic blocks (16, 32, 64 channels), 1x1
# projection shortcuts at the two downsampling blocks; counted by hand.
BACKBONE_PARAMS = 271_824
HEAD_PARAMS = 64 * 2 + 2  # linear 64 -> 2


def _num_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_registered_in_mmpretrain_and_a_resnet_cifar_subclass():
    assert MODELS.get('ResNet20') is ResNet20
    assert issubclass(ResNet20, ResNet_CIFAR)
    # only the architecture table and defaults change, not the forward pass
    assert ResNet20.forward is ResNet_CIFAR.forward
    assert ResNet20._make_stem_layer is ResNet_CIFAR._make_stem_layer


def test_layout_is_3_stages_of_3_basic_blocks_16_32_64():
    model = ResNet20()
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1)
    assert not hasattr(model, 'maxpool')
    assert model.res_layers == ['layer1', 'layer2', 'layer3']
    for name, channels, stride in (('layer1', 16, 1), ('layer2', 32, 2),
                                   ('layer3', 64, 2)):
        layer = getattr(model, name)
        assert len(layer) == 3
        assert all(isinstance(block, BasicBlock) for block in layer)
        assert all(block.out_channels == channels for block in layer)
        assert layer[0].conv1.stride == (stride, stride)
    # 1 stem conv + 3 x 3 x 2 block convs + 1 classifier = 20 weighted layers
    convs = [m for n, m in model.named_modules()
             if isinstance(m, torch.nn.Conv2d) and 'downsample' not in n]
    assert len(convs) + 1 == 20


def test_parameter_count_is_the_documented_0_27_m(repo_root):
    assert _num_params(ResNet20()) == BACKBONE_PARAMS
    cfg = Config.fromfile(
        str(repo_root / 'configs/patch_cls/resnet20_1xb64_lung-patch.py'))
    # earlier tests may leave mmdet as the default scope: build in mmpretrain's
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        classifier = MODELS.build(cfg.model)
    total = _num_params(classifier)
    assert total == BACKBONE_PARAMS + HEAD_PARAMS
    assert round(total / 1e6, 2) == 0.27


def test_forward_shape_on_a_50px_patch():
    model = ResNet20()
    model.eval()  # mmpretrain's ResNet.train() returns None: do not chain
    with torch.no_grad():
        outs = model(torch.rand(2, 3, 50, 50))
    assert isinstance(outs, tuple) and len(outs) == 1
    assert outs[0].shape == (2, 64, 13, 13)
    model = ResNet20(out_indices=(0, 1, 2))
    model.eval()
    with torch.no_grad():
        shapes = [tuple(o.shape) for o in model(torch.rand(1, 3, 50, 50))]
    assert shapes == [(1, 16, 50, 50), (1, 32, 25, 25), (1, 64, 13, 13)]


def test_other_depths_and_stage_counts_are_refused():
    with pytest.raises(KeyError, match='invalid depth 18'):
        ResNet20(depth=18)
    with pytest.raises(ValueError, match='num_stages=4'):
        ResNet20(num_stages=4, strides=(1, 2, 2, 2), dilations=(1, 1, 1, 1))
