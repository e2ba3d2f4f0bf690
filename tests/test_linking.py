"""3D linking of per-slice instance masks (projects.lung_nodule.ct.linking).

Acceptance: on crafted per-slice masks (a stub stands in for the network), a nodule over
9 slices, two nodules that touch on one slice and a one-slice false positive give one
nodule per true nodule; a nodule missing one slice stays one nodule.
"""
import math

import numpy as np
import pytest

from projects.lung_nodule.ct import (LinkedNodule, ScanGeometry, SliceDetections,
                                     link_detections, linked_to_label_volume,
                                     measure_label_volume, nodule_probability)

SHAPE = (24, 64, 64)


def disc(cy: float, cx: float, radius: float, shape=SHAPE[1:]) -> np.ndarray:
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= radius ** 2


def sphere_slices(cy: float, cx: float, cz: float, radius: float, px_per_slice: float
                  ) -> dict[int, np.ndarray]:
    """The non-empty disc cross-sections of a sphere (radius in pixels)."""
    out = {}
    for z in range(SHAPE[0]):
        left = radius ** 2 - ((z - cz) * px_per_slice) ** 2
        if left > 0 and disc(cy, cx, math.sqrt(left)).any():
            out[z] = disc(cy, cx, math.sqrt(left))
    return out


def stub_detector(*objects: dict[int, np.ndarray], scores: dict[int, float] | None = None
                  ) -> list[SliceDetections]:
    """What a slice detector would return for these objects' masks: one entry per slice."""
    by_slice: dict[int, list[np.ndarray]] = {}
    for obj in objects:
        for z, mask in obj.items():
            by_slice.setdefault(z, []).append(mask)
    out = []
    for z, masks in sorted(by_slice.items()):
        score = (scores or {}).get(z, 0.9)
        out.append(SliceDetections(z, np.stack(masks), np.full(len(masks), score)))
    return out


def same_masks(nodule: LinkedNodule, obj: dict[int, np.ndarray]) -> bool:
    return (list(nodule.slices) == sorted(obj)
            and all(np.array_equal(nodule.slices[z], obj[z]) for z in obj))


def test_a_nodule_on_nine_slices_is_one_nodule():
    nodule = {z: disc(30 + 0.3 * z, 30, r)
              for z, r in zip(range(6, 15), (2, 3, 4, 5, 6, 5, 4, 3, 2))}
    scores = dict(zip(range(6, 15), (0.3, 0.5, 0.7, 0.95, 0.9, 0.85, 0.6, 0.4, 0.2)))
    (linked,) = link_detections(stub_detector(nodule, scores=scores), SHAPE)
    assert same_masks(linked, nodule)
    assert (linked.slice_first, linked.slice_last, linked.num_slices) == (6, 14, 9)
    assert linked.scores == pytest.approx(scores)
    assert linked.probability == pytest.approx((0.95 + 0.9 + 0.85) / 3)


def touching_pair() -> tuple[dict[int, np.ndarray], dict[int, np.ndarray], int]:
    """Two spheres side by side whose cross-sections meet on exactly one slice."""
    a = sphere_slices(32, 20, cz=8, radius=7, px_per_slice=1.75)
    b = sphere_slices(32, 32, cz=12, radius=7, px_per_slice=1.75)
    meeting = [z for z in set(a) & set(b)
               if (a[z] & b[z]).any() or (np.roll(a[z], 1, axis=1) & b[z]).any()]
    assert len(meeting) == 1 and len(set(a) & set(b)) >= 3  # the case is what it claims
    return a, b, meeting[0]


def test_two_nodules_touching_on_one_slice_stay_two():
    a, b, _ = touching_pair()
    linked = link_detections(stub_detector(a, b), SHAPE)
    assert len(linked) == 2
    by_start = sorted(linked, key=lambda n: n.slice_first)
    assert same_masks(by_start[0], a) and same_masks(by_start[1], b)


def test_two_nodules_merged_into_one_mask_on_the_touching_slice_stay_two():
    a, b, meeting = touching_pair()
    merged = a[meeting] | b[meeting]
    a_rest = {z: m for z, m in a.items() if z != meeting}
    b_rest = {z: m for z, m in b.items() if z != meeting}
    linked = link_detections(stub_detector(a_rest, b_rest, {meeting: merged}), SHAPE)
    assert len(linked) == 2
    first, second = sorted(linked, key=lambda n: n.slice_first)
    # each keeps all its own masks; the merged mask went to one of them only
    assert all(np.array_equal(first.slices[z], a[z]) for z in a_rest)
    assert all(np.array_equal(second.slices[z], b[z]) for z in b_rest)
    owners = [n for n in (first, second) if meeting in n.slices]
    assert len(owners) == 1 and np.array_equal(owners[0].slices[meeting], merged)


