"""data_prep/make_synthetic_luna16.py: LUNA16 layout, geometry, the hard preset's content
(seen in the arrays, not only in the truth), label volumes, and the basic preset kept
bit for bit."""
import csv
import hashlib
import json
import math

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from data_prep.make_synthetic_luna16 import load_diameter_histogram, main, make_synthetic_luna16
from data_prep.synthetic.anatomy import vessel_tree
from data_prep.synthetic.hard import _z_partial_volume
from data_prep.synthetic.shapes import Cavity

from tests.ct_reference import index_of_world

PADDINGS = (-2000, -3024, -1024)


@pytest.fixture(scope='module')
def synthetic(tmp_path_factory):
    """8 hard scans of the default shape (the fixed design + 4 random)."""
    root = tmp_path_factory.mktemp('synth')
    scans = make_synthetic_luna16(root, num_scans=8, seed=1)
    return root, scans


@pytest.fixture(scope='module')
def roomy(tmp_path_factory):
    """The 3 designed scans with lesions, lungs big enough for 3-6 cm masses."""
    root = tmp_path_factory.mktemp('synth_roomy')
    scans = make_synthetic_luna16(root, num_scans=3, seed=2, shape=(40, 176, 176),
                                  spacing_xyz=(0.95, 0.95, 2.0), workers=2)
    return root, scans


def _volume(root, scan) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(root / scan.mhd)))


def _labels(root, scan) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(root / scan.label_path)))


def _rows(path):
    with open(path, newline='') as handle:
        reader = csv.reader(handle)
        header = next(reader)
        return header, list(reader)


def _all_nodules(*fixtures):
    for root, scans in fixtures:
        for scan in scans:
            for nodule in scan.nodules:
                yield root, scan, nodule


def _max_feret_mm(mask: np.ndarray, spacing_xy) -> float:
    """Longest distance between two pixel centres of ``mask`` (mm), plus one pixel."""
    rows, cols = np.nonzero(mask)
    pts = np.stack([cols * spacing_xy[0], rows * spacing_xy[1]], axis=1)
    d = np.sqrt(((pts[:, None] - pts[None]) ** 2).sum(-1))
    return float(d.max()) + float(np.mean(spacing_xy))


def test_layout_and_annotations_csv_is_luna16(synthetic):
    root, scans = synthetic
    header, rows = _rows(root / 'annotations.csv')
    assert header == ['seriesuid', 'coordX', 'coordY', 'coordZ', 'diameter_mm']
    assert len(rows) == sum(len(s.nodules) for s in scans)
    header, _ = _rows(root / 'annotations_excluded.csv')
    assert header == ['seriesuid', 'coordX', 'coordY', 'coordZ', 'diameter_mm']
    for scan in scans:
        assert (root / 'subset0' / f'{scan.seriesuid}.mhd').is_file()
        header = (root / 'subset0' / f'{scan.seriesuid}.mhd').read_text()
        assert f'ElementDataFile = {scan.seriesuid}.raw' in header and 'MET_SHORT' in header
        assert scan.seriesuid.startswith('1.3.6.1.4.1.14519.5.2.1.6279.6001.')
        assert scan.label_path == f'labels/{scan.seriesuid}.nii.gz'
        assert (root / scan.label_path).is_file()
    assert not list(root.rglob('.tmp-*'))
    truth = json.loads((root / 'ground_truth.json').read_text())
    assert truth['preset'] == 'hard'
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
        assert sz <= scan.slice_thickness_mm <= 2.5 or scan.slice_thickness_mm == sz
        assert np.abs(image.GetOrigin()).min() > 0
        assert tuple(image.GetDirection()) == tuple(scan.direction)
        for nodule in scan.nodules:
            index = index_of_world(nodule.coord_xyz, image.GetSpacing(), image.GetOrigin(),
                                   image.GetDirection())
            np.testing.assert_allclose(index, nodule.centre_index_xyz, atol=1e-4)


