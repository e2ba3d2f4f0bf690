"""HU window and sphere cross-sections (projects.lung_nodule.ct.window / .sphere)."""
import math

import numpy as np
import pytest

from projects.lung_nodule.ct import (cross_section_radius_mm, hu_to_uint8, nearest_slices,
                                     sphere_cross_section, window_hu)


def test_window_maps_bounds_once_and_clips():
    hu = np.array([-3024, -2000, -1024, -112, 800, 3000], dtype=np.int16)
    before = hu.copy()
    out = window_hu(hu)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [0, 0, 0, 0.5, 1, 1], atol=1e-6)
    np.testing.assert_array_equal(hu, before)  # input untouched
    np.testing.assert_array_equal(hu_to_uint8(hu), [0, 0, 0, 128, 255, 255])
    assert hu_to_uint8(np.array([-1000], np.int16))[0] == round(24 / 1824 * 255)
    with pytest.raises(ValueError, match='hu_max > hu_min'):
        window_hu(hu, 100, 100)


@pytest.mark.parametrize('cz, n, count, expected', [
    (10.2, 40, 3, [9, 10, 11]), (10.5, 40, 3, [10, 11, 12]), (0.1, 40, 3, [0, 1, 2]),
    (39.4, 40, 3, [37, 38, 39]), (5.0, 2, 3, [0, 1]), (4.3, 40, 2, [4, 5]), (4.7, 40, 2, [4, 5]), (3.6, 40, 2, [3, 4]),
])
def test_nearest_slices(cz, n, count, expected):
    assert nearest_slices(cz, n, count) == expected


def test_cross_section_uses_radius_not_diameter():
    spacing = (0.5, 0.5, 1.0)
    mask = sphere_cross_section((200, 200), (100, 100, 10), radius_mm=10.0, z_index=10,
                                spacing_xyz=spacing)
    # radius 10 mm = 20 px: area pi * 20^2 px, not pi * 40^2
    assert abs(mask.sum() - math.pi * 20 ** 2) / (math.pi * 20 ** 2) < 0.02
    ys, xs = np.nonzero(mask)
    assert ys.min() == 80 and ys.max() == 120 and xs.min() == 80 and xs.max() == 120
    # 6 mm off-centre: radius sqrt(100 - 36) = 8 mm
    assert cross_section_radius_mm(10.0, 10, 16, 1.0) == pytest.approx(8.0)
    off = sphere_cross_section((200, 200), (100, 100, 10), 10.0, 16, spacing)
    assert abs(off.sum() - math.pi * 16 ** 2) / (math.pi * 16 ** 2) < 0.03
    assert not sphere_cross_section((200, 200), (100, 100, 10), 10.0, 21, spacing).any()


def test_cross_section_is_an_ellipse_for_anisotropic_pixels_and_uses_pixel_centres():
    mask = sphere_cross_section((60, 80), (40.0, 30.0, 0.0), radius_mm=6.0, z_index=0,
                                spacing_xyz=(0.5, 1.0, 1.0))
    ys, xs = np.nonzero(mask)
    assert (xs.min(), xs.max()) == (28, 52)  # 12 px along x (0.5 mm pixels)
    assert (ys.min(), ys.max()) == (24, 36)  # 6 px along y (1 mm pixels)
    # A pixel whose centre is exactly on the circle is inside; just beyond, outside.
    edge = sphere_cross_section((20, 20), (10.0, 10.0, 0.0), 3.0, 0, (1.0, 1.0, 1.0))
    assert edge[10, 13] and not edge[10, 14] and edge[13, 10]


def test_cross_section_clipped_at_slice_border():
    mask = sphere_cross_section((30, 30), (0.0, 29.0, 0.0), 5.0, 0, (1.0, 1.0, 1.0))
    full = np.add.outer((np.arange(30) - 29.0) ** 2, np.arange(30) ** 2.0) <= 25
    np.testing.assert_array_equal(mask, full)