def test_a_one_slice_false_positive_stays_one_small_nodule():
    nodule = sphere_slices(20, 20, cz=10, radius=6, px_per_slice=1.5)
    false_positive = {10: disc(50, 50, 2)}
    detections = stub_detector(nodule, false_positive, scores={10: 0.8})
    linked = link_detections(detections, SHAPE)
    assert len(linked) == 2
    (fp,) = [n for n in linked if n.num_slices == 1]
    (real,) = [n for n in linked if n.num_slices > 1]
    assert same_masks(fp, false_positive) and same_masks(real, nodule)
    assert fp.probability == pytest.approx(0.8)


def test_one_missing_slice_is_bridged_two_are_not():
    nodule = {z: disc(30, 30, 5) for z in range(6, 15)}
    one_gap = {z: m for z, m in nodule.items() if z != 10}
    (linked,) = link_detections(stub_detector(one_gap), SHAPE)
    assert list(linked.slices) == [6, 7, 8, 9, 11, 12, 13, 14]

    two_gaps = {z: m for z, m in nodule.items() if z not in (10, 11)}
    linked = sorted(link_detections(stub_detector(two_gaps), SHAPE), key=lambda n: n.slice_first)
    assert [list(n.slices) for n in linked] == [[6, 7, 8, 9], [12, 13, 14]]


def test_masks_that_do_not_overlap_enough_start_a_new_nodule():
    # the same size, shifted by 8 px on 5 px radius: overlap over the smaller < 0.3
    shifted = {6: disc(30, 30, 5), 7: disc(30, 38, 5)}
    assert len(link_detections(stub_detector(shifted), SHAPE)) == 2
    drifting = {6: disc(30, 30, 5), 7: disc(30, 33, 5)}  # drifts 3 px: the same nodule
    assert len(link_detections(stub_detector(drifting), SHAPE)) == 1


def test_a_duplicate_mask_on_one_slice_is_dropped_for_the_better_one():
    nodule = {z: disc(30, 30, 5) for z in range(6, 11)}
    duplicate = disc(30, 31, 4)
    detections = stub_detector(nodule)
    detections.append(SliceDetections(8, duplicate[None], np.array([0.4])))
    (linked,) = link_detections(detections, SHAPE)
    assert same_masks(linked, nodule)
    assert linked.scores[8] == pytest.approx(0.9)


def test_result_does_not_depend_on_the_order_or_grouping_of_detections():
    a, b, _ = touching_pair()
    fp = {3: disc(55, 55, 2)}
    reference = link_detections(stub_detector(a, b, fp), SHAPE)
    split = []
    for group in stub_detector(a, b, fp)[::-1]:  # reversed, one SliceDetections per mask
        split += [SliceDetections(group.z_index, m[None], s[None])
                  for m, s in zip(group.masks, group.scores)]
    again = link_detections(split, SHAPE)
    assert [(list(n.slices), n.probability) for n in again] == \
        [(list(n.slices), n.probability) for n in reference]


def test_nodule_probability_is_the_mean_of_the_three_best_slices():
    assert nodule_probability([0.2, 0.9, 0.5, 0.7, 0.1]) == pytest.approx((0.9 + 0.7 + 0.5) / 3)
    assert nodule_probability([0.6, 0.8]) == pytest.approx(0.7)
    assert nodule_probability([0.35]) == pytest.approx(0.35)
    with pytest.raises(ValueError):
        nodule_probability([])


def test_nodules_come_most_probable_first_and_paint_a_label_volume():
    a, b, meeting = touching_pair()
    scores = {z: (0.5 if z < 11 else 0.95) for z in range(SHAPE[0])}
    linked = link_detections(stub_detector(a, b, scores=scores), SHAPE)
    assert linked[0].probability > linked[1].probability
    assert linked[0].slice_first > linked[1].slice_first  # b (later slices) scores higher
    labels = linked_to_label_volume(linked, SHAPE)
    assert labels.dtype == np.uint16 and labels.shape == SHAPE
    assert np.array_equal(labels == 1, np.stack([b.get(z, np.zeros(SHAPE[1:], bool))
                                                 for z in range(SHAPE[0])]))
    a_volume = np.stack([a.get(z, np.zeros(SHAPE[1:], bool)) for z in range(SHAPE[0])])
    overlap = a_volume & (labels == 1)
    assert np.array_equal(labels == 2, a_volume & ~overlap)  # shared pixels: first wins
    assert np.count_nonzero(overlap) == np.count_nonzero(a[meeting] & b[meeting])


