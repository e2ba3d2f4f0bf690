"""Nodule measurement in world mm (projects.lung_nodule.ct.measure, tools/measure_nodules.py).

Acceptance: label volumes of spheres and ellipsoids (some rotated in-plane) of known size,
written to disk with flipped axes (direction diag(-1, -1, 1)), anisotropic spacing
(0.6 x 0.6 x 2.5 mm) and a positive z origin, read back with SimpleITK: centres within one
voxel, long and short axis within 1 mm for every object of 6 mm or more, volume within 10%
for every object of 8 mm or more.

The truth of each object is analytic, in world mm: the expected axes are those of the
object's cross-section on the sampled slice nearest its centre (a 2.5 mm slice grid
rarely cuts an object through its equator).
"""
import csv
import json
import math
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from projects.lung_nodule.ct import (NODULE_COLUMNS, ScanGeometry, ScanReadError,
                                     measure_label_volume, nodule_table_csv, read_label_volume,
                                     write_nodule_table)

REPO_ROOT = Path(__file__).resolve().parents[1]
TOOL = REPO_ROOT / 'tools' / 'measure_nodules.py'
HEAVY = ('torch', 'torchvision', 'mmcv', 'mmengine', 'mmdet', 'mmpretrain')

SPACING = (0.6, 0.6, 2.5)
ORIGIN = (160.0, 150.0, 112.5)  # flipped x/y run towards negative world x/y
RAS_LIKE = (-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0)
SIZE_XYZ = (176, 176, 28)  # 105.6 x 105.6 x 70 mm


@dataclass(frozen=True)
class Ellipsoid:
    """A solid ellipsoid in world mm, rotated by ``angle_deg`` about the world z axis."""

    label: int
    centre: np.ndarray  # world (x, y, z) mm
    diameters: tuple[float, float, float]  # in-plane long, in-plane short, z
    angle_deg: float

    @property
    def semi_axes(self) -> np.ndarray:
        return np.asarray(self.diameters) / 2.0

    @property
    def size_mm(self) -> float:
        """Equivalent-sphere diameter: what 'an object of N mm' means in these tests."""
        return 2.0 * float(np.prod(self.semi_axes)) ** (1.0 / 3.0)

    @property
    def volume_mm3(self) -> float:
        return 4.0 / 3.0 * math.pi * float(np.prod(self.semi_axes))

    def inside(self, world: np.ndarray) -> np.ndarray:
        d = world - self.centre
        c, s = math.cos(math.radians(self.angle_deg)), math.sin(math.radians(self.angle_deg))
        u = d[..., 0] * c + d[..., 1] * s
        v = -d[..., 0] * s + d[..., 1] * c
        a, b, h = self.semi_axes
        return (u / a) ** 2 + (v / b) ** 2 + (d[..., 2] / h) ** 2 <= 1.0

    def scale_on_slice(self, slice_z: np.ndarray) -> float:
        """Cross-section size factor on the sampled slice nearest the centre."""
        dz = np.min(np.abs(slice_z - self.centre[2]))
        return math.sqrt(max(0.0, 1.0 - (dz / self.semi_axes[2]) ** 2))


# (in-plane long, in-plane short, z) diameters in mm and in-plane rotation in degrees
SHAPES = [
    ((4, 4, 4), 0), ((6, 6, 6), 0), ((8, 8, 8), 0), ((12, 12, 12), 0), ((20, 20, 20), 0),
    ((16, 8, 10), 0), ((14, 8, 9), 30), ((20, 10, 12), 60), ((12, 7, 8), -45),
]


