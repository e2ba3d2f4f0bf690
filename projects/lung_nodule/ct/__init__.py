"""CT knowledge, in one place: reading scans, world <-> voxel, HU window, lung mask,
nodule spheres, and the LUNA16 layout.

Used by ``data_prep/`` (the LUNA16 converters), by training-time code and by whole-scan
inference, so that they cannot drift apart.

Axis conventions (SimpleITK's, as MONAI's ITK reader): numpy volumes are ``(z, y, x)``;
spacing, origin, indices and world points are ``(x, y, z)``; a slice pixel
``(row, col)`` is ``(y index, x index)``; ``direction`` is ``GetDirection()``'s 9
numbers (row-major 3x3).
"""
from .geometry import ScanGeometry
from .io import CTScan, ScanReadError, read_scan, read_scan_geometry
from .luna16 import (ANNOTATION_COLUMNS, NoduleAnnotation, RowProblem, find_scans,
                     read_annotations, seriesuid_problem)
from .lung import LungMask, LungMaskParams, segment_lungs
from .nodules import LocatedNodule, locate_nodules, nodule_masks_on_slice, select_nodule_slices
from .slice_image import slice_to_uint8
from .sphere import cross_section_radius_mm, nearest_slices, sphere_cross_section
from .window import HU_MAX, HU_MIN, hu_to_uint8, window_hu

__all__ = [
    'ANNOTATION_COLUMNS', 'CTScan', 'HU_MAX', 'HU_MIN', 'LocatedNodule', 'LungMask',
    'LungMaskParams', 'NoduleAnnotation', 'RowProblem', 'ScanGeometry', 'ScanReadError',
    'cross_section_radius_mm', 'find_scans', 'hu_to_uint8', 'locate_nodules',
    'nearest_slices', 'nodule_masks_on_slice', 'read_annotations', 'read_scan',
    'read_scan_geometry', 'segment_lungs', 'select_nodule_slices', 'seriesuid_problem',
    'slice_to_uint8', 'sphere_cross_section', 'window_hu',
]
