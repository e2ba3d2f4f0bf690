"""Three orthogonal views of a candidate: the input of the false-positive reduction stage.

A vessel that crosses the axial plane is a round spot on its slice, the same as a
nodule; across slices it goes on, a nodule ends. The detector sees one slice (the
paper's method); the second stage (``tools/rescore_candidates.py``) sees the axial,
coronal and sagittal planes through each candidate, stacked as the three channels of
one small image: a nodule is a disc in all three, a vessel a line in at least one
(the multi-view idea of Setio et al., IEEE TMI 2016, the LUNA16 organisers' own
false-positive reduction).

The planes are sampled in *world* axes (x to the patient's left, y to the back, z to
the head, as LUNA16's mm), at a fixed mm per pixel, so that a view looks alike
whatever the scan's spacing or direction matrix (a flipped or resampled scan gives the
same picture). Channel 0 is axial (rows y, columns x), 1 coronal (rows -z, columns x),
2 sagittal (rows -z, columns y); the image is windowed like the slices
(:func:`.window.hu_to_uint8`), points outside the volume are air.

The export of training images (``data_prep/candidates_to_views.py``) and the rescoring
use this one function: both see the same pixels.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy.ndimage import map_coordinates

from .io import CTScan
from .window import HU_MIN, hu_to_uint8

__all__ = ['VIEW_MM_PER_PIXEL', 'VIEW_SIZE', 'orthogonal_views']

#: Side of a view in pixels and its sampling step: 32 x 0.6 mm = 19 mm, a nodule of up to
#: ~15 mm whole with its surroundings (larger ones fill the view, which they are easy to
#: tell by), a 3 mm nodule still 5 pixels wide.
VIEW_SIZE = 32
VIEW_MM_PER_PIXEL = 0.6


def _plane_offsets(size: int, mm_per_pixel: float) -> np.ndarray:
    """World offsets (mm) of the pixels of the three planes: ``(3, size, size, 3)``."""
    step = (np.arange(size) - (size - 1) / 2.0) * mm_per_pixel
    rows, cols = np.meshgrid(step, step, indexing='ij')
    zero = np.zeros_like(rows)
    axial = np.stack([cols, rows, zero], axis=-1)        # rows y, columns x
    coronal = np.stack([cols, zero, -rows], axis=-1)     # rows -z (head up), columns x
    sagittal = np.stack([zero, cols, -rows], axis=-1)    # rows -z (head up), columns y
    return np.stack([axial, coronal, sagittal])


def orthogonal_views(scan: CTScan, centres_xyz: Sequence[Sequence[float]] | np.ndarray,
                     size: int = VIEW_SIZE,
                     mm_per_pixel: float = VIEW_MM_PER_PIXEL) -> np.ndarray:
    """Axial, coronal and sagittal views through each centre, as 3-channel uint8 images.

    Args:
        scan: The scan (HU); its geometry maps world mm to voxels.
        centres_xyz: World points (mm), shape ``(n, 3)``.
        size: Side of each view in pixels.
        mm_per_pixel: Sampling step in mm (trilinear interpolation).

    Returns:
        uint8 ``(n, size, size, 3)``, channels axial, coronal, sagittal.
    """
    if size < 1 or not mm_per_pixel > 0:
        raise ValueError(f'need size >= 1 and mm_per_pixel > 0, got {size}, {mm_per_pixel}')
    centres = np.asarray(centres_xyz, dtype=np.float64).reshape(-1, 3)
    if not np.all(np.isfinite(centres)):
        raise ValueError(f'{scan.path}: a view centre is not finite: {centres.tolist()}')
    geometry = scan.geometry
    to_world = geometry.direction_matrix @ np.diag(geometry.spacing_xyz)
    to_index = np.linalg.inv(to_world)
    origin = np.asarray(geometry.origin_xyz, dtype=np.float64)
    offsets = _plane_offsets(size, mm_per_pixel).reshape(-1, 3)
    out = np.empty((len(centres), size, size, 3), dtype=np.uint8)
    for i, centre in enumerate(centres):
        index_xyz = (offsets + centre - origin) @ to_index.T
        hu = map_coordinates(scan.array, index_xyz[:, ::-1].T, order=1, mode='constant',
                             cval=HU_MIN, output=np.float32)
        out[i] = np.moveaxis(hu_to_uint8(hu.reshape(3, size, size)), 0, -1)
    return out
