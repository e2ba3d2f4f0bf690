"""Lung mask on synthetic scans (projects.lung_nodule.ct.lung)."""
import json

import numpy as np
import pytest

from data_prep.make_synthetic_luna16 import make_synthetic_luna16
from projects.lung_nodule.ct import LungMask, LungMaskParams, read_scan, sphere_cross_section


@pytest.fixture(scope='module')
def synthetic(tmp_path_factory):
    root = tmp_path_factory.mktemp('lung_synth')
    make_synthetic_luna16(root, num_scans=4, seed=3)
    truth = json.loads((root / 'ground_truth.json').read_text())
    return root, truth['scans']


def _ellipsoid_slice(e, z, sz, xs, ys, grow_mm=0.0):
    (cx, cy, cz), (ax, ay, az) = e['centre_mm'], e['semi_axes_mm']
    t = 1 - ((z * sz - cz) / (az + grow_mm)) ** 2
    if t <= 0:
        return np.zeros((len(ys), len(xs[0])), bool)
    return ((xs - cx) / (ax + grow_mm)) ** 2 + ((ys - cy) / (ay + grow_mm)) ** 2 <= t


def _true_lung(scan_truth, z, rows, cols, grow_mm=0.0):
    """The drawn lungs (ellipsoids minus the heart); ``grow_mm`` widens them."""
    sx, sy, sz = scan_truth['spacing_xyz']
    xs = np.arange(cols)[None, :] * sx
    ys = np.arange(rows)[:, None] * sy
    out = np.zeros((rows, cols), bool)
    for lung in scan_truth['lungs']:
        out |= _ellipsoid_slice(lung, z, sz, xs, ys, grow_mm)
    if grow_mm == 0:
        out &= ~_ellipsoid_slice(scan_truth['heart'], z, sz, xs, ys)
    return out


def test_lung_mask_matches_the_true_lungs_and_excludes_outside(synthetic):
    root, scans = synthetic
    for truth in scans:
        scan = read_scan(root / truth['mhd'])
        before = scan.array.copy()
        lungs = LungMask(scan.array, scan.geometry.spacing_xyz)
        nz, rows, cols = scan.array.shape
        covered = true_area = outside = mask_area = 0
        for z in range(int(0.2 * nz), int(0.8 * nz), 2):
            mask = lungs.slice(z)
            true = _true_lung(truth, z, rows, cols)
            covered += (mask & true).sum()
            true_area += true.sum()
            # the mask may exceed the lungs by its 2 mm dilation, and the bronchi (air, joined)
            outside += (mask & ~_true_lung(truth, z, rows, cols, grow_mm=3.0)).sum()
            mask_area += mask.sum()
            hu = scan.array[z]
            assert not mask[hu <= -1500].any(), 'field-of-view padding inside the lung mask'
            assert not mask[0].any() and not mask[:, 0].any()
        assert covered / true_area >= 0.98, (truth['seriesuid'], covered / true_area)
        assert outside / mask_area <= 0.06, (truth['seriesuid'], outside / mask_area)
        np.testing.assert_array_equal(scan.array, before)


def test_nodules_inside_lung_mask_including_juxta_pleural(synthetic):
    root, scans = synthetic
    inside = total = juxta_inside = juxta_total = 0
    for truth in scans:
        scan = read_scan(root / truth['mhd'])
        lungs = LungMask(scan.array, scan.geometry.spacing_xyz)
        for nodule in truth['nodules']:
            cz = int(round(nodule['centre_index_xyz'][2]))
            for z in (cz - 1, cz, cz + 1):
                mask = sphere_cross_section(scan.array.shape[1:], nodule['centre_index_xyz'],
                                            nodule['diameter_mm'] / 2, z, truth['spacing_xyz'])
                hit = (mask & lungs.slice(z)).sum()
                inside += hit
                total += mask.sum()
                if nodule['juxta_pleural']:
                    juxta_inside += hit
                    juxta_total += mask.sum()
    assert juxta_total > 0, 'the fixture must hold juxta-pleural nodules'
    assert inside / total >= 0.99
    assert juxta_inside / juxta_total >= 0.98


def test_without_closing_juxta_pleural_nodules_fall_outside(synthetic):
    """The closing and the hull keep juxta-pleural nodules in: a check that the test can fail."""
    root, scans = synthetic
    truth = next(s for s in scans if any(n['juxta_pleural'] and n['kind'] == 'solid'
                                         for n in s['nodules']))
    scan = read_scan(root / truth['mhd'])
    nodule = next(n for n in truth['nodules'] if n['juxta_pleural'] and n['kind'] == 'solid')
    z = int(round(nodule['centre_index_xyz'][2]))
    mask = sphere_cross_section(scan.array.shape[1:], nodule['centre_index_xyz'],
                                nodule['diameter_mm'] / 2, z, truth['spacing_xyz'])
    plain = LungMask(scan.array, scan.geometry.spacing_xyz,
                     LungMaskParams(closing_mm=0, dilation_mm=0, max_pocket_mm2=0)).slice(z)
    full = LungMask(scan.array, scan.geometry.spacing_xyz).slice(z)
    assert (mask & full).sum() / mask.sum() >= 0.98
    assert (mask & plain).sum() / mask.sum() < 0.9


def test_bad_parameters_and_shapes():
    with pytest.raises(ValueError, match='closing_mm'):
        LungMaskParams(closing_mm=-1)
    with pytest.raises(ValueError, match='3D'):
        LungMask(np.zeros((4, 4), np.int16), (1, 1, 1))
    lungs = LungMask(np.zeros((3, 64, 64), np.int16), (1, 1, 1))  # no air at all
    assert not lungs.slices(range(3)).any()
    with pytest.raises(IndexError, match='slice 3'):
        lungs.slice(3)
