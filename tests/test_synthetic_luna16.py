"""data_prep/make_synthetic_luna16.py: LUNA16 layout, geometry and content."""
import csv
import hashlib
import json

import numpy as np
import pytest
import SimpleITK as sitk

from data_prep.make_synthetic_luna16 import load_diameter_histogram, main, make_synthetic_luna16

from tests.ct_reference import index_of_world


@pytest.fixture(scope='module')
def synthetic(tmp_path_factory):
    root = tmp_path_factory.mktemp('synth')
    scans = make_synthetic_luna16(root, num_scans=8, seed=1)
    return root, scans


def test_layout_and_annotations_csv_is_luna16(synthetic):
    root, scans = synthetic
    with open(root / 'annotations.csv', newline='') as handle:
        reader = csv.reader(handle)
        assert next(reader) == ['seriesuid', 'coordX', 'coordY', 'coordZ', 'diameter_mm']
        rows = list(reader)
    assert len(rows) == sum(len(s.nodules) for s in scans)
    for scan in scans:
        assert (root / 'subset0' / f'{scan.seriesuid}.mhd').is_file()
        header = (root / 'subset0' / f'{scan.seriesuid}.mhd').read_text()
        assert f'ElementDataFile = {scan.seriesuid}.raw' in header and 'MET_SHORT' in header
        assert scan.seriesuid.startswith('1.3.6.1.4.1.14519.5.2.1.6279.6001.')
    assert not list(root.rglob('.tmp-*'))
    truth = json.loads((root / 'ground_truth.json').read_text())
    assert [s['seriesuid'] for s in truth['scans']] == [s.seriesuid for s in scans]


def test_geometry_is_luna16_like_and_world_coordinates_are_right(synthetic):
    root, scans = synthetic
    directions = {tuple(s.direction) for s in scans}
    assert (1, 0, 0, 0, 1, 0, 0, 0, -1) in directions and (-1, 0, 0, 0, -1, 0, 0, 0, 1) in directions
    assert any(not s.nodules for s in scans)
    for scan in scans:
        image = sitk.ReadImage(str(root / scan.mhd))
        assert image.GetSize() == (128, 128, 64) and image.GetPixelID() == sitk.sitkInt16
        sx, sy, sz = image.GetSpacing()
        assert 0.46 <= sx == sy <= 0.98 and 0.6 <= sz <= 2.5
        assert np.abs(image.GetOrigin()).min() > 0
        assert tuple(image.GetDirection()) == tuple(scan.direction)
        for nodule in scan.nodules:
            index = index_of_world(nodule.coord_xyz, image.GetSpacing(), image.GetOrigin(),
                                   image.GetDirection())
            np.testing.assert_allclose(index, nodule.centre_index_xyz, atol=1e-4)


def test_content_hu_values(synthetic):
    root, scans = synthetic
    kinds = set()
    for scan in scans:
        volume = sitk.GetArrayFromImage(sitk.ReadImage(str(root / scan.mhd)))
        assert volume[0, 0, 0] == scan.fov_padding_hu and scan.fov_padding_hu in (-2000, -3024)
        lung = scan.lungs[0]
        cx, cy, cz = (c / s for c, s in zip(lung['centre_mm'], scan.spacing_xyz))
        patch = volume[int(cz) - 1:int(cz) + 2, int(cy) - 3:int(cy) + 4, int(cx) - 3:int(cx) + 4]
        assert -900 < np.median(patch) < -700 or np.percentile(patch, 25) < -700  # lung (vessels aside)
        assert -1100 < np.median(volume[int(cz), 2:6, 60:68]) < -900 or \
            volume[int(cz), 2, 64] == scan.fov_padding_hu  # air or padding above the body
        for nodule in scan.nodules:
            x, y, z = (int(round(v)) for v in nodule.centre_index_xyz)
            centre = np.median(volume[z, y - 1:y + 2, x - 1:x + 2])
            if nodule.kind == 'solid':
                assert -20 < centre < 110
            else:
                assert -700 < centre < -450
            assert 3.0 <= nodule.diameter_mm <= 33
            kinds.add((nodule.kind, nodule.juxta_pleural))
    assert ('solid', True) in kinds and ('ground_glass', False) in kinds
    bright = volume > 300
    assert bright.any()  # bone


def test_diameters_follow_the_shipped_luna16_histogram():
    lower, upper, counts = load_diameter_histogram()
    assert lower[0] == 3 and upper[-1] >= 32 and counts.sum() > 1000
    median_bin = lower[np.searchsorted(np.cumsum(counts), counts.sum() / 2)]
    assert 5 <= median_bin <= 7  # LUNA16: most nodules are small


def test_deterministic_and_cli(tmp_path):
    assert main(['--out', str(tmp_path / 'a'), '--num-scans', '2', '--seed', '4',
                 '--shape', '16', '64', '80']) == 0
    make_synthetic_luna16(tmp_path / 'b', num_scans=2, seed=4, shape=(16, 64, 80))
    for name in ('annotations.csv', 'ground_truth.json'):
        assert (tmp_path / 'a' / name).read_bytes() == (tmp_path / 'b' / name).read_bytes()
    for raw in (tmp_path / 'a' / 'subset0').glob('*.raw'):
        twin = tmp_path / 'b' / 'subset0' / raw.name
        assert hashlib.sha1(raw.read_bytes()).digest() == hashlib.sha1(twin.read_bytes()).digest()
    assert main(['--out', str(tmp_path / 'c'), '--shape', '8', '64', '64']) == 1
