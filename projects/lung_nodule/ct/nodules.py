"""Annotated nodules in one scan: world centre -> voxel index, the slices they cut, and
their sphere cross-sections on a slice (the COCO masks and the patch labels)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from .geometry import ScanGeometry
from .luna16 import NoduleAnnotation
from .sphere import nearest_slices, sphere_cross_section

__all__ = ['LocatedNodule', 'locate_nodules', 'nodule_masks_on_slice', 'select_nodule_slices']


@dataclass(frozen=True)
class LocatedNodule:
    """A nodule and its continuous voxel index ``(x, y, z)`` in one scan."""

    annotation: NoduleAnnotation
    centre_index_xyz: tuple[float, float, float]


def locate_nodules(geometry: ScanGeometry, nodules: Sequence[NoduleAnnotation],
                   scan_path: Path, source: str = 'annotations'
                   ) -> tuple[list[LocatedNodule], list[str]]:
    """World centres -> voxel indices (origin, spacing, direction); outside ones reported.

    ``source`` names the CSV in the reports (``annotations`` or ``annotations_excluded``).
    """
    located: list[LocatedNodule] = []
    problems: list[str] = []
    if not nodules:
        return located, problems
    indices = geometry.world_to_index(np.array([n.coord_xyz for n in nodules]))
    for nodule, index in zip(nodules, indices):
        if geometry.contains_index(index):
            located.append(LocatedNodule(nodule, tuple(float(v) for v in index)))
        else:
            problems.append(
                f'{source} line {nodule.line}: nodule centre {nodule.coord_xyz} mm of '
                f'{nodule.seriesuid} maps to voxel (x, y, z) = '
                f'({index[0]:.1f}, {index[1]:.1f}, {index[2]:.1f}), outside {scan_path.name} '
                f'of size {geometry.size_xyz}; nodule left out')
    return located, problems


def select_nodule_slices(located: Sequence[LocatedNodule], num_slices: int,
                         per_nodule: int) -> list[int]:
    """The union (each slice once, sorted) of the ``per_nodule`` slices nearest each centre."""
    chosen: set[int] = set()
    for nodule in located:
        chosen.update(nearest_slices(nodule.centre_index_xyz[2], num_slices, per_nodule))
    return sorted(chosen)


def nodule_masks_on_slice(located: Sequence[LocatedNodule], z_index: int,
                          geometry: ScanGeometry) -> list[tuple[LocatedNodule, np.ndarray]]:
    """Cross-section masks of every nodule that cuts slice ``z_index`` (non-empty only)."""
    shape_yx = geometry.shape_zyx[1:]
    out = []
    for nodule in located:
        mask = sphere_cross_section(shape_yx, nodule.centre_index_xyz,
                                    nodule.annotation.radius_mm, z_index, geometry.spacing_xyz)
        if mask.any():
            out.append((nodule, mask))
    return out