def test_label_volumes_have_the_scan_geometry_and_the_rows_of_annotations_csv(synthetic, roomy):
    seen = 0
    for root, scans in (synthetic, roomy):
        _, rows = _rows(root / 'annotations.csv')
        for scan in scans:
            image = sitk.ReadImage(str(root / scan.mhd))
            label_image = sitk.ReadImage(str(root / scan.label_path))
            assert label_image.GetSize() == image.GetSize()
            np.testing.assert_allclose(label_image.GetSpacing(), image.GetSpacing(), atol=1e-5)
            np.testing.assert_allclose(label_image.GetOrigin(), image.GetOrigin(), atol=1e-3)
            np.testing.assert_allclose(label_image.GetDirection(), image.GetDirection(), atol=1e-6)
            labels = sitk.GetArrayFromImage(label_image)
            expected = sorted(n.label for n in scan.nodules)
            assert sorted(set(np.unique(labels).tolist()) - {0}) == expected
            voxel_mm3 = float(np.prod(image.GetSpacing()))
            for nodule in scan.nodules:
                row = rows[nodule.label - 1]  # 1-based data row, header not counted
                assert row[0] == scan.seriesuid
                assert float(row[4]) == pytest.approx(nodule.diameter_mm)
                mask = labels == nodule.label
                # the label's centroid is the annotated centre (world mm, direction-aware)
                centroid_zyx = np.array(np.nonzero(mask)).mean(axis=1)
                world = image.TransformContinuousIndexToPhysicalPoint(centroid_zyx[::-1].tolist())
                np.testing.assert_allclose(world, [float(v) for v in row[1:4]], atol=1e-3)
                # label voxels ~ the drawn volume (the label is its >= 50 % occupancy)
                assert mask.sum() * voxel_mm3 == pytest.approx(nodule.volume_mm3, rel=0.35, abs=6 * voxel_mm3)
                seen += 1
    assert seen >= 10


def test_excluded_masses_are_listed_apart_and_not_labelled(roomy):
    root, scans = roomy
    _, rows = _rows(root / 'annotations.csv')
    _, excluded = _rows(root / 'annotations_excluded.csv')
    masses = [(scan, m) for scan in scans for m in scan.excluded]
    assert len(excluded) == len(masses) >= 2
    assert {m.location for _, m in masses} == {'pleural', 'mediastinal'}
    scored = {(r[0], r[1], r[2], r[3]) for r in rows}
    for row, (scan, mass) in zip(excluded, masses):
        assert row[0] == scan.seriesuid and 30 <= float(row[4]) <= 60
        assert mass.kind == 'mass' and (row[0], row[1], row[2], row[3]) not in scored
        x, y, z = (int(round(v)) for v in mass.centre_index_xyz)
        assert _labels(root, scan)[z, y, x] == 0
        volume = _volume(root, scan)
        assert np.median(volume[z, y - 1:y + 2, x - 1:x + 2]) > -150  # soft tissue, not lung


def test_kinds_are_visible_in_the_array(synthetic, roomy):
    kinds = set()
    for root, scan, nodule in _all_nodules(synthetic, roomy):
        hu = _volume(root, scan)[_labels(root, scan) == nodule.label].astype(float)
        kinds.add(nodule.kind)
        if nodule.kind == 'calcified':
            assert hu.max() > 200, nodule
        elif nodule.kind == 'solid':
            assert np.median(hu) > -350 and hu.max() < 300, nodule
        elif nodule.kind == 'ground_glass':
            assert -850 < np.median(hu) < -350 and hu.max() < 0, nodule
        elif nodule.kind == 'part_solid':
            assert np.median(hu) < -300, nodule  # mostly ground glass...
            assert np.percentile(hu, 95) > -250, nodule  # ...around a solid core
    assert kinds == {'solid', 'ground_glass', 'part_solid', 'calcified'}


