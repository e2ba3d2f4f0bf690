"""mmpretrain 1.2.0 beside transformers >= 5.

mmpretrain's multimodal models (BLIP and kin) import names that transformers 5 moved;
their fallback sets ``PreTrainedModel = None`` and the next class statement raises
``TypeError: NoneType takes no arguments``, so ``import mmpretrain.models`` fails, and
with it our ResNet-20 and every patch-classifier config. The project uses none of those
models. Where transformers >= 5 is installed, mmpretrain is told that multimodal support
is unavailable before its models are imported: the flag it computes itself
(``mmpretrain.utils.dependency.WITH_MULTIMODAL``) from the installed transformers.
Seen on the GPU image of 2026-11 (transformers 5.17, torch 2.11).
"""
from __future__ import annotations

import sys
from importlib import metadata

__all__ = ['skip_mmpretrain_multimodal_on_transformers_5']


def skip_mmpretrain_multimodal_on_transformers_5() -> bool:
    """Turn mmpretrain's multimodal imports off where transformers >= 5 would break them.

    Cheap where transformers is absent or older (package metadata only). Returns whether
    the flag was turned off.
    """
    try:
        major = int(metadata.version('transformers').split('.')[0])
        metadata.version('mmpretrain')
    except (metadata.PackageNotFoundError, ValueError):
        return False
    if major < 5 or 'mmpretrain.models' in sys.modules:
        return False
    from mmpretrain.utils import dependency
    dependency.WITH_MULTIMODAL = False
    return True
