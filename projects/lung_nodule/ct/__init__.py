"""CT knowledge, in one place: reading scans, world <-> voxel, HU window, lung mask,
nodule spheres, the LUNA16 layout, 3D linking of slice detections and nodule measurement.

Used by ``data_prep/`` (the LUNA16 converters), by training-time code and by whole-scan
inference, so that they cannot drift apart.

Axis conventions (SimpleITK's, as MONAI's ITK reader): numpy volumes are ``(z, y, x)``;
spacing, origin, indices and world points are ``(x, y, z)``; a slice pixel
``(row, col)`` is ``(y index, x index)``; ``direction`` is ``GetDirection()``'s 9
numbers (row-major 3x3).
"""
from .geometry import ScanGeometry
from .io import (CTScan, DicomSeries, ScanReadError, find_dicom_series, read_scan,
                 read_scan_geometry, scan_id_for, scan_id_from_path, select_dicom_series)
from .linking import (LinkedNodule, SliceDetections, link_detections, linked_to_label_volume,
                      nodule_probability)
from .luna16 import (ANNOTATION_COLUMNS, NoduleAnnotation, RowProblem, find_scans,
                     read_annotations, seriesuid_problem)
from .lung import LungMask, LungMaskParams, segment_lungs
from .measure import (NODULE_COLUMNS, NoduleMeasurement, measure_label_volume, nodule_table_csv,
                      read_label_volume, write_nodule_table)
from .nodules import LocatedNodule, locate_nodules, nodule_masks_on_slice, select_nodule_slices
from .slice_image import slice_to_uint8
from .sphere import cross_section_radius_mm, nearest_slices, sphere_cross_section
from .window import HU_MAX, HU_MIN, hu_to_uint8, window_hu

__all__ = [
    'ANNOTATION_COLUMNS', 'CTScan', 'DicomSeries', 'HU_MAX', 'HU_MIN', 'LinkedNodule',
    'LocatedNodule', 'LungMask', 'LungMaskParams', 'NODULE_COLUMNS', 'NoduleAnnotation',
    'NoduleMeasurement', 'RowProblem', 'ScanGeometry', 'ScanReadError', 'SliceDetections',
    'cross_section_radius_mm', 'find_dicom_series', 'find_scans', 'hu_to_uint8',
    'link_detections', 'linked_to_label_volume', 'locate_nodules', 'measure_label_volume',
    'nearest_slices', 'nodule_masks_on_slice', 'nodule_probability', 'nodule_table_csv',
    'read_annotations', 'read_label_volume', 'read_scan', 'read_scan_geometry',
    'scan_id_for', 'scan_id_from_path', 'segment_lungs', 'select_dicom_series',
    'select_nodule_slices', 'seriesuid_problem', 'slice_to_uint8', 'sphere_cross_section',
    'window_hu', 'write_nodule_table',
]