def test_lesions_at_the_lung_wall_take_the_place_of_lung(synthetic, roomy):
    """Indenting lesions lie inside the thoracic cavity (ellipsoids minus heart) and touch
    its wall; their soft tissue is continuous with the wall's."""
    locations = set()
    for root, scan, nodule in _all_nodules(synthetic, roomy):
        if nodule.location not in ('pleural', 'mediastinal', 'cardiac'):
            continue
        locations.add(nodule.location)
        assert nodule.juxta_pleural
        mask = _labels(root, scan) == nodule.label
        cavity = Cavity.from_anatomy(scan.lungs, scan.heart)
        zz, yy, xx = np.nonzero(mask)
        sx, sy, sz = scan.spacing_xyz
        inside = cavity.sdf(zz * sz, yy * sy, xx * sx)
        assert inside.max() <= 0.6 * max(sx, sy, sz), nodule  # within the cavity
        grown = ndimage.binary_dilation(mask, iterations=2) & ~mask
        gz, gy, gx = np.nonzero(grown)
        assert (cavity.sdf(gz * sz, gy * sy, gx * sx) > 0).any(), nodule  # touches the wall
        if nodule.kind == 'solid':
            volume = _volume(root, scan)
            wall_side = grown & (volume > -300)
            assert wall_side.sum() > 0  # no lung-density gap between lesion and wall
    assert locations == {'pleural', 'mediastinal', 'cardiac'}


def test_juxta_vascular_nodules_touch_a_visible_vessel(synthetic, roomy):
    checked = 0
    for root, scan, nodule in _all_nodules(synthetic, roomy):
        if nodule.location != 'vascular':
            continue
        vessel = nodule.params['touching_vessel']
        p0, p1 = np.array(vessel['p0_mm']), np.array(vessel['p1_mm'])
        labels, volume = _labels(root, scan), _volume(root, scan)
        spacing = np.array(scan.spacing_xyz)
        cavity = Cavity.from_anatomy(scan.lungs, scan.heart)
        values, touches = [], False
        for t in np.linspace(0, 1, 41):
            point = p0 + t * (p1 - p0)
            x, y, z = np.round(point / spacing).astype(int)
            if not (0 <= z < volume.shape[0] and 0 <= y < volume.shape[1] and 0 <= x < volume.shape[2]):
                continue
            touches |= bool(labels[max(z - 1, 0):z + 2, max(y - 1, 0):y + 2, max(x - 1, 0):x + 2].any())
            if labels[z, y, x] == 0 and cavity.contains(point, margin=2.0):
                values.append(volume[z, y, x])
        assert touches, nodule
        assert len(values) >= 5 and np.median(values) > -600, nodule  # the vessel shows
        checked += 1
    assert checked >= 2


def test_diameter_is_the_long_axis_of_the_largest_axial_section(synthetic, roomy):
    """What a radiologist measures: max Feret on the largest axial section of the label."""
    checked = lobulated = 0
    for root, scan, nodule in _all_nodules(synthetic, roomy):
        mask = _labels(root, scan) == nodule.label
        z = int(np.argmax(mask.sum(axis=(1, 2))))
        measured = _max_feret_mm(mask[z], scan.spacing_xyz[:2])
        assert abs(measured - nodule.diameter_mm) <= max(scan.spacing_xyz[:2]), \
            (nodule.shape, measured, nodule.diameter_mm)
        if nodule.shape == 'lobulated' and nodule.location == 'parenchyma':
            assert nodule.diameter_mm > nodule.equivalent_diameter_mm  # not a sphere
            lobulated += 1
        checked += 1
    assert checked >= 20 and lobulated >= 1


