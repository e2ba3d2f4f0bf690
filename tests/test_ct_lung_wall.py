"""The lung mask keeps what lies against the lung wall (issue 10, acceptance 1 and 2).

On a chest phantom built here (tests/lung_phantom.py: lungs joined by the airways and at
the anterior junction, a heart, ribs, field-of-view padding) with lesions that indent
the lungs from the chest wall (incl. 36 and 50 mm masses), the mediastinum and the
heart, and a nodule straddling the pleura.
"""
import cv2
import numpy as np
import pytest
from scipy import ndimage

from projects.lung_nodule.ct.lung import LungMask, LungMaskParams
from tests.lung_phantom import make_chest_phantom


@pytest.fixture(scope='module')
def phantom():
    return make_chest_phantom()


@pytest.fixture(scope='module')
def masks(phantom):
    lungs = LungMask(phantom.volume, phantom.spacing_xyz)
    return lungs.slices(range(phantom.volume.shape[0]))


def _worst_slice_fraction(lesion: np.ndarray, masks: np.ndarray) -> float:
    """Smallest fraction of a lesion's pixels inside the mask over the slices showing it."""
    worst = 1.0
    for z in np.flatnonzero(lesion.any(axis=(1, 2))):
        worst = min(worst, (lesion[z] & masks[z]).sum() / lesion[z].sum())
    return worst


def test_phantom_lungs_are_joined_by_the_threshold(phantom):
    """The premise: at -320 HU the two lungs are one 3D component, and on the junction
    slices one 2D component (through the anterior junction, not only the airways)."""
    air = phantom.volume < -320
    labels, _ = ndimage.label(air)
    left, right = (labels[side & air] for side in phantom.lung_sides)
    assert np.bincount(left).argmax() == np.bincount(right).argmax()
    mid = phantom.volume.shape[0] // 2
    labels2d, _ = ndimage.label(air[mid])
    assert (np.bincount(labels2d[phantom.lung_sides[0][mid] & air[mid]]).argmax()
            == np.bincount(labels2d[phantom.lung_sides[1][mid] & air[mid]]).argmax())


def test_every_lesion_inside_the_mask_on_every_slice(phantom, masks):
    assert {'chest_wall_mass_50mm', 'chest_wall_mass_36mm', 'mediastinal_15mm',
            'heart_16mm', 'pleural_20mm'} <= set(phantom.lesions)
    for name, lesion in phantom.lesions.items():
        assert _worst_slice_fraction(lesion, masks) >= 0.95, name


def test_sphere_straddling_the_pleura_keeps_its_in_lung_part(phantom, masks):
    lesion = phantom.lesions['pleural_straddling_10mm']
    assert (lesion & masks).sum() / lesion.sum() >= 0.99


def test_without_the_hull_the_masses_fall_outside(phantom):
    """The check that the lesion test can fail: the closing alone (hull turned off)
    loses most of the masses against the chest wall."""
    lungs = LungMask(phantom.volume, phantom.spacing_xyz, LungMaskParams(max_pocket_mm2=0))
    lesion = phantom.lesions['chest_wall_mass_50mm']
    zs = np.flatnonzero(lesion.any(axis=(1, 2)))
    masks = lungs.slices(zs)
    assert (lesion[zs] & masks).sum() / lesion.sum() < 0.5


def test_mask_stays_tight_and_inside_the_body(phantom, masks):
    """At most 30% area beyond the true lungs, on average over the slices that show lung
    (at least 10% of the largest lung area), and nothing outside the body."""
    true_area = phantom.lungs.sum(axis=(1, 2))
    added = (masks & ~phantom.lungs).sum(axis=(1, 2))
    shown = true_area >= 0.1 * true_area.max()
    assert np.mean(added[shown] / true_area[shown]) <= 0.30
    assert not (masks & ~phantom.body).any()
    assert not masks[phantom.volume <= -1500].any(), 'field-of-view padding inside the mask'
    covered = (masks & phantom.lungs).sum() / phantom.lungs.sum()
    assert covered >= 0.99


def test_left_and_right_lungs_are_split_on_joined_lungs(phantom):
    """Lung pixels go to their own lung although the threshold joins them; the trachea
    above the carina goes to neither; the mediastinum stays mostly outside the mask on
    the slices where the lungs touch, where one hull of both lungs would take it all."""
    lungs = LungMask(phantom.volume, phantom.spacing_xyz)
    air = phantom.volume < -320
    nz = phantom.volume.shape[0]
    checked = above_carina = 0
    for z in range(0, nz, 3):
        sides = lungs.sides(z)
        for value, lung in zip((1, 2), phantom.lung_sides):
            pixels = lung[z] & air[z]
            if pixels.sum() < 50:
                continue
            assert (sides[pixels] == value).mean() >= 0.99, (z, value)
            checked += 1
        trachea = phantom.trachea[z] & air[z]
        labels, _ = ndimage.label(air[z])
        if trachea.sum() >= 20 and not np.isin(labels[phantom.lungs[z] & air[z]],
                                               labels[trachea]).any():
            assert (sides[trachea] == 3).all(), z  # above the carina
            above_carina += 1
    assert checked >= 20 and above_carina >= 5
    mid = nz // 2  # lungs joined through the anterior junction on this slice
    ys, xs = np.nonzero(phantom.lungs[mid])
    hull = np.zeros(phantom.lungs.shape[1:], np.uint8)
    cv2.fillConvexPoly(hull, cv2.convexHull(np.stack([xs, ys], 1).astype(np.int32)), 1)
    between = hull.astype(bool) & phantom.mediastinum[mid]  # one hull of both lungs takes it
    assert between.sum() > 1000
    assert (lungs.slice(mid) & between).sum() / between.sum() <= 0.4


def test_small_lungs_are_split_too(phantom):
    """Lungs too small for the airway-removing erosion depth (the same phantom read as
    if its voxels were 0.25 mm: lungs 17 mm wide) are split at a shallower depth."""
    lungs = LungMask(phantom.volume, (0.25, 0.25, 0.5))
    mid = phantom.volume.shape[0] // 2
    sides = lungs.sides(mid)
    air = phantom.volume[mid] < -320
    for value, lung in zip((1, 2), phantom.lung_sides):
        assert (sides[lung[mid] & air] == value).mean() >= 0.95
