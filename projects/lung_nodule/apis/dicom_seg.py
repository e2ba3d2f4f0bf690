"""The nodules of a DICOM series as a DICOM Segmentation object (highdicom).

A reading-room viewer or PACS shows a SEG over the series it references; one segment per
``nodule_id``, so that the numbering matches ``nodules.csv``. Frames are the source
images in the scan array's z order (``CTScan.source_files``), the label volume's slices.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import highdicom as hd
import numpy as np
import pydicom
from pydicom.sr.codedict import codes

__all__ = ['write_dicom_seg']

_ALGORITHM = 'lung_nodule Mask R-CNN'


def write_dicom_seg(labels: np.ndarray, source_files: Sequence[Path], path: Path,
                    software_version: str = '1.0') -> None:
    """Write ``labels`` (value = nodule id, 1..k, every id present) as a binary SEG.

    Args:
        labels: uint ``(z, y, x)``, one slice per source file, in their order.
        source_files: The DICOM files of the series, in the array's z order.
        path: Where to write (the caller makes it atomic).
        software_version: Recorded in the SEG's algorithm identification.

    Raises:
        ValueError: No nodule (a SEG needs a segment), or the files do not match.
    """
    count = int(labels.max()) if labels.size else 0
    if count == 0:
        raise ValueError('a DICOM SEG needs at least one segment: no nodule to write')
    if len(source_files) != labels.shape[0]:
        raise ValueError(f'{len(source_files)} source files for a label volume of '
                         f'{labels.shape[0]} slices')
    sources = [pydicom.dcmread(str(f), stop_before_pixels=True) for f in source_files]
    algorithm = hd.AlgorithmIdentificationSequence(
        name=_ALGORITHM, version=software_version, family=codes.cid7162.ArtificialIntelligence)
    segments = [
        hd.seg.SegmentDescription(
            segment_number=i, segment_label=f'nodule {i}',
            segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
            segmented_property_type=codes.SCT.Nodule,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algorithm,
            tracking_uid=hd.UID(), tracking_id=f'nodule {i}')
        for i in range(1, count + 1)]
    seg = hd.seg.Segmentation(
        source_images=sources,
        pixel_array=labels.astype(np.uint8 if count < 256 else np.uint16),
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=segments,
        series_instance_uid=hd.UID(), series_number=9000,
        sop_instance_uid=hd.UID(), instance_number=1,
        manufacturer='lung_nodule', manufacturer_model_name=_ALGORITHM,
        software_versions=software_version, device_serial_number='none',
        series_description='Lung nodules (automatic)')
    seg.save_as(str(path))