def test_linked_sphere_measures_at_its_true_place_and_size():
    """Linking + label volume + measurement, as whole-scan inference chains them."""
    spacing = (0.7, 0.7, 1.25)
    geometry = ScanGeometry((SHAPE[2], SHAPE[1], SHAPE[0]), spacing, (-100.0, 50.0, 200.0),
                            (-1, 0, 0, 0, -1, 0, 0, 0, 1))
    radius_px = 9.0  # 6.3 mm
    nodule = sphere_slices(31.3, 28.6, cz=11.0, radius=radius_px,
                           px_per_slice=spacing[2] / spacing[0])
    linked = link_detections(stub_detector(nodule), SHAPE)
    (m,) = measure_label_volume(linked_to_label_volume(linked, SHAPE), geometry)
    true_centre = geometry.index_to_world((28.6, 31.3, 11.0))
    assert np.all(np.abs(np.array(m.centre_xyz) - true_centre) <= np.array(spacing) / 2)
    assert m.long_axis_mm == pytest.approx(2 * radius_px * spacing[0], abs=1.0)
    assert m.nodule_id == 1 and (m.slice_first, m.slice_last) == (min(nodule), max(nodule))


@pytest.mark.parametrize('where', ['first', 'second', 'inside', 'last but one', 'last'])
def test_a_large_foreign_mask_containing_the_nodule_is_detached(where):
    """The diaphragm's dome detected on one slice contains a nodule's cross-section:
    it is not the nodule's, so the nodule keeps its true long axis. Also on the
    nodule's first and last two slices, judged by the side that has two slices."""
    spacing = (0.7, 0.7, 1.0)
    geometry = ScanGeometry((SHAPE[2], SHAPE[1], SHAPE[0]), spacing, (0.0, 0.0, 0.0),
                            (1, 0, 0, 0, 1, 0, 0, 0, 1))
    nodule = sphere_slices(32, 32, cz=12.0, radius=7.0, px_per_slice=spacing[2] / spacing[0])
    zs = sorted(nodule)
    z = {'first': zs[0], 'second': zs[1], 'inside': 10, 'last but one': zs[-2],
         'last': zs[-1]}[where]
    dome = {z: disc(38, 30, 17)}  # holds the nodule's section there, 7x its largest area
    assert np.all(dome[z] >= nodule[z])
    detections = stub_detector({**nodule, **dome}, scores={z: 0.95})
    linked = link_detections(detections, SHAPE)
    assert len(linked) == 2
    (kept,) = [n for n in linked if n.num_slices > 1]
    (alone,) = [n for n in linked if n.num_slices == 1]
    assert np.array_equal(alone.slices[z], dome[z])
    assert sorted(kept.slices) == [k for k in zs if k != z]
    measured = measure_label_volume(linked_to_label_volume([kept], SHAPE), geometry)
    assert measured[0].long_axis_mm == pytest.approx(14 * spacing[0], abs=1.0)
    # without the rule the dome's 24 mm become the nodule's long axis
    (joined,) = link_detections(detections, SHAPE, spike_factor=None)
    joined_axis = measure_label_volume(linked_to_label_volume([joined], SHAPE), geometry)
    assert joined_axis[0].long_axis_mm > 20


@pytest.mark.parametrize('first', [6, 8, 13])
def test_a_structure_taken_in_on_three_slices_is_detached(first):
    """A nodule against the mediastinum: on three slices in a row its masks take in the
    mediastinum's bulge (each a large neighbour of the next, so the one-slice rule
    cannot see it). The run goes as one nodule of its own; the nodule keeps its size."""
    spacing = (0.7, 0.7, 0.7)
    geometry = ScanGeometry((SHAPE[2], SHAPE[1], SHAPE[0]), spacing, (0.0, 0.0, 0.0),
                            (1, 0, 0, 0, 1, 0, 0, 0, 1))
    nodule = sphere_slices(32, 32, cz=11.0, radius=7.0, px_per_slice=1.0)
    run = range(first, first + 3)
    bulge = {z: nodule[z] | disc(32, 22, 11) for z in run}  # 2.2-4.5x the nodule's area
    (kept, alone) = link_detections(stub_detector({**nodule, **bulge}), SHAPE)
    assert sorted(alone.slices) == list(run)
    assert sorted(kept.slices) == [z for z in sorted(nodule) if z not in run]
    measured = measure_label_volume(linked_to_label_volume([kept], SHAPE), geometry)
    assert measured[0].long_axis_mm == pytest.approx(14 * spacing[0], abs=1.0)
    # the one-slice rule alone keeps the bulge, whose ~22 mm become the long axis
    (joined,) = link_detections(stub_detector({**nodule, **bulge}), SHAPE, run_factor=math.inf)
    joined_axis = measure_label_volume(linked_to_label_volume([joined], SHAPE), geometry)
    assert joined_axis[0].long_axis_mm > 18


