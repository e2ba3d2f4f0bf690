"""The slice image the network sees, made by one function for the COCO export, the
patches and whole-scan inference alike, so that training and inference see the same
pixels."""
from __future__ import annotations

import numpy as np

from .io import CTScan
from .lung import LungMask
from .window import hu_to_uint8

__all__ = ['slice_to_uint8']


def slice_to_uint8(scan: CTScan, z_index: int, lungs: LungMask | None) -> np.ndarray:
    """Slice ``z_index`` windowed to [-1024, 800] HU as uint8; outside the lung set to 0.

    Only this slice is converted (a new array); the scan's data is never modified.
    """
    image = hu_to_uint8(scan.array[z_index])
    if lungs is not None:
        image[~lungs.slice(z_index)] = 0
    return image
