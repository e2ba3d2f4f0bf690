"""Nodule spheres on slices: which slices a nodule cuts and its cross-section masks.

LUNA16 gives a nodule as a world centre and a diameter, i.e. a sphere. On slice ``k``
the sphere's cross-section is a disc of radius ``sqrt(r**2 - dz**2)`` (mm) with
``dz = (k - cz) * sz``, where ``r`` is the **radius** (half the annotated diameter; a
bug seen in LUNA16 scripts draws the diameter as the radius). The disc becomes an
ellipse in pixels when ``sx != sy``; a pixel belongs to it when its *centre* is inside.

Distances in mm between two voxel indices do not depend on the direction matrix (it is
orthonormal), so the masks are computed in index space from the continuous centre index
that :class:`~.geometry.ScanGeometry` gives for the world centre.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

__all__ = ['cross_section_radius_mm', 'nearest_slices', 'sphere_cross_section']


def cross_section_radius_mm(radius_mm: float, centre_z: float, z_index: int,
                            spacing_z: float) -> float:
    """Radius (mm) of the sphere's cross-section on slice ``z_index`` (0 when missed).

    Args:
        radius_mm: Sphere radius (half the diameter).
        centre_z: Continuous z index of the centre.
        z_index: Slice index.
        spacing_z: Slice spacing in mm.
    """
    dz = (z_index - centre_z) * spacing_z
    left = radius_mm * radius_mm - dz * dz
    return math.sqrt(left) if left > 0 else 0.0


def nearest_slices(centre_z: float, num_slices: int, count: int = 3) -> list[int]:
    """The ``count`` slice indices nearest to a continuous z, inside ``[0, num_slices)``.

    For a centre well inside the volume this is ``round(cz) - 1 .. round(cz) + 1``; near
    the first/last slice the window shifts inwards so that it still holds ``count``
    slices (fewer only when the volume is thinner than ``count``).
    """
    if num_slices < 1 or count < 1:
        raise ValueError(f'need num_slices >= 1 and count >= 1, got {num_slices}, {count}')
    count = min(count, num_slices)
    centre = int(math.floor(centre_z + 0.5))
    start = centre - (count - 1) // 2
    # Even counts: take the extra slice on the side nearer to the centre.
    if count % 2 == 0 and centre_z < centre:
        start -= 1
    start = min(max(start, 0), num_slices - count)
    return list(range(start, start + count))


def sphere_cross_section(shape_yx: Sequence[int], centre_index_xyz: Sequence[float],
                         radius_mm: float, z_index: int,
                         spacing_xyz: Sequence[float]) -> np.ndarray:
    """Boolean ``(y, x)`` mask of the sphere's cross-section on slice ``z_index``.

    Args:
        shape_yx: Slice shape ``(rows, cols)``.
        centre_index_xyz: Continuous voxel index of the sphere centre, ``(x, y, z)``.
        radius_mm: Sphere radius in mm (half the annotated diameter).
        z_index: The slice.
        spacing_xyz: Voxel spacing ``(sx, sy, sz)`` in mm.

    Returns:
        The mask (all False when the sphere misses the slice). Only the bounding box of
        the disc is evaluated, so this costs little on 512x512 slices.
    """
    rows, cols = int(shape_yx[0]), int(shape_yx[1])
    mask = np.zeros((rows, cols), dtype=bool)
    cx, cy, cz = (float(v) for v in centre_index_xyz)
    sx, sy, sz = (float(v) for v in spacing_xyz)
    r_mm = cross_section_radius_mm(radius_mm, cz, z_index, sz)
    if r_mm <= 0:
        return mask
    ry, rx = r_mm / sy, r_mm / sx  # semi-axes in pixels
    y0, y1 = max(int(math.ceil(cy - ry)), 0), min(int(math.floor(cy + ry)), rows - 1)
    x0, x1 = max(int(math.ceil(cx - rx)), 0), min(int(math.floor(cx + rx)), cols - 1)
    if y0 > y1 or x0 > x1:
        return mask
    dy = (np.arange(y0, y1 + 1, dtype=np.float64) - cy) * sy
    dx = (np.arange(x0, x1 + 1, dtype=np.float64) - cx) * sx
    mask[y0:y1 + 1, x0:x1 + 1] = dy[:, None] ** 2 + dx[None, :] ** 2 <= r_mm * r_mm
    return mask
