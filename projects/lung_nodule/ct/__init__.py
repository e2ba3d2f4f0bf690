"""CT knowledge, in one place: reading scans, world <-> voxel, HU window, lung mask,
nodule spheres, the LUNA16 layout, 3D linking of slice detections and nodule measurement.

Used by ``data_prep/`` (the LUNA16 converters), by training-time code and by whole-scan
inference, so that they cannot drift apart.

Axis conventions (SimpleITK's, as MONAI's ITK reader): numpy volumes are ``(z, y, x)``;
spacing, origin, indices and world points are ``(x, y, z)``; a slice pixel
``(row, col)`` is ``(y index, x index)``; ``direction`` is ``GetDirection()``'s 9
numbers (row-major 3x3).

Names are imported lazily (PEP 562): ``from projects.lung_nodule.ct import read_scan``
loads only what ``read_scan`` needs, so a module that wants the lung-mask modes or the
nodule columns does not pull in SimpleITK, scipy or pydicom.
"""

from importlib import import_module
from typing import Any

# submodule -> the public names it provides
_EXPORTS = {
    'geometry': ('ScanGeometry',),
    'io': (
        'CTScan', 'DicomSeries', 'ScanReadError', 'find_dicom_series', 'read_scan',
        'read_scan_geometry', 'scan_id_for', 'scan_id_from_path', 'select_dicom_series'
    ),
    'linking': (
        'LinkedNodule', 'SliceDetections', 'link_detections', 'linked_to_label_volume',
        'nodule_probability'
    ),
    'luna16': (
        'ANNOTATION_COLUMNS', 'NoduleAnnotation', 'RowProblem', 'find_scans',
        'read_annotations', 'seriesuid_problem'
    ),
    'lung': ('LungMask', 'LungMaskParams', 'segment_lungs'),
    'lung_mask_mode': (
        'DEFAULT_LUNG_MASK_MODE', 'LUNG_MASK_MODES', 'MIN_IN_LUNG_FRACTION', 'check_lung_mask_mode'
    ),
    'measure': (
        'NODULE_COLUMNS', 'NoduleMeasurement', 'measure_label_volume', 'nodule_table_csv',
        'read_label_volume', 'write_nodule_table'
    ),
    'nodules': (
        'LocatedNodule', 'locate_nodules', 'nodule_masks_on_slice', 'select_nodule_slices'
    ),
    'slice_image': ('mask_in_lung_fraction', 'slice_to_uint8'),
    'sphere': ('cross_section_radius_mm', 'nearest_slices', 'sphere_cross_section'),
    'views': ('VIEW_MM_PER_PIXEL', 'VIEW_SIZE', 'orthogonal_views'),
    'window': ('HU_MAX', 'HU_MIN', 'hu_to_uint8', 'window_hu'),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = sorted(_MODULE_OF)


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
    value = getattr(import_module(f'.{module}', __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list:
    return sorted(set(globals()) | set(__all__))
