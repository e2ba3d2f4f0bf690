"""HU windowing: clip to ``[hu_min, hu_max]`` and scale to ``[0, 1]``.

The paper clips to ``[-1024, 800]`` HU ("the meaningful values for nodule judgement")
and scales to ``[0, 1]``. The scaling subtracts ``hu_min`` exactly once (a bug seen in
LUNA16 scripts subtracts it again after clipping) and works on whatever array it is
given: callers pass single slices or patches, never a full volume, so no full-volume
float copy is made.
"""
from __future__ import annotations

import numpy as np

__all__ = ['HU_MAX', 'HU_MIN', 'hu_to_uint8', 'window_hu']

HU_MIN: float = -1024.0
HU_MAX: float = 800.0


def _check(hu_min: float, hu_max: float) -> None:
    if not hu_max > hu_min:
        raise ValueError(f'HU window must have hu_max > hu_min, got [{hu_min}, {hu_max}]')


def window_hu(hu: np.ndarray, hu_min: float = HU_MIN, hu_max: float = HU_MAX) -> np.ndarray:
    """HU -> float32 in ``[0, 1]``: ``(clip(hu, hu_min, hu_max) - hu_min) / (hu_max - hu_min)``.

    Args:
        hu: Any-shape array in HU (int16 or float); not modified.
        hu_min: Lower window bound, mapped to 0.
        hu_max: Upper window bound, mapped to 1.

    Returns:
        A new float32 array of the same shape.
    """
    _check(hu_min, hu_max)
    out = np.clip(hu, hu_min, hu_max).astype(np.float32, copy=False)
    out -= np.float32(hu_min)
    out *= np.float32(1.0 / (hu_max - hu_min))
    return out


def hu_to_uint8(hu: np.ndarray, hu_min: float = HU_MIN, hu_max: float = HU_MAX) -> np.ndarray:
    """HU -> uint8 ``round(255 * window_hu(hu))``, the 8-bit PNG encoding of the window.

    Returns:
        A new uint8 array of the same shape (0 = ``hu_min`` or below, 255 = ``hu_max`` or
        above).
    """
    scaled = window_hu(hu, hu_min, hu_max)
    scaled *= np.float32(255.0)
    scaled += np.float32(0.5)
    return scaled.astype(np.uint8)
