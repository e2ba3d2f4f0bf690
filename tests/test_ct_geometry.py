"""World <-> voxel with origin, spacing and direction (projects.lung_nodule.ct.geometry)."""
import math

import numpy as np
import pytest
import SimpleITK as sitk

from projects.lung_nodule.ct import ScanGeometry

from tests.ct_reference import index_of_world

FLIPS = {
    'identity': (1, 0, 0, 0, 1, 0, 0, 0, 1),
    'flip_z': (1, 0, 0, 0, 1, 0, 0, 0, -1),
    'flip_xy': (-1, 0, 0, 0, -1, 0, 0, 0, 1),
}


def _rotation_z(deg: float) -> tuple:
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return (c, -s, 0, s, c, 0, 0, 0, 1)


@pytest.mark.parametrize('direction', [*FLIPS.values(), _rotation_z(30)])
def test_world_to_index_matches_definition(direction):
    geo = ScanGeometry((120, 100, 40), (0.62, 0.81, 1.9), (-170.5, 12.25, -310.0), direction)
    rng = np.random.default_rng(0)
    index = rng.uniform([0, 0, 0], [119, 99, 39], size=(20, 3))
    d = np.asarray(direction, dtype=float).reshape(3, 3)
    world = np.asarray(geo.origin_xyz) + (index * geo.spacing_xyz) @ d.T
    np.testing.assert_allclose(geo.index_to_world(index), world, atol=1e-9)
    np.testing.assert_allclose(geo.world_to_index(world), index, atol=1e-9)
    for w, i in zip(world, index):
        np.testing.assert_allclose(index_of_world(w, geo.spacing_xyz, geo.origin_xyz, direction), i,
                                   atol=1e-9)


def test_flipped_axis_runs_against_the_world_axis():
    geo = ScanGeometry((64, 64, 50), (0.7, 0.7, 2.0), (0.0, 0.0, 100.0), FLIPS['flip_z'])
    world = geo.index_to_world((10, 20, 30))
    np.testing.assert_allclose(world, (7.0, 14.0, 100.0 - 60.0), atol=1e-12)
    np.testing.assert_allclose(geo.world_to_index(world), (10, 20, 30), atol=1e-9)
    # (world - origin) / spacing without the direction gives a negative z index
    assert ((world - np.asarray(geo.origin_xyz)) / geo.spacing_xyz)[2] == pytest.approx(-30.0)
    assert geo.flipped_axes == ('z',)
    assert ScanGeometry((2, 2, 2), (1, 1, 1), (0, 0, 0), FLIPS['flip_xy']).flipped_axes == ('x', 'y')


def test_geometry_from_image_and_header_agree():
    image = sitk.Image(30, 20, 10, sitk.sitkInt16)
    image.SetSpacing((0.5, 0.6, 2.5))
    image.SetOrigin((1.0, -2.0, 3.0))
    image.SetDirection(FLIPS['flip_xy'])
    geo = ScanGeometry.from_image(image)
    assert geo.size_xyz == (30, 20, 10)
    assert geo.shape_zyx == sitk.GetArrayViewFromImage(image).shape
    for idx in [(0, 0, 0), (29, 19, 9), (3.5, 7.25, 1.5)]:
        np.testing.assert_allclose(geo.index_to_world(idx),
                                   image.TransformContinuousIndexToPhysicalPoint(idx), atol=1e-12)
    entry = {'width': 30, 'height': 20, **geo.as_dict()}
    assert ScanGeometry.from_coco_image(entry, num_slices=10) == geo


def test_contains_index_uses_voxel_extents():
    geo = ScanGeometry((10, 8, 4), (1, 1, 1), (0, 0, 0))
    assert geo.contains_index((-0.5, 0, 0)) and geo.contains_index((9.5, 7.5, 3.5))
    assert not geo.contains_index((-0.51, 0, 0))
    assert not geo.contains_index((0, 0, 3.51))
    assert not geo.contains_index((np.nan, 0, 0))


@pytest.mark.parametrize('kwargs, message', [
    (dict(direction=(1, 0, 0, 0, 2, 0, 0, 0, 1)), 'orthonormal'),
    (dict(spacing_xyz=(0.7, 0.0, 1.0)), 'positive'),
    (dict(spacing_xyz=(0.7, float('nan'), 1.0)), 'finite'),
    (dict(direction=(1, 0, 0)), '9 numbers'),
])
def test_bad_geometry_names_the_value(kwargs, message):
    base = dict(size_xyz=(4, 4, 4), spacing_xyz=(1, 1, 1), origin_xyz=(0, 0, 0))
    base.update(kwargs)
    with pytest.raises(ValueError, match=message):
        ScanGeometry(**base)