def make_phantom(seed: int) -> tuple[np.ndarray, ScanGeometry, list[Ellipsoid]]:
    """A label volume of the SHAPES on a 3x3 grid, centres at random sub-voxel offsets."""
    geometry = ScanGeometry(SIZE_XYZ, SPACING, ORIGIN, RAS_LIKE)
    rng = np.random.default_rng(seed)
    cells = [29.0 + 59.0 * k for k in range(3)]  # voxel index of each grid cell's centre
    objects = []
    for label, (diameters, angle) in enumerate(SHAPES, start=1):
        index = np.array([cells[(label - 1) % 3], cells[(label - 1) // 3], 13.0])
        index += rng.uniform(-0.5, 0.5, 3)
        centre = geometry.index_to_world(index)
        objects.append(Ellipsoid(label, centre, diameters, angle + rng.uniform(-5, 5)))
    zz, yy, xx = np.indices(geometry.shape_zyx, dtype=np.float64)
    index_xyz = np.stack([xx, yy, zz], axis=-1)
    world = (np.asarray(ORIGIN) + (index_xyz * SPACING)
             @ np.asarray(RAS_LIKE).reshape(3, 3).T)
    labels = np.zeros(geometry.shape_zyx, dtype=np.uint16)
    for obj in objects:
        labels[obj.inside(world)] = obj.label
    assert len(np.unique(labels)) == len(SHAPES) + 1  # every object drawn, none lost
    return labels, geometry, objects


def write_labels(labels: np.ndarray, geometry: ScanGeometry, path: Path) -> Path:
    image = sitk.GetImageFromArray(labels)
    image.SetSpacing(geometry.spacing_xyz)
    image.SetOrigin(geometry.origin_xyz)
    image.SetDirection(geometry.direction)
    sitk.WriteImage(image, str(path))
    return path


@pytest.fixture(scope='module')
def phantom_file(tmp_path_factory) -> tuple[Path, list[Ellipsoid]]:
    labels, geometry, objects = make_phantom(seed=0)
    path = tmp_path_factory.mktemp('phantom') / 'phantom.nii.gz'
    return write_labels(labels, geometry, path), objects


def slice_world_z() -> np.ndarray:
    return ORIGIN[2] + SPACING[2] * np.arange(SIZE_XYZ[2])


def check_against_truth(rows: list[dict], objects: list[Ellipsoid]) -> dict[str, float]:
    """Assert the acceptance tolerances; return the worst errors (for the message)."""
    assert [int(r['nodule_id']) for r in rows] == [o.label for o in objects]
    worst = {'centre_vox': 0.0, 'axis_mm': 0.0, 'volume_rel': 0.0}
    for row, obj in zip(rows, objects):
        centre = np.array([float(row[k]) for k in ('coordX', 'coordY', 'coordZ')])
        voxels_off = np.abs(centre - obj.centre) / SPACING
        assert np.all(voxels_off <= 1.0), (obj, centre)
        worst['centre_vox'] = max(worst['centre_vox'], float(voxels_off.max()))
        scale = obj.scale_on_slice(slice_world_z())
        if obj.size_mm >= 6:
            for column, true_mm in (('long_axis_mm', obj.diameters[0] * scale),
                                    ('short_axis_mm', obj.diameters[1] * scale)):
                error = float(row[column]) - true_mm
                assert abs(error) <= 1.0, (obj, column, row[column], true_mm)
                worst['axis_mm'] = max(worst['axis_mm'], abs(error))
        if obj.size_mm >= 8:
            rel = float(row['volume_mm3']) / obj.volume_mm3 - 1.0
            assert abs(rel) <= 0.10, (obj, row['volume_mm3'], obj.volume_mm3)
            worst['volume_rel'] = max(worst['volume_rel'], abs(rel))
        long_mm, short_mm = float(row['long_axis_mm']), float(row['short_axis_mm'])
        assert float(row['mean_diameter_mm']) == pytest.approx((long_mm + short_mm) / 2, abs=2e-3)
        volume = float(row['volume_mm3'])
        assert float(row['equivalent_diameter_mm']) == pytest.approx(
            (6 * volume / math.pi) ** (1 / 3), abs=2e-3)
    return worst


@pytest.mark.parametrize('seed', [0, 1])
def test_phantom_read_back_from_disk_meets_tolerances(tmp_path, seed):
    labels, geometry, objects = make_phantom(seed)
    path = write_labels(labels, geometry, tmp_path / 'labels.nii.gz')
    read, read_geometry = read_label_volume(path)
    assert read_geometry.flipped_axes == ('x', 'y')
    assert read_geometry.origin_xyz[2] > 0
    measurements = measure_label_volume(read, read_geometry)
    check_against_truth([m.as_row(None) for m in measurements], objects)

    z_world = slice_world_z()
    for m, obj in zip(measurements, objects):
        # slices: every slice cutting the object well inside it, none outside it
        inside = np.flatnonzero(np.abs(z_world - obj.centre[2]) <= 0.9 * obj.semi_axes[2])
        outside = np.flatnonzero(np.abs(z_world - obj.centre[2]) > obj.semi_axes[2])
        assert m.slice_first <= inside.min() and m.slice_last >= inside.max()
        assert not np.any((outside >= m.slice_first) & (outside <= m.slice_last))
        assert m.slice_first <= m.long_axis_slice <= m.slice_last
        assert m.num_voxels == int(np.count_nonzero(read == obj.label))
        # drawn end points: the right length, perpendicular, and crossing each other
        (r0, c0), (r1, c1) = m.long_axis_rc
        long_vec = np.array([(c1 - c0) * SPACING[0], (r1 - r0) * SPACING[1]])
        (r2, c2), (r3, c3) = m.short_axis_rc
        short_vec = np.array([(c3 - c2) * SPACING[0], (r3 - r2) * SPACING[1]])
        assert np.linalg.norm(long_vec) == pytest.approx(m.long_axis_mm, abs=1e-6)
        assert np.linalg.norm(short_vec) == pytest.approx(m.short_axis_mm, abs=1e-6)
        assert abs(long_vec @ short_vec) <= 1e-6 * m.long_axis_mm * m.short_axis_mm
        if obj.diameters[0] >= 1.5 * obj.diameters[1]:
            # the long axis lies along the ellipsoid's long axis: world (cos, sin) is
            # (col, row) direction (-cos, -sin) under diag(-1, -1, 1): the same line.
            # 15 degrees: a 2:1 ellipse's width drops by only 0.3 mm 13 degrees off its
            # major axis, so pixels decide the direction that loosely; a mirrored axis
            # would be 2 * angle (>= 50 degrees here) off.
            world_dir = np.array([math.cos(math.radians(obj.angle_deg)),
                                  math.sin(math.radians(obj.angle_deg))])
            cos_angle = abs(long_vec @ world_dir) / np.linalg.norm(long_vec)
            assert cos_angle >= math.cos(math.radians(15)), (obj, long_vec)


@pytest.mark.parametrize('suffix', ['.mhd', '.nrrd', '.nii'])
def test_other_formats_give_the_same_measurements(tmp_path, phantom_file, suffix):
    reference_path, _ = phantom_file
    labels, geometry = read_label_volume(reference_path)
    path = write_labels(labels, geometry, tmp_path / f'labels{suffix}')
    again, again_geometry = read_label_volume(path)
    assert again_geometry == geometry
    reference = [m.as_row() for m in measure_label_volume(labels, geometry)]
    assert [m.as_row() for m in measure_label_volume(again, again_geometry)] == reference


def test_cli_measures_a_label_file_without_torch(tmp_path, phantom_file):
    path, objects = phantom_file
    out_csv, out_json = tmp_path / 'out' / 'nodules.csv', tmp_path / 'out' / 'nodules.json'
    code = ('import runpy, sys\n'
            f'sys.argv = [{str(TOOL)!r}, {str(path)!r}, "--out", {str(out_csv)!r}, '
            f'"--json", {str(out_json)!r}]\n'
            'try:\n'
            f'    runpy.run_path({str(TOOL)!r}, run_name="__main__")\n'
            'except SystemExit as exc:\n'
            '    assert not exc.code, exc.code\n'
            f'print("HEAVY=" + ",".join(m for m in {HEAVY!r} if m in sys.modules))')
    result = subprocess.run([sys.executable, '-c', code], cwd=tmp_path, capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == 'HEAVY='
    assert f'{len(objects)} nodules' in result.stderr
    with open(out_csv, newline='') as handle:
        reader = csv.DictReader(handle)
        assert tuple(reader.fieldnames) == NODULE_COLUMNS
        rows = list(reader)
    assert all(row['probability'] == '' for row in rows)
    check_against_truth(rows, objects)
    records = json.loads(out_json.read_text())
    assert [tuple(r) for r in records] == [NODULE_COLUMNS] * len(objects)
    assert all(r['probability'] is None for r in records)
    assert [r['long_axis_mm'] for r in records] == [float(r['long_axis_mm']) for r in rows]
    assert sorted(p.name for p in out_csv.parent.iterdir()) == ['nodules.csv', 'nodules.json']


def test_cli_prints_table_help_and_names_a_bad_file(tmp_path, phantom_file):
    path, objects = phantom_file
    printed = subprocess.run([sys.executable, str(TOOL), str(path)], capture_output=True,
                             text=True)
    assert printed.returncode == 0, printed.stderr
    lines = printed.stdout.splitlines()
    assert lines[0] == ','.join(NODULE_COLUMNS) and len(lines) == 1 + len(objects)

    helped = subprocess.run([sys.executable, str(TOOL), '--help'], capture_output=True,
                            text=True)
    assert helped.returncode == 0 and 'LABELS' in helped.stdout and '--out' in helped.stdout

    bad = tmp_path / 'broken.nii.gz'
    bad.write_bytes(b'not a nifti file at all')
    failed = subprocess.run([sys.executable, str(TOOL), str(bad), '--out',
                             str(tmp_path / 'x.csv')], capture_output=True, text=True)
    assert failed.returncode == 1
    assert str(bad) in failed.stderr
    assert not (tmp_path / 'x.csv').exists()


# ---------------------------------------------------------------- the in-plane rule
def one_slice_geometry(shape_yx: tuple[int, int], sx: float, sy: float) -> ScanGeometry:
    return ScanGeometry((shape_yx[1], shape_yx[0], 1), (sx, sy, 2.0), (0.0, 0.0, 0.0))


def test_discs_measure_their_diameter_within_1mm_at_ct_pixel_sizes():
    """0.6-0.7 mm pixels, sx != sy, random sub-pixel centres: |error| <= 1 mm (see the
    module docstring for the bias of the pixel-edge rule)."""
    rng = np.random.default_rng(7)
    errors = []
    for diameter in (3.0, 6.0, 8.0, 10.0, 15.0, 22.0, 30.0):
        for _ in range(6):
            sx, sy = rng.uniform(0.6, 0.7, 2)
            n = int(diameter / 0.6) + 8
            cy, cx = rng.uniform(n / 2 - 1, n / 2 + 1, 2)
            yy, xx = np.mgrid[:n, :n]
            disc = ((xx - cx) * sx) ** 2 + ((yy - cy) * sy) ** 2 <= (diameter / 2) ** 2
            (m,) = measure_label_volume(disc[None].astype(np.uint8),
                                        one_slice_geometry((n, n), sx, sy))
            errors += [m.long_axis_mm - diameter, m.short_axis_mm - diameter]
    errors = np.array(errors)
    assert np.all(np.abs(errors) <= 1.0), errors
    assert 0.0 < errors.mean() < 0.6  # the documented outward bias of the pixel-edge rule


def test_straight_runs_of_pixels_measure_their_pixel_edges_per_axis_spacing():
    labels = np.zeros((1, 20, 30), dtype=np.uint8)
    labels[0, 5, 3:15] = 1  # a row of 12 pixels
    labels[0, 2:19, 25] = 2  # a column of 17 pixels
    labels[0, 10, 20] = 3  # one pixel
    m_row, m_col, m_pixel = measure_label_volume(labels, one_slice_geometry((20, 30), 0.6, 0.8))
    assert (m_row.long_axis_mm, m_row.short_axis_mm) == pytest.approx((12 * 0.6, 0.8))
    assert (m_col.long_axis_mm, m_col.short_axis_mm) == pytest.approx((17 * 0.8, 0.6))
    assert (m_pixel.long_axis_mm, m_pixel.short_axis_mm) == pytest.approx((0.8, 0.6))
    np.testing.assert_allclose(sorted(m_row.long_axis_rc), [(5.0, 2.5), (5.0, 14.5)])
    assert m_pixel.volume_mm3 == pytest.approx(0.6 * 0.8 * 2.0)
    assert m_pixel.centre_xyz == pytest.approx((20 * 0.6, 10 * 0.8, 0.0))


def test_long_axis_is_taken_on_the_slice_where_the_object_is_widest():
    labels = np.zeros((5, 40, 40), dtype=np.uint8)
    labels[1, 10:14, 10:20] = 4  # 10 px wide
    labels[2, 10:14, 10:30] = 4  # 20 px wide: the long axis slice
    labels[3, 10:14, 10:25] = 4
    geometry = ScanGeometry((40, 40, 5), (0.7, 0.7, 1.25), (-10.0, 20.0, 300.0),
                            (1, 0, 0, 0, 1, 0, 0, 0, -1))
    (m,) = measure_label_volume(labels, geometry)
    assert (m.nodule_id, m.slice_first, m.slice_last, m.long_axis_slice) == (4, 1, 3, 2)
    assert m.long_axis_mm > 20 * 0.7 - 1e-9
    assert m.num_voxels == 4 * (10 + 20 + 15)
    # world z with a flipped z axis: origin - z index * spacing
    centre_z = (1 * 40 + 2 * 80 + 3 * 60) / 180
    assert m.coordZ == pytest.approx(300.0 - 1.25 * centre_z)


def test_bad_inputs_are_refused_with_the_reason(tmp_path):
    geometry = one_slice_geometry((4, 4), 0.7, 0.7)
    with pytest.raises(ValueError, match='shape'):
        measure_label_volume(np.zeros((2, 4, 4), np.uint8), geometry)
    with pytest.raises(ValueError, match='>= 0'):
        measure_label_volume(np.full((1, 4, 4), -1, np.int16), geometry)
    with pytest.raises(ValueError, match='integer'):
        measure_label_volume(np.zeros((1, 4, 4), np.float32), geometry)
    assert measure_label_volume(np.zeros((1, 4, 4), np.uint8), geometry) == []

    fractional = sitk.GetImageFromArray(np.full((2, 3, 3), 0.5, np.float32))
    sitk.WriteImage(fractional, str(tmp_path / 'soft.nii.gz'))
    with pytest.raises(ScanReadError, match='soft.nii.gz.*whole numbers'):
        read_label_volume(tmp_path / 'soft.nii.gz')
    flat = sitk.GetImageFromArray(np.zeros((3, 3), np.uint8))
    sitk.WriteImage(flat, str(tmp_path / 'flat.nrrd'))
    with pytest.raises(ScanReadError, match='flat.nrrd.*3D'):
        read_label_volume(tmp_path / 'flat.nrrd')
    with pytest.raises(ScanReadError, match='missing.nii.gz'):
        read_label_volume(tmp_path / 'missing.nii.gz')
    whole = sitk.GetImageFromArray(np.array([[[0, 2], [2, 0]]], np.float32))
    sitk.WriteImage(whole, str(tmp_path / 'float.nii.gz'))
    labels, _ = read_label_volume(tmp_path / 'float.nii.gz')
    assert labels.dtype.kind == 'i' and labels.max() == 2


# ---------------------------------------------------------------- tables
def test_rows_and_tables_keep_the_column_order_and_are_written_whole(tmp_path):
    labels = np.zeros((3, 8, 8), np.uint8)
    labels[1, 2:5, 2:6] = 7
    (m,) = measure_label_volume(labels, ScanGeometry((8, 8, 3), (0.7, 0.7, 2.5), (1, 2, 3)))
    row = m.as_row(0.875)
    assert tuple(row) == NODULE_COLUMNS and row['probability'] == 0.875
    assert row['nodule_id'] == 7 and row['slice_first'] == row['slice_last'] == 1
    with pytest.raises(ValueError, match='probability'):
        m.as_row(1.5)

    csv_path, json_path = tmp_path / 'n.csv', tmp_path / 'n.json'
    write_nodule_table([row], csv_path, json_path)
    assert csv_path.read_text() == nodule_table_csv([row])
    assert json.loads(json_path.read_text()) == [row]
    with pytest.raises(ValueError, match='columns'):
        write_nodule_table([{**row, 'extra': 1}], csv_path)
    assert json.loads(json_path.read_text()) == [row]  # the old files are untouched
    write_nodule_table([], csv_path, json_path)
    assert csv_path.read_text() == ','.join(NODULE_COLUMNS) + '\n'
    assert json.loads(json_path.read_text()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ['n.csv', 'n.json']  # no leftovers
