"""Scans as real scanners and tools deliver them are read and processed: NIfTI stored in
RAS, 3 mm in-plane voxels, 5-8 mm slices, -2048/-2000/-3024/-1024 padding outside the
field of view, a study folder holding several series (issue 10, point 4).

"Processed" = what data preparation and inference do with a scan before the network:
the lung mask (it must hold the drawn lungs, and never padding or anything outside the
body) and the slice image (padding must come out black). Only properties every sound
lung mask has are asserted, not how the mask is made.
"""
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from projects.lung_nodule.ct import LungMask, ScanReadError, read_scan, slice_to_uint8
from tests.scanner_inputs import (ChestPhantom, make_chest_phantom, write_dicom_series,
                                  write_dicom_study, write_nifti_ras, write_sitk_volume)


@dataclass(frozen=True)
class Case:
    """One kind of real-scanner input: how to build the phantom and how to write it."""

    shape_zyx: tuple[int, int, int]
    spacing_xyz: tuple[float, float, float]
    padding_hu: int
    write: Callable[[ChestPhantom, Path], Path]
    ras: bool = False  # stored in RAS order: the array is flipped in x and y


CASES = {
    'nifti-ras': Case((24, 64, 64), (3.0, 3.0, 3.0), -3024,
                      lambda ph, d: write_nifti_ras(ph.volume, ph.spacing_xyz, ph.origin_xyz,
                                                    d / 'chest.nii.gz'), ras=True),
    'dicom-3mm-in-plane': Case((24, 64, 64), (3.0, 3.0, 2.0), -2000,
                               lambda ph, d: write_dicom_series(
                                   ph.volume, ph.spacing_xyz, ph.origin_xyz, d / 'series',
                                   padding_hu=ph.padding_hu).files[0].parent),
    'dicom-5mm-slices': Case((16, 64, 64), (3.0, 3.0, 5.0), -1024,
                             lambda ph, d: write_dicom_series(
                                 ph.volume, ph.spacing_xyz, ph.origin_xyz, d / 'series',
                                 slice_thickness=5.0).files[0].parent),
    'nrrd-8mm-slices': Case((12, 64, 64), (3.0, 3.0, 8.0), -3024,
                            lambda ph, d: write_sitk_volume(ph.volume, ph.spacing_xyz,
                                                            ph.origin_xyz, d / 'chest.nrrd')),
    'dicom-2048-padding': Case((24, 64, 64), (3.0, 3.0, 6.0), -2048,
                               lambda ph, d: write_dicom_series(
                                   ph.volume, ph.spacing_xyz, ph.origin_xyz, d / 'series',
                                   rescale_intercept=0.0, padding_hu=-2048).files[0].parent),
    'mhd-2048-padding': Case((24, 64, 64), (3.0, 3.0, 6.0), -2048,
                             lambda ph, d: write_sitk_volume(ph.volume, ph.spacing_xyz,
                                                             ph.origin_xyz, d / 'chest.mhd')),
}


def _assert_processed(scan, phantom: ChestPhantom, flipped: bool = False) -> None:
    """Lung mask and slice images of ``scan`` are sound, against the drawn truth."""
    def oriented(array: np.ndarray) -> np.ndarray:
        return array[:, ::-1, ::-1] if flipped else array

    np.testing.assert_array_equal(scan.array, oriented(phantom.volume))
    np.testing.assert_allclose(scan.geometry.spacing_xyz, phantom.spacing_xyz, atol=1e-4)
    lungs_true, body, fov = (oriented(a) for a in (phantom.lungs, phantom.body, phantom.fov))
    padding = ~fov
    assert scan.array[padding].max() == phantom.padding_hu  # not clipped by the reader
    lungs = LungMask(scan.array, scan.geometry.spacing_xyz)
    covered = total = 0
    lung_slices = [z for z in range(scan.array.shape[0]) if lungs_true[z].sum() >= 20]
    assert len(lung_slices) >= scan.array.shape[0] // 2
    for z in lung_slices:
        mask = lungs.slice(z)
        assert mask.any(), f'empty lung mask on slice {z}'
        covered += (mask & lungs_true[z]).sum()
        total += lungs_true[z].sum()
        assert not (mask & padding[z]).any(), f'padding inside the lung mask on slice {z}'
        assert not (mask & ~body[z]).any(), f'outside the body inside the lung mask on slice {z}'
        image = slice_to_uint8(scan, z, lungs)
        assert image.dtype == np.uint8 and image.shape == mask.shape
        assert (image[padding[z]] == 0).all(), f'padding not black on slice {z}'
        assert image[lungs_true[z] & mask].mean() > 0, f'lungs black on slice {z}'
    assert covered / total >= 0.95, f'lung mask holds {covered / total:.1%} of the drawn lungs'
    assert not lungs.slice(0).any(), 'lung mask on a slice without lungs'


@pytest.mark.parametrize('name', list(CASES))
def test_real_scanner_input_is_read_and_processed(tmp_path, name):
    case = CASES[name]
    phantom = make_chest_phantom(case.shape_zyx, case.spacing_xyz, padding_hu=case.padding_hu,
                                 noise_hu=15.0, seed=len(name))
    scan = read_scan(case.write(phantom, tmp_path))
    if case.ras:
        np.testing.assert_allclose(scan.geometry.direction, (-1, 0, 0, 0, -1, 0, 0, 0, 1),
                                   atol=1e-6)
    _assert_processed(scan, phantom, flipped=case.ras)


def test_study_folder_with_two_kernels_each_series_read_and_processed(tmp_path):
    """A study exported with a soft and a sharp kernel of the same acquisition: the
    folder alone is an error that lists both; each series, picked by its UID, is read
    and processed."""
    soft = make_chest_phantom((16, 64, 64), (3.0, 3.0, 5.0), padding_hu=-2000)
    sharp = make_chest_phantom((16, 64, 64), (3.0, 3.0, 5.0), padding_hu=-2000, noise_hu=60.0)
    written = write_dicom_study(tmp_path / 'study', [soft.volume, sharp.volume],
                                soft.spacing_xyz, soft.origin_xyz)
    with pytest.raises(ScanReadError, match='2 DICOM series') as info:
        read_scan(tmp_path / 'study')
    assert all(w.series_uid in str(info.value) for w in written)
    for w, phantom in zip(written, (soft, sharp)):
        scan = read_scan(tmp_path / 'study', series_uid=w.series_uid)
        assert scan.scan_id == w.series_uid
        _assert_processed(scan, phantom)
