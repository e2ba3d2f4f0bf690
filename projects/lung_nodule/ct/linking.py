"""3D nodules from per-slice instance masks: link the detections of neighbouring slices.

A slice detector (Mask R-CNN on axial slices) sees a nodule as one instance mask on each
slice it cuts. :func:`link_detections` joins them into 3D nodules by walking the slices
in z order and matching, one to one, the masks of a slice to the nodules still open (seen
on the slice before, or on the one before that, see *Gap*); a mask that matches none
starts a new nodule:

* **Overlap**: a mask may continue a nodule when the intersection covers at least
  :data:`MIN_OVERLAP` of the smaller of the two masks (overlap over the smaller, not IoU:
  towards a nodule's poles the cross-section shrinks fast, and the small cap inside a
  large neighbour has a low IoU but lies wholly inside it). 0.3 keeps a nodule that
  drifts between slices (a disc of radius 5 px moved by 3 px still covers 0.6 of
  itself) and separates neighbours (disjoint masks: 0). Among admissible pairs the
  matching is one to one and maximises the summed IoU (Hungarian algorithm), so a large
  mask continues the large cross-section, not a small false positive lying inside it.
* **Gap**: a nodule may miss at most :data:`MAX_GAP` (= 1) slice: the masks of slice
  ``z`` are matched, in one assignment, to the nodules last seen on ``z - 1`` or
  ``z - 2`` (the detector misses a faint slice now and then; after two missed slices in
  a row a mask more likely belongs to another object, e.g. a vessel crossing the same
  spot). A missed slice stays empty in the nodule (not interpolated): its masks and the
  label volume hold what was detected.
* **Two nodules touching on one slice** give two instance masks there, each overlapping
  its own nodule's mask on the neighbouring slices; one-to-one matching keeps them two
  nodules. When the detector merges them into one mask on the touching slice, that mask
  continues one of them, and the other (now one slice behind) is matched again where
  they separate, thanks to the gap rule and the joint assignment.
* **Duplicates on one slice**: when two masks of the same slice overlap by at least
  :data:`DUPLICATE_OVERLAP` of the smaller one, they are one object seen twice (mask
  duplicates survive mmdet's box NMS); the higher-scoring mask is kept.
* **A foreign mask inside a nodule**: with overlap over the smaller, a large mask of
  another structure (the diaphragm's dome, the mediastinum) that contains the nodule's
  small cross-section on one slice continues the nodule, and its long axis becomes the
  nodule's (a 10 mm nodule measured 26 mm). A convex body's cross-sections cannot do
  this: the square root of their area is a concave function of z (Brunn-Minkowski), so
  a slice's equivalent radius ``sqrt(area / pi)`` is at most the continuation of the
  chord through the two slices on either side (a concave function lies below the
  continuation of any of its chords, so each side's bound holds alone and the smaller
  one counts). A mask is detached into a nodule of its own when its equivalent radius
  is more than :data:`SPIKE_FACTOR` (= 2) times that bound, or its neighbours' radii
  where one is larger, and exceeds it by more than
  :data:`SPIKE_MIN_PIXELS` (= 2) pixels: four times the area, and more than the pixel or
  two of radius by which a detector's ragged edge errs (at a nodule's tiny polar cap
  that error alone can double a radius). A mask with two slices of the nodule on one
  side only (its first or second slice, its last or last but one) is judged by that
  side; one with two on neither side is left alone: a 3-slice small nodule (tiny cap,
  large centre, tiny cap) is what thick slices give.
* **A foreign structure over a few slices**: a nodule against the mediastinum, whose
  masks take in the mediastinum's bulge on two or three slices in a row, escapes the
  one-slice rule (each of those masks has a large neighbour). So a run of up to
  :data:`MAX_FOREIGN_RUN` (= 3) consecutive masks is judged as one: each of its masks
  against the chords and the neighbours *outside* the run, and it is detached (as one
  nodule of its own) when every mask of it exceeds its bound by more than
  :data:`RUN_FACTOR` (= 1.5) times and :data:`SPIKE_MIN_PIXELS`. The factor is lower
  than a single mask's: a detector's ragged edge errs on one slice, not on several in a
  row by the same margin (ellipsoids flattened or stretched in z, with 20 % of radius
  error on every slice, lose no run at 1.5; at 1.2 some do).
* A one-slice detection that continues nothing stays a (one-slice) nodule: the caller
  filters on slice count or probability.

A nodule's probability is :func:`nodule_probability`: the mean of its ``TOP_K`` (= 3)
highest slice scores (of all of them when it has fewer slices).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np

__all__ = ['DUPLICATE_OVERLAP', 'LinkedNodule', 'MAX_FOREIGN_RUN', 'MAX_GAP', 'MIN_OVERLAP',
           'RUN_FACTOR', 'SPIKE_FACTOR', 'SPIKE_MIN_PIXELS', 'SliceDetections', 'TOP_K',
           'link_detections', 'linked_to_label_volume', 'nodule_probability']

MIN_OVERLAP = 0.3
DUPLICATE_OVERLAP = 0.5
MAX_GAP = 1
TOP_K = 3
SPIKE_FACTOR = 2.0
SPIKE_MIN_PIXELS = 2.0
MAX_FOREIGN_RUN = 3
RUN_FACTOR = 1.5


@dataclass(frozen=True)
class SliceDetections:
    """The instance masks a detector found on one axial slice.

    Args:
        z_index: Array z index of the slice.
        masks: bool ``(n, y, x)``, one full-slice mask per detection (``n`` may be 0).
        scores: float ``(n,)`` in ``[0, 1]``, the detector's score of each mask.
    """

    z_index: int
    masks: np.ndarray
    scores: np.ndarray

    def __post_init__(self) -> None:
        masks = np.asarray(self.masks)
        scores = np.asarray(self.scores, dtype=np.float64).reshape(-1)
        if masks.ndim != 3:
            raise ValueError(f'slice {self.z_index}: masks must be (n, y, x), got shape '
                             f'{masks.shape}')
        if masks.dtype != bool:
            masks = masks.astype(bool)
        if len(scores) != len(masks):
            raise ValueError(f'slice {self.z_index}: {len(masks)} masks but {len(scores)} '
                             f'scores')
        if not np.all(np.isfinite(scores)) or np.any((scores < 0) | (scores > 1)):
            raise ValueError(f'slice {self.z_index}: scores must be in [0, 1], got '
                             f'{scores.tolist()}')
        object.__setattr__(self, 'z_index', int(self.z_index))
        object.__setattr__(self, 'masks', masks)
        object.__setattr__(self, 'scores', scores)


@dataclass(frozen=True)
class LinkedNodule:
    """One 3D nodule: its mask and score on each slice it was detected on.

    Attributes:
        slices: Array z index -> bool ``(y, x)`` mask, in increasing z (a slice bridged
            by the gap rule is absent).
        scores: Array z index -> the detector's score on that slice.
        probability: :func:`nodule_probability` of the scores.
    """

    slices: dict[int, np.ndarray]
    scores: dict[int, float]
    probability: float

    @property
    def slice_first(self) -> int:
        """First z index with a mask."""
        return next(iter(self.slices))

    @property
    def slice_last(self) -> int:
        """Last z index with a mask."""
        return next(reversed(self.slices))

    @property
    def num_slices(self) -> int:
        """Number of slices with a mask."""
        return len(self.slices)


def nodule_probability(scores: Iterable[float], top_k: int = TOP_K) -> float:
    """A nodule's probability: the mean of its ``top_k`` highest slice scores.

    Why this function: the maximum lets one spiking slice of a long vessel track decide;
    the mean over all slices punishes large nodules for their weak polar caps; a
    noisy-OR grows with the number of slices, so long tracks of weak scores (vessels)
    would outrank nodules. The mean of the three best slices asks for agreement over the
    nodule's core (a 5 mm nodule at 1.25 mm slices has about 3 core slices), and a nodule
    seen on fewer slices (small, or thick 5 mm slices) gets the mean of what it has, so
    it is not marked down for the slice thickness.

    Args:
        scores: The slice scores (at least one).
        top_k: How many of the best scores are averaged.
    """
    values = sorted((float(s) for s in scores), reverse=True)
    if not values:
        raise ValueError('a nodule needs at least one slice score')
    best = values[:top_k]
    return sum(best) / len(best)


@dataclass
class _Instance:
    """One detection with its area and bounding box (for fast overlaps)."""

    z: int
    mask: np.ndarray
    score: float
    area: int
    box: tuple[int, int, int, int]  # row0, row1, col0, col1 (exclusive ends)


@dataclass
class _Track:
    instances: list[_Instance] = field(default_factory=list)

    @property
    def last(self) -> _Instance:
        return self.instances[-1]


def _instance(z: int, mask: np.ndarray, score: float) -> _Instance | None:
    rows = np.flatnonzero(mask.any(axis=1))
    if len(rows) == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    box = (int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1)
    area = int(np.count_nonzero(mask[box[0]:box[1], box[2]:box[3]]))
    return _Instance(z, mask, float(score), area, box)


def _overlap(a: _Instance, b: _Instance) -> tuple[float, float]:
    """(intersection over the smaller mask, IoU) of two instances."""
    r0, r1 = max(a.box[0], b.box[0]), min(a.box[1], b.box[1])
    c0, c1 = max(a.box[2], b.box[2]), min(a.box[3], b.box[3])
    if r0 >= r1 or c0 >= c1:
        return 0.0, 0.0
    inter = int(np.count_nonzero(a.mask[r0:r1, c0:c1] & b.mask[r0:r1, c0:c1]))
    return inter / min(a.area, b.area), inter / (a.area + b.area - inter)


def _slice_instances(z: int, groups: Sequence[SliceDetections],
                     duplicate_overlap: float) -> list[_Instance]:
    """Non-empty detections of one slice, best first, duplicates removed."""
    candidates = []
    for group in groups:
        for mask, score in zip(group.masks, group.scores):
            inst = _instance(z, mask, score)
            if inst is not None:
                candidates.append(inst)
    candidates.sort(key=lambda inst: -inst.score)
    kept: list[_Instance] = []
    for inst in candidates:
        if all(_overlap(inst, other)[0] < duplicate_overlap for other in kept):
            kept.append(inst)
    return kept


def _match(tracks: Sequence[_Track], instances: Sequence[_Instance],
           min_overlap: float) -> list[tuple[int, int]]:
    """One-to-one (track, instance) pairs with admissible overlap, maximal summed IoU."""
    if not tracks or not instances:
        return []
    weight = np.zeros((len(tracks), len(instances)))
    for t, track in enumerate(tracks):
        for i, inst in enumerate(instances):
            over_smaller, iou = _overlap(track.last, inst)
            if over_smaller >= min_overlap:
                weight[t, i] = iou
    # Imported here: scipy.optimize takes ~0.5 s to import, which every converter's
    # start-up would pay through projects.lung_nodule.ct.
    from scipy.optimize import linear_sum_assignment
    rows, cols = linear_sum_assignment(weight, maximize=True)
    return [(int(t), int(i)) for t, i in zip(rows, cols) if weight[t, i] > 0]


def _run_excess(track: _Track, first: int, last: int) -> tuple[float, float]:
    """Instances ``first..last`` (a run) against the concave bound from outside the run
    (module docstring): the least, over the run, of how many times its bound a mask's
    equivalent radius is and of by how many pixels it exceeds it; ``(0, 0)`` when the
    run has two instances on neither side."""
    inst = track.instances

    def radius(k: int) -> float:
        return math.sqrt(inst[k].area / math.pi)

    def extrapolated(near: int, far: int, k: int) -> float:
        """The chord through ``far`` and ``near`` continued to ``k``."""
        return radius(near) + (radius(near) - radius(far)) * (
            (inst[k].z - inst[near].z) / (inst[near].z - inst[far].z))

    left, right = first >= 2, last <= len(inst) - 3
    if not (left or right):
        return 0.0, 0.0
    neighbours = [radius(k) for k in (first - 1, last + 1) if 0 <= k < len(inst)]
    times, pixels = math.inf, math.inf
    for k in range(first, last + 1):
        chords = ([extrapolated(first - 1, first - 2, k)] if left else []) + (
            [extrapolated(last + 1, last + 2, k)] if right else [])
        bound = max([min(chords)] + neighbours)
        times, pixels = min(times, radius(k) / bound), min(pixels, radius(k) - bound)
    return times, pixels


def _detach_foreign(track: _Track, spike_factor: float, run_factor: float) -> list[_Track]:
    """The track without its foreign masks, then each foreign run as a track of its own."""
    detached = []
    while len(track.instances) >= 3:
        worst, worst_run = 1.0, None
        for length in range(1, min(MAX_FOREIGN_RUN, len(track.instances) - 2) + 1):
            factor = spike_factor if length == 1 else run_factor
            for first in range(len(track.instances) - length + 1):
                times, pixels = _run_excess(track, first, first + length - 1)
                if pixels > SPIKE_MIN_PIXELS and times / factor > worst:
                    worst, worst_run = times / factor, (first, first + length)
        if worst_run is None:
            break
        begin, end = worst_run
        detached.append(_Track(track.instances[begin:end]))
        del track.instances[begin:end]
    return [track] + detached


def link_detections(detections: Sequence[SliceDetections], shape_zyx: Sequence[int],
                    min_overlap: float = MIN_OVERLAP, max_gap: int = MAX_GAP,
                    duplicate_overlap: float = DUPLICATE_OVERLAP,
                    spike_factor: float | None = SPIKE_FACTOR,
                    run_factor: float = RUN_FACTOR) -> list[LinkedNodule]:
    """Link per-slice instance masks into 3D nodules (rules in the module docstring).

    Args:
        detections: One entry per processed slice, in any order (several entries for
            one slice are joined). Masks are kept by reference, not copied.
        shape_zyx: The volume's shape; every mask must be ``shape_zyx[1:]`` and every
            ``z_index`` inside ``[0, shape_zyx[0])``.
        min_overlap: Least intersection over the smaller mask for a mask to continue a
            nodule of the slice before (or two slices before, see ``max_gap``).
        max_gap: Most slices a nodule may miss between two of its masks.
        duplicate_overlap: Two masks of one slice overlapping by at least this fraction
            of the smaller are one object; the lower-scoring one is dropped.
        spike_factor: A mask whose equivalent radius exceeds the concave bound of its
            nodule by more than this factor (and by more than
            :data:`SPIKE_MIN_PIXELS`) is detached (module docstring); ``None`` keeps
            every link.
        run_factor: The same for a run of 2 to :data:`MAX_FOREIGN_RUN` consecutive
            masks, every one of which must exceed its bound by this factor.

    Returns:
        The nodules, by decreasing probability (ties: lower first slice first).

    Raises:
        ValueError: A mask of the wrong shape or a slice index outside the volume.
    """
    depth, height, width = (int(v) for v in shape_zyx)
    by_slice: dict[int, list[SliceDetections]] = {}
    for group in detections:
        if not 0 <= group.z_index < depth:
            raise ValueError(f'slice {group.z_index} is outside the volume of {depth} slices')
        if group.masks.shape[1:] != (height, width):
            raise ValueError(f'slice {group.z_index}: masks are {group.masks.shape[1:]} '
                             f'(y, x), the volume\'s slices {(height, width)}')
        by_slice.setdefault(group.z_index, []).append(group)

    tracks: list[_Track] = []
    for z in sorted(by_slice):
        instances = _slice_instances(z, by_slice[z], duplicate_overlap)
        # One matching over every nodule still open (last seen up to max_gap slices
        # before), so that two nodules merged into one mask on a slice are both picked
        # up again where they separate.
        open_tracks = [t for t in tracks if z - 1 - max_gap <= t.last.z < z]
        pairs = _match(open_tracks, instances, min_overlap)
        for t, i in pairs:
            open_tracks[t].instances.append(instances[i])
        taken = {i for _, i in pairs}
        tracks.extend(_Track([inst]) for i, inst in enumerate(instances) if i not in taken)
    if spike_factor is not None:
        tracks = [part for track in tracks
                  for part in _detach_foreign(track, spike_factor, run_factor)]

    nodules = [
        LinkedNodule(slices={inst.z: inst.mask for inst in track.instances},
                     scores={inst.z: inst.score for inst in track.instances},
                     probability=nodule_probability(inst.score for inst in track.instances))
        for track in tracks]
    nodules.sort(key=lambda n: (-n.probability, n.slice_first))
    return nodules


def linked_to_label_volume(nodules: Sequence[LinkedNodule],
                           shape_zyx: Sequence[int]) -> np.ndarray:
    """Paint linked nodules into a label volume: value ``k`` = the ``k``-th nodule (1-based).

    Where two nodules' masks overlap, the pixel goes to the one given first (the more
    probable one, in :func:`link_detections`' order).

    Args:
        nodules: The nodules, in the order that defines their labels.
        shape_zyx: The volume's shape.

    Returns:
        ``uint16`` array ``(z, y, x)`` (``int32`` beyond 65535 nodules), 0 = background.
    """
    shape = tuple(int(v) for v in shape_zyx)
    dtype = np.uint16 if len(nodules) <= np.iinfo(np.uint16).max else np.int32
    labels = np.zeros(shape, dtype=dtype)
    for value, nodule in enumerate(nodules, start=1):
        for z, mask in nodule.slices.items():
            if not 0 <= z < shape[0] or mask.shape != shape[1:]:
                raise ValueError(f'nodule {value}: mask of slice {z} with shape {mask.shape} '
                                 f'does not fit the volume {shape}')
            rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
            if len(rows) == 0:
                continue
            box = np.s_[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]  # paint the box only
            patch = labels[z][box]
            patch[mask[box] & (patch == 0)] = value
    return labels