def test_a_three_slice_nodule_is_never_judged():
    """Tiny cap, large centre, tiny cap (a small nodule at thick slices): the centre has
    one slice on each side, no chord to continue, so it stays with its caps."""
    caps_and_centre = {5: disc(32, 32, 1.0), 6: disc(32, 32, 6.0), 7: disc(32, 32, 1.0)}
    (nodule,) = link_detections(stub_detector(caps_and_centre), SHAPE)
    assert same_masks(nodule, caps_and_centre)


@pytest.mark.parametrize('px_per_slice', [0.5, 1.0, 1.8, 3.5])
def test_the_foreign_mask_rule_never_splits_a_real_sphere(px_per_slice):
    """Spheres of 2-12 px radius, at thin to thick slices, with a pixel of mask noise
    (a detector's ragged edge: radius and centre off by up to 1 px) on every slice: the
    rule detaches nothing (the tiniest, noisiest ones may fall apart by overlap alone)."""
    rng = np.random.default_rng(0)
    whole = 0
    for radius in (2.0, 3.0, 5.0, 8.0, 12.0):
        for _ in range(5):
            nodule = sphere_slices(32, 32, cz=11.3, radius=radius, px_per_slice=px_per_slice)
            ragged = {}
            for z, mask in nodule.items():
                r = math.sqrt(mask.sum() / math.pi) + rng.uniform(-1.0, 1.0)
                ragged[z] = disc(32 + rng.uniform(-1, 1), 32 + rng.uniform(-1, 1), max(r, 0.8))
            with_rule = link_detections(stub_detector(ragged), SHAPE)
            without = link_detections(stub_detector(ragged), SHAPE, spike_factor=None)
            assert [n.slices.keys() for n in with_rule] == [n.slices.keys() for n in without]
            whole += len(with_rule) == 1
    assert whole >= 20  # of 25: most are one nodule, so the comparison above means something


@pytest.mark.parametrize('px_per_slice', [0.5, 1.0, 1.8, 3.5])
def test_the_run_rule_never_splits_an_irregular_ellipsoid(px_per_slice):
    """Ellipsoids flattened or stretched in z (0.6-1.6), 3-12 px, whose masks err by up
    to 20 % of their radius and 1 px on every slice: no run of masks is detached. (At a
    run factor of 1.2 instead of 1.5 some are.)"""
    rng = np.random.default_rng(0)
    for radius in (3.0, 5.0, 8.0, 12.0):
        for stretch in (0.6, 1.0, 1.6):
            for _ in range(5):
                ragged = {}
                for z in range(SHAPE[0]):
                    left = radius ** 2 - ((z - 11.3) * px_per_slice / stretch) ** 2
                    if left <= 0:
                        continue
                    r = math.sqrt(left) * rng.uniform(0.8, 1.2) + rng.uniform(-1, 1)
                    mask = disc(32 + rng.uniform(-1, 1), 32 + rng.uniform(-1, 1), max(r, 0.8))
                    if mask.any():
                        ragged[z] = mask
                with_rule = link_detections(stub_detector(ragged), SHAPE)
                without = link_detections(stub_detector(ragged), SHAPE, spike_factor=None)
                assert [n.slices.keys() for n in with_rule] == [n.slices.keys() for n in without]


def test_bad_detections_are_refused_naming_the_slice():
    good = disc(10, 10, 3)[None]
    with pytest.raises(ValueError, match='slice 5: 1 masks but 2 scores'):
        SliceDetections(5, good, np.array([0.5, 0.6]))
    with pytest.raises(ValueError, match='slice 5: scores must be in'):
        SliceDetections(5, good, np.array([1.5]))
    with pytest.raises(ValueError, match='slice 7: masks are'):
        link_detections([SliceDetections(7, np.zeros((1, 10, 10), bool), [0.5])], SHAPE)
    with pytest.raises(ValueError, match='slice 30 is outside'):
        link_detections([SliceDetections(30, good, [0.5])], SHAPE)
    empty = SliceDetections(4, np.zeros((0, *SHAPE[1:]), bool), np.zeros(0))
    assert link_detections([empty, SliceDetections(5, np.zeros((1, *SHAPE[1:]), bool), [0.9])],
                           SHAPE) == []