def test_spheres_and_shapes_keep_their_true_parameters(synthetic):
    root, scans = synthetic
    truth = json.loads((root / 'ground_truth.json').read_text())
    shapes = set()
    for scan in truth['scans']:
        for nodule in scan['nodules']:
            shapes.add(nodule['shape'])
            body = nodule['params']['body']
            assert body and all('centre_mm' in p for p in body)
            assert nodule['equivalent_diameter_mm'] > 0 and nodule['volume_mm3'] > 0
            assert nodule['equivalent_diameter_mm'] == pytest.approx(
                (6 * nodule['volume_mm3'] / math.pi) ** (1 / 3))
            if nodule['shape'] == 'spiculated':
                assert len(nodule['params']['spicules']) >= 6
    assert {'sphere', 'ellipsoid', 'lobulated', 'spiculated'} <= shapes


def test_through_plane_vessels_look_like_small_nodules(synthetic):
    """Round bright spots of 2-5 mm in the lungs, outside any label, that go on in the
    neighbouring slices: what a slice-wise detector must learn to reject."""
    root, scans = synthetic
    spots = 0
    for scan in scans[:4]:
        volume, labels = _volume(root, scan), _labels(root, scan)
        sx, sy, sz = scan.spacing_xyz
        cavity = Cavity.from_anatomy(scan.lungs, scan.heart)
        nz = volume.shape[0]
        for z in range(nz // 4, 3 * nz // 4, 4):
            ys, xs = np.mgrid[0:volume.shape[1], 0:volume.shape[2]]
            lung = cavity.sdf(np.full(ys.shape, z * sz), ys * sy, xs * sx) < -2.0
            bright = (volume[z] > -500) & lung & (labels[max(z - 2, 0):z + 3].max(axis=0) == 0)
            comps, n = ndimage.label(bright)
            for i in range(1, n + 1):
                comp = comps == i
                diameter = 2 * math.sqrt(comp.sum() * sx * sy / math.pi)
                if not 2.0 <= diameter <= 5.0:
                    continue
                feret = _max_feret_mm(comp, (sx, sy))
                above = (volume[min(z + 1, nz - 1)][comp] > -500).mean()
                if feret < 1.6 * diameter and above > 0.5:
                    spots += 1
    assert spots >= 30  # the basic preset, without them, shows about 8


def test_vessel_trees_thin_towards_the_periphery():
    lung = {'centre_mm': [50.0, 50.0, 50.0], 'semi_axes_mm': [30.0, 40.0, 45.0]}
    cavity = Cavity.from_anatomy([lung], {'centre_mm': [500.0, 500.0, 500.0],
                                          'semi_axes_mm': [1.0, 1.0, 1.0]})
    tree = vessel_tree(np.random.default_rng(0), np.array([30.0, 50.0, 50.0]),
                       np.array([1.0, 0.0, 0.0]), 3.0, cavity, min_radius=0.4)
    assert len(tree) >= 30
    starts = {tuple(c.p0): c.r0 for c in tree}
    for c in tree:
        assert c.r1 < c.r0
        parent = [s for s in tree if tuple(s.p1) == tuple(c.p0)]
        if parent:
            assert c.r0 < parent[0].r1 + 1e-9  # a branch is never wider than its parent's end
    root_to_end = [np.linalg.norm(c.p1 - tree[0].p0) for c in tree]
    radii = [c.r1 for c in tree]
    near, far = np.median(root_to_end), np.array(root_to_end)
    assert np.mean([r for r, d in zip(radii, far) if d > near]) < \
        np.mean([r for r, d in zip(radii, far) if d <= near])
    assert min(radii) < 1.0 and max(starts.values()) == 3.0


def test_noise_blur_padding_and_thickness_vary_by_scan(synthetic):
    root, scans = synthetic
    measured, declared, paddings, kernels, thickness = [], [], set(), set(), set()
    for scan in scans:
        volume = _volume(root, scan)
        ny, nx = volume.shape[1:]
        assert scan.fov_padding_hu in PADDINGS
        corners = volume[:, [0, 0, -1, -1], [0, -1, 0, -1]]
        assert (corners == scan.fov_padding_hu).all()  # outside the FOV: exact padding
        # air above the body, inside the field of view: only noise around -1000
        air = volume[:, 3:9, nx // 2 - 6:nx // 2 + 6].astype(float)
        assert abs(np.median(air) + 1000) < 15
        measured.append(air.std())
        declared.append(scan.kernel['noise_hu'])
        paddings.add(scan.fov_padding_hu)
        kernels.add(scan.kernel['name'])
        thickness.add(scan.slice_thickness_mm / scan.spacing_xyz[2])
        assert 0.6 <= scan.slice_thickness_mm <= 2.5
    np.testing.assert_allclose(measured, declared, rtol=0.3)
    assert max(measured) > 1.8 * min(measured)
    assert len(paddings) >= 2 and len(kernels) >= 2 and len(thickness) >= 2


def test_kernel_blur_shows_at_the_skin(synthetic):
    """The air-skin edge is a step blurred by the kernel's Gaussian: its width (step height
    over steepest slope) is sigma * sqrt(2 pi), or one pixel when the blur is finer."""
    root, scans = synthetic
    widths = []
    for scan in scans:
        volume = _volume(root, scan).astype(float)
        nx = volume.shape[2]
        profile = volume[:, :, nx // 2 - 3:nx // 2 + 4].mean(axis=(0, 2))  # down the midline
        top = int(np.argmax(profile > -500))  # first pixel into the body
        edge = profile[top - 6:top + 6]
        sy = scan.spacing_xyz[1]
        width = (profile[top + 2] + 1000) / (np.abs(np.diff(edge)).max() / sy)
        expected = max(sy, scan.kernel['blur_mm'] * math.sqrt(2 * math.pi))
        assert 0.75 < width / expected < 1.35, (scan.kernel, sy, width)
        widths.append(width)
    assert max(widths) > 1.5 * min(widths)


def test_slab_averaging_in_z_keeps_the_total_and_spreads_a_thin_slice():
    volume = np.zeros((9, 2, 2), np.float32)
    volume[4] = 100
    averaged = _z_partial_volume(volume, thickness=2.5, spacing_z=1.0)
    np.testing.assert_allclose(averaged[:, 0, 0], [0, 0, 0, 30, 40, 30, 0, 0, 0], atol=1e-4)
    assert _z_partial_volume(volume, thickness=1.0, spacing_z=1.0) is volume


def test_anatomy_shows_bone_fat_muscle_and_lung(synthetic):
    root, scans = synthetic
    for scan in scans[:3]:
        volume = _volume(root, scan).astype(float)
        mid = volume[volume.shape[0] // 2]
        inside = mid > -1500
        assert (mid[inside] > 300).sum() > 20  # ribs, spine, sternum
        assert ((mid > -150) & (mid < -60)).sum() > 200  # fat
        assert ((mid > 20) & (mid < 80)).sum() > 200  # muscle, heart, vessels
        assert ((mid > -950) & (mid < -700)).sum() > 2000  # lung


def test_basic_preset_reproduces_the_first_version(tmp_path):
    """Checksums of scans made by the generator before the hard preset existed."""
    make_synthetic_luna16(tmp_path / 'a', num_scans=6, seed=4, shape=(16, 64, 80), preset='basic')
    make_synthetic_luna16(tmp_path / 'b', num_scans=2, seed=2, shape=(24, 64, 64),
                          spacing_xyz=(0.62, 0.81, 1.9), direction=(-1, 0, 0, 0, 1, 0, 0, 0, -1),
                          preset='basic')
    # the basic preset's label volume: the voxels whose centre lies in the sphere
    scans = json.loads((tmp_path / 'a' / 'ground_truth.json').read_text())['scans']
    scan = next(s for s in scans if s['nodules'])
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / 'a' / scan['label_path'])))
    zz, yy, xx = np.indices(labels.shape)
    for nodule in scan['nodules']:
        centre, radius = nodule['params']['body'][0]['centre_mm'], nodule['diameter_mm'] / 2
        inside = ((xx * scan['spacing_xyz'][0] - centre[0]) ** 2 + (yy * scan['spacing_xyz'][1] - centre[1]) ** 2
                  + (zz * scan['spacing_xyz'][2] - centre[2]) ** 2) <= radius ** 2
        np.testing.assert_array_equal(labels == nodule['label'], inside)
    digests = {}
    for name in ('a', 'b'):
        for path in sorted((tmp_path / name).glob('subset0/*.raw')) + [tmp_path / name / 'annotations.csv']:
            digests[f'{name}/{path.name}'] = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    assert digests == BASIC_CHECKSUMS


def test_deterministic_and_cli(tmp_path):
    assert main(['--out', str(tmp_path / 'a'), '--num-scans', '2', '--seed', '4',
                 '--shape', '16', '64', '80']) == 0
    make_synthetic_luna16(tmp_path / 'b', num_scans=2, seed=4, shape=(16, 64, 80), workers=2)
    for name in ('annotations.csv', 'annotations_excluded.csv', 'ground_truth.json'):
        assert (tmp_path / 'a' / name).read_bytes() == (tmp_path / 'b' / name).read_bytes()
    for raw in (tmp_path / 'a' / 'subset0').glob('*.raw'):
        twin = tmp_path / 'b' / 'subset0' / raw.name
        assert hashlib.sha1(raw.read_bytes()).digest() == hashlib.sha1(twin.read_bytes()).digest()
    assert main(['--out', str(tmp_path / 'c'), '--shape', '8', '64', '64']) == 1
    assert main(['--out', str(tmp_path / 'd'), '--num-scans', '1', '--shape', '16', '64', '64',
                 '--preset', 'basic']) == 0
    assert json.loads((tmp_path / 'd' / 'ground_truth.json').read_text())['preset'] == 'basic'


def test_diameters_follow_the_shipped_luna16_histogram():
    lower, upper, counts = load_diameter_histogram()
    assert lower[0] == 3 and upper[-1] >= 32 and counts.sum() > 1000
    median_bin = lower[np.searchsorted(np.cumsum(counts), counts.sum() / 2)]
    assert 5 <= median_bin <= 7  # LUNA16: most nodules are small


# sha256 (first 16 hex digits) of the .raw files and annotations.csv written by the
# generator at commit 6751c1f (before the hard preset), with numpy's PCG64 streams.
BASIC_CHECKSUMS = {
    'a/1.3.6.1.4.1.14519.5.2.1.6279.6001.123406717264460444986993291372.raw': '63abd31cb9db2e9f',
    'a/1.3.6.1.4.1.14519.5.2.1.6279.6001.263211532636097767137723233439.raw': 'ad1d99357579e4e3',
    'a/1.3.6.1.4.1.14519.5.2.1.6279.6001.268731076936819558312154960015.raw': '5e75b53b85257d23',
    'a/1.3.6.1.4.1.14519.5.2.1.6279.6001.326290153710836806329568176100.raw': 'f96f37eb9e1256f3',
    'a/1.3.6.1.4.1.14519.5.2.1.6279.6001.490481502710777495670156670842.raw': '5b287c2eae3f2f3e',
    'a/1.3.6.1.4.1.14519.5.2.1.6279.6001.798599904623685168253904841799.raw': '6903a740116a87d2',
    'a/annotations.csv': '4231e6fa35225ac2',
    'b/1.3.6.1.4.1.14519.5.2.1.6279.6001.283812099004409771301913813739.raw': 'e56f058dc45dafaf',
    'b/1.3.6.1.4.1.14519.5.2.1.6279.6001.821248403687918052263521746694.raw': '5ef0d727c51f1b76',
    'b/annotations.csv': '096199ffa957919a',
}
