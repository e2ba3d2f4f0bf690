"""ct/lung.py's OpenCV shortcuts give SciPy's results exactly (issue 9): the disc test by
the exact EDT, the 2D connected-component labels."""
import numpy as np
import pytest
from scipy import ndimage

from projects.lung_nodule.ct.lung import _label_2d, _near, _squared_pixel_reach


@pytest.mark.parametrize('spacing', [0.5, 0.6640625, 0.703125, 0.78125, 0.9765625, 1.0, (0.8, 0.7)])
@pytest.mark.parametrize('radius', [0.0, 0.5, 2.0, 7.0, 10.0])
def test_near_equals_scipy_edt_threshold(spacing, radius):
    sampling = spacing if isinstance(spacing, tuple) else (spacing, spacing)
    rng = np.random.default_rng(int(radius * 10) + int(sampling[0] * 1000))
    # blobs, thin lines and single pixels, touching the border too
    target = ndimage.binary_opening(rng.random((90, 120)) < 0.55, iterations=2)
    target[rng.integers(0, 90, 6), rng.integers(0, 120, 6)] = True
    target[:, 0] = False
    target[40, :] = True
    if sampling[0] == sampling[1]:  # the OpenCV path is the one under test
        assert _squared_pixel_reach(radius, sampling[0]) is not None
    expected = ndimage.distance_transform_edt(~target, sampling=sampling) <= radius
    assert np.array_equal(_near(target, radius, sampling), expected)
    empty = np.zeros((5, 5), bool)  # no target: SciPy's own answer, whatever it is
    assert np.array_equal(_near(empty, radius, sampling),
                          ndimage.distance_transform_edt(~empty, sampling=sampling) <= radius)


def test_reach_is_the_largest_squared_offset_within_the_radius():
    assert _squared_pixel_reach(1.0, 1.0) == 1  # (0, 1) in, (1, 1) at 1.414 out
    assert _squared_pixel_reach(10.0, 0.5) == 400  # (0, 20) exactly on the circle is in
    assert _squared_pixel_reach(2.0, 0.7) == 8  # 2.83 px: (2, 2) in, (0, 3) out


@pytest.mark.parametrize('seed', range(6))
def test_label_2d_equals_scipy_label(seed):
    rng = np.random.default_rng(seed)
    shape = tuple(int(v) for v in rng.integers(30, 300, 2))
    mask = rng.random(shape) < rng.uniform(0.3, 0.55)  # below 4-connected percolation
    mask[::7] = seed % 3 == 0  # sometimes long runs joining components
    mask = mask[:, ::-1] if seed % 2 else mask  # a non-contiguous view too
    labels, count = _label_2d(mask)
    expected, expected_count = ndimage.label(mask)
    assert count == expected_count > 1
    assert labels.dtype == expected.dtype and np.array_equal(labels, expected)
