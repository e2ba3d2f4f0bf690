"""Backbones; importing this subpackage registers ``ResNet20`` (He et al.'s CIFAR
ResNet-20, a ``ResNet_CIFAR`` subclass) in mmpretrain's ``MODELS``."""
from .resnet20 import ResNet20

__all__ = ['ResNet20']
