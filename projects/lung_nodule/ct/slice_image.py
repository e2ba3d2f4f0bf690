"""The slice image the network sees, made by one function for the COCO export, the
patches and whole-scan inference alike, so that training and inference see the same
pixels; and how the lung mask is used (the *lung-mask mode*).

Modes (:data:`LUNG_MASK_MODES`):

* ``'blank'``: pixels outside the lung mask are set to 0, as in the paper. The network
  never sees the chest wall or the mediastinum, but a lesion that the mask misses is
  lost in the image itself.
* ``'filter'``: the windowed slice is kept whole; the lung mask only decides which
  slices are worth running and which detections are kept (at least
  :data:`MIN_IN_LUNG_FRACTION` of a detection's mask in the lung mask, see
  :func:`mask_in_lung_fraction`).

Because ``blank`` is baked into the exported PNGs, the mode travels with the data and
the model: the COCO export writes it into ``info['lung_mask_mode']``, the lung configs
carry ``lung_mask_mode``, and the lung dataset refuses an annotation file of the other
mode.
"""
from __future__ import annotations

import numpy as np

from .io import CTScan
from .lung import LungMask
from .lung_mask_mode import (DEFAULT_LUNG_MASK_MODE, LUNG_MASK_MODES, MIN_IN_LUNG_FRACTION,
                             check_lung_mask_mode)
from .window import hu_to_uint8

__all__ = ['DEFAULT_LUNG_MASK_MODE', 'LUNG_MASK_MODES', 'MIN_IN_LUNG_FRACTION',
           'check_lung_mask_mode', 'mask_in_lung_fraction', 'slice_to_uint8']

def slice_to_uint8(scan: CTScan, z_index: int, lungs: LungMask | None,
                   mode: str = DEFAULT_LUNG_MASK_MODE) -> np.ndarray:
    """Slice ``z_index`` windowed to [-1024, 800] HU as uint8, masked per ``mode``.

    Args:
        scan: The scan (its data is never modified).
        z_index: Slice index in the array's z order.
        lungs: The scan's lung mask; ``None`` keeps every pixel whatever the mode.
        mode: ``'blank'`` sets pixels outside the lungs to 0; ``'filter'`` keeps the
            whole slice (the lung mask is not even computed for it).

    Returns:
        A new uint8 array ``(y, x)``.
    """
    check_lung_mask_mode(mode)
    image = hu_to_uint8(scan.array[z_index])
    if lungs is not None and mode == 'blank':
        image[~lungs.slice(z_index)] = 0
    return image


def mask_in_lung_fraction(mask: np.ndarray, lung: np.ndarray) -> float:
    """Fraction of a detection's pixels that lie in the lung mask (0.0 for an empty mask).

    Args:
        mask: bool ``(y, x)``, the detection.
        lung: bool ``(y, x)``, the lung mask of the same slice.
    """
    if mask.shape != lung.shape:
        raise ValueError(f'mask {mask.shape} and lung mask {lung.shape} differ in shape')
    total = int(np.count_nonzero(mask))
    if total == 0:
        return 0.0
    return float(np.count_nonzero(mask & lung)) / total
