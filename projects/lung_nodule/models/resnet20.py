"""ResNet-20, the CIFAR ResNet of He et al., as an mmpretrain backbone."""
from typing import Sequence

from mmpretrain.models.backbones.resnet import BasicBlock
from mmpretrain.models.backbones.resnet_cifar import ResNet_CIFAR
from mmpretrain.registry import MODELS

__all__ = ['ResNet20']


@MODELS.register_module()
class ResNet20(ResNet_CIFAR):
    """ResNet-20 of `Deep Residual Learning for Image Recognition
    <https://arxiv.org/abs/1512.03385>`_ (section 4.2, the CIFAR-10 networks).

    mmpretrain's :class:`ResNet_CIFAR` keeps the ImageNet layout (4 stages of
    64/128/256/512 channels, depths 18..152) and only swaps the stem for a
    3x3 stride-1 convolution without max-pooling. He et al.'s CIFAR networks
    have ``6n + 2`` layers: that stem, then 3 stages of ``n`` basic blocks with
    16/32/64 channels (strides 1/2/2), global average pooling and the
    classifier. ResNet-20 is ``n = 3``. Only the architecture table and the
    defaults change here; stem, stages and ``forward`` are ``ResNet_CIFAR``'s.

    One documented difference: downsampling shortcuts are mmpretrain's 1x1
    convolution + BN projections (He et al.'s option B) instead of the
    parameter-free zero-padding shortcut (option A) used for the paper's
    CIFAR table. It adds 2,752 parameters: the backbone has 271,824
    parameters, 271,954 with a 2-class linear head (the paper: 0.27 M).

    Args:
        depth (int): Network depth; only 20 is defined. Defaults to 20.
        in_channels (int): Number of input image channels. Defaults to 3.
        stem_channels (int): Output channels of the 3x3 stem. Defaults to 16.
        base_channels (int): Channels of the first stage; each later stage
            doubles them. Defaults to 16.
        num_stages (int): Number of stages, at most 3. Defaults to 3.
        strides (Sequence[int]): Stride of the first block of each stage.
            Defaults to ``(1, 2, 2)``.
        dilations (Sequence[int]): Dilation of each stage.
            Defaults to ``(1, 1, 1)``.
        out_indices (Sequence[int]): Stages whose output is returned.
            Defaults to ``(2, )``, the 64-channel last stage.
        **kwargs: Other arguments of :class:`ResNet_CIFAR` (``frozen_stages``,
            ``norm_cfg``, ``norm_eval``, ``zero_init_residual``, ...).

    Example:
        >>> import torch
        >>> from projects.lung_nodule.models import ResNet20
        >>> model = ResNet20()
        >>> model.eval()  # ResNet.train() returns None: do not chain
        >>> [tuple(o.shape) for o in model(torch.rand(1, 3, 50, 50))]
        [(1, 64, 13, 13)]
    """

    arch_settings = {20: (BasicBlock, (3, 3, 3))}

    def __init__(self,
                 depth: int = 20,
                 in_channels: int = 3,
                 stem_channels: int = 16,
                 base_channels: int = 16,
                 num_stages: int = 3,
                 strides: Sequence[int] = (1, 2, 2),
                 dilations: Sequence[int] = (1, 1, 1),
                 out_indices: Sequence[int] = (2, ),
                 **kwargs) -> None:
        if not 1 <= num_stages <= len(self.arch_settings[20][1]):
            raise ValueError(
                f'ResNet20 has 3 stages, got num_stages={num_stages}')
        super().__init__(
            depth,
            in_channels=in_channels,
            stem_channels=stem_channels,
            base_channels=base_channels,
            num_stages=num_stages,
            strides=strides,
            dilations=dilations,
            out_indices=out_indices,
            **kwargs)
