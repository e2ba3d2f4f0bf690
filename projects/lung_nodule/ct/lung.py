"""Lung segmentation by threshold + morphology + a convex hull per lung, shared by data
preparation and whole-scan inference (so that training and inference slices are masked
alike).

Method (hybrid: 3D to decide *which* air is lung and which lung it is, 2D to draw the
lung *shape*):

1. **3D, coarse** (in-plane stride so that voxels are about ``coarse_mm`` wide): voxels
   below ``threshold_hu`` are air; air connected to the volume's side faces is outside
   the body. That includes the padding outside the scanner's circular field of view
   (-2000 or -3024 HU, below any threshold) and the air ring around the body. Of the
   remaining 3D components the two largest are kept (the lungs; they may be one
   component when joined through the trachea), and a second one only when it is at least
   ``min_component_fraction`` of the largest: that drops bowel gas and other small air
   pockets, which a single slice cannot tell from a lung base.
2. **3D, left/right** (on a grid of about ``split_mm``, each cell lung when any of its
   coarse voxels is): the lungs are eroded until they fall apart into two parts of
   comparable size (the larger at most ``split_size_ratio`` times the smaller; at least
   ``min_split_erosion_mm`` deep, so that the trachea and main bronchi, thinner than
   that, are gone from both parts), as in the preprocessing of the winning team of the
   Data Science Bowl 2017. The two parts then grow back inside the lungs, one cell at a
   time each, competing, for as many cells as were eroded plus two. Cells they do not
   reach are airway (trachea, bronchi outside the lungs) or thin lung tips. Lungs that
   the threshold joins (through the trachea, or at the anterior junction where the
   pleurae touch) are thus split where they are thinnest. Both 3D steps take well under
   a second for 512x512x300 and are done once per scan.
3. **2D, full resolution**, only on the slices asked for: the air components of the
   slice that overlap the coarse lungs. Each one goes to the lung (side) that most of
   its pixels belong to in step 2; a component that both sides claim (lungs touching
   on this slice) is cut between them, each pixel to the nearer side; a component that
   neither claims (trachea, bronchi, a lung tip) is kept as it is, without a hull. Then,
   for each lung separately: a closing of radius ``closing_mm`` (by Euclidean distance
   transforms, in mm), hole filling (vessels and nodules inside the lung), and the
   **convex hull** of the lung without its thin parts (opening of ``airway_opening_mm``)
   that face the mediastinum, such as a bronchus joined to it. Each concavity of the
   hull ("pocket": a connected part of hull minus lung) is taken in when it is at most
   ``max_pocket_mm2`` (``max_medial_pocket_mm2`` when it faces the mediastinum) and at
   most ``max_pocket_fraction`` of the lung's area on the slice, and does not reach the
   other lung. A nodule or mass that indents the lung from the chest wall, the
   mediastinum or the heart takes the place of lung inside the lung's outline, so it
   lies in such a pocket; the large concavity that the heart makes in the left lung
   exceeds the limits and stays out (a nodule on the heart is then kept by the
   closing, up to about ``closing_mm`` in radius). A mass that replaces the outermost
   lung on a slice leaves the hull's chord inside the lung's convex outline by its
   sagitta, so the pockets on the chest-wall side are extended outwards by it (see
   ``outline_radius_mm``). Hull and closing are per lung, so they never bridge the
   mediastinum. Last, a dilation of ``dilation_mm`` (the pleural surface inside the
   mask), restricted to the body (nothing outside the chest is added). Being per slice,
   the cost is proportional to the slices needed (3 per nodule for the COCO export)
   rather than to the volume.

Hole filling also takes in the top of the diaphragm dome where a slice shows one lung
all around it; that is harmless for restricting detection to the lung region, which is
what the mask is for.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Iterable, Sequence

import cv2
import numpy as np
from scipy import ndimage

__all__ = ['LungMask', 'LungMaskParams', 'segment_lungs']

_CROSS_3D = ndimage.generate_binary_structure(3, 1)
# A 2D component goes to a side when at least this fraction of its pixels lie in cells
# of the 3D left/right labelling, and is cut between the sides when the smaller side
# holds at least _JOINED_FRACTION of those pixels.
_CLAIMED_FRACTION = 0.5
_JOINED_FRACTION = 0.1


@dataclass(frozen=True)
class LungMaskParams:
    """Parameters of :class:`LungMask` (defaults suit LUNA16 chest CT).

    Args:
        threshold_hu: Air/lung below, tissue above. -320 HU sits between lung parenchyma
            (about -850) and soft tissue (0..60); ground-glass nodules (about -600) fall
            on the lung side, solid ones are restored by the morphology.
        coarse_mm: Target in-plane voxel size of the 3D component step.
        min_component_fraction: A second 3D air component is kept as a lung only when
            it holds at least this fraction of the largest one's voxels.
        max_lungs: How many 3D components may be kept.
        closing_mm: Radius of the 2D closing of each lung (seals notches up to about
            twice this wide).
        dilation_mm: Final 2D dilation, so that the pleural surface is inside the mask.
        rim_bone_hu: Pixels above this HU in the rim that the dilation adds stay outside:
            the rim is meant to reach the pleura, not the ribs that lie 1-2 mm behind it
            (calcified nodules lie inside the lung, never only in that rim).
        split_mm: Cell size of the 3D grid on which the left and right lungs are split.
        min_split_erosion_mm: The split erodes at least this deep (thicker than the
            radius of the trachea and main bronchi, so that they join neither lung).
        max_split_erosion_mm: The deepest erosion tried (then shallower ones than
            ``min_split_erosion_mm``); without a split all lung is one side.
        split_size_ratio: The two parts of the split must be within this size ratio.
        max_pocket_mm2: Largest concavity of a lung's convex hull taken in (mm^2 on the
            slice; 4000 mm^2 is the cross-section of a 7 cm mass). 0 turns the hull off.
        max_pocket_fraction: ...and at most this fraction of the lung's area on the slice.
        max_medial_pocket_mm2: The limit of pockets that face the mediastinum (1500 mm^2:
            a 4.4 cm disc), where the heart and the great vessels make large concavities.
        airway_opening_mm: The hull is that of each lung opened by this radius, so that
            bronchi (up to about 14 mm wide) and other thin appendages joined to a lung
            do not stretch it across the mediastinum (their pixels stay in the mask).
        outline_radius_mm: Radius of curvature assumed for the lung's outline behind a
            lesion: a taken pocket of length ``c`` that does not face the mediastinum is
            extended outwards by ``c^2 / (8 * outline_radius_mm)`` (the part of the
            outline that the hull's chord cuts off when the lesion replaces the outermost
            lung on the slice).
        max_pocket_extension_mm: Upper bound of that extension.
    """

    threshold_hu: float = -320.0
    coarse_mm: float = 2.0
    min_component_fraction: float = 0.1
    max_lungs: int = 2
    closing_mm: float = 10.0
    dilation_mm: float = 2.0
    rim_bone_hu: float = 200.0
    split_mm: float = 4.0
    min_split_erosion_mm: float = 12.0
    max_split_erosion_mm: float = 40.0
    split_size_ratio: float = 4.8
    max_pocket_mm2: float = 4000.0
    max_pocket_fraction: float = 1.0
    max_medial_pocket_mm2: float = 1500.0
    airway_opening_mm: float = 7.0
    outline_radius_mm: float = 30.0
    max_pocket_extension_mm: float = 12.0

    def __post_init__(self) -> None:
        for name in ('coarse_mm', 'min_component_fraction', 'closing_mm', 'dilation_mm',
                     'min_split_erosion_mm', 'max_split_erosion_mm', 'max_pocket_mm2',
                     'max_pocket_fraction', 'max_medial_pocket_mm2', 'max_pocket_extension_mm',
                     'airway_opening_mm'):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f'LungMaskParams.{name} must be finite and >= 0, got {value!r}')
        for name in ('split_mm', 'split_size_ratio', 'outline_radius_mm'):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f'LungMaskParams.{name} must be finite and > 0, got {value!r}')
        if self.max_lungs < 1:
            raise ValueError(f'LungMaskParams.max_lungs must be >= 1, got {self.max_lungs}')


def _side_face_labels(labels: np.ndarray) -> np.ndarray:
    faces = (labels[..., 0, :], labels[..., -1, :], labels[..., :, 0], labels[..., :, -1])
    return np.unique(np.concatenate([f.ravel() for f in faces]))


def _block_any(mask: np.ndarray, factors: Sequence[int]) -> np.ndarray:
    """Max-pool a bool array by integer ``factors`` per axis (a cell is set when any is).

    One axis at a time, as an OR of strided views (much faster than ``any`` over the
    axes of a 6D reshape).
    """
    out = mask
    for axis, f in enumerate(factors):
        if f == 1:
            continue
        n = out.shape[axis]
        cells = -(-n // f)
        pooled = np.zeros(out.shape[:axis] + (cells,) + out.shape[axis + 1:], dtype=bool)
        for offset in range(f):
            part = out[(slice(None),) * axis + (slice(offset, None, f),)]
            pooled[(slice(None),) * axis + (slice(0, part.shape[axis]),)] |= part
        out = pooled
    return out.copy() if out is mask else out


def _label_2d(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """``ndimage.label(mask)`` of a 2D bool array (4-connected components), by OpenCV:
    the same int32 labels (both number the components in the raster order of their
    first pixel), in less time."""
    count, labels = cv2.connectedComponents(np.ascontiguousarray(mask).view(np.uint8),
                                            connectivity=4, ltype=cv2.CV_32S)
    return labels, count - 1


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    """2D hole filling: background not connected to the array's border becomes set.

    (One labelling of the background; ``ndimage.binary_fill_holes`` iterates dilations
    and is several times slower on lung-sized arrays.)
    """
    labels, _ = _label_2d(~mask)
    border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    outside = np.zeros(labels.max() + 1, dtype=bool)
    outside[border] = True
    outside[0] = False
    return ~outside[labels]


def _bbox(mask: np.ndarray, margin: tuple[int, int]) -> tuple[slice, slice]:
    """Bounding box of ``mask`` grown by ``margin`` (rows, cols), clipped to the array."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return (slice(max(rows[0] - margin[0], 0), min(rows[-1] + 1 + margin[0], mask.shape[0])),
            slice(max(cols[0] - margin[1], 0), min(cols[-1] + 1 + margin[1], mask.shape[1])))


@functools.lru_cache(maxsize=64)
def _squared_pixel_reach(radius_mm: float, spacing_mm: float) -> int | None:
    """The largest squared pixel offset ``D = di^2 + dj^2`` that SciPy's EDT on square
    pixels of ``spacing_mm`` puts within ``radius_mm``, when its test depends on ``D``
    alone (offsets with ``D`` at most this are within, all others beyond); else None.

    SciPy computes the distance of an offset as ``sqrt((di*s)^2 + (dj*s)^2)`` in float64;
    checking every offset up to the radius (plus 2 px) against that here makes
    :func:`_near` give exactly the pixels SciPy's test would.
    """
    n = int(math.ceil(radius_mm / spacing_mm)) + 2
    steps = np.arange(n + 1, dtype=np.float64) * spacing_mm
    distance = np.sqrt(steps[:, None] * steps[:, None] + steps[None, :] * steps[None, :])
    squared = np.arange(n + 1)[:, None] ** 2 + np.arange(n + 1)[None, :] ** 2
    within = distance <= radius_mm
    reach = int(squared[within].max())
    return reach if np.array_equal(within, squared <= reach) else None


def _near(target: np.ndarray, radius_mm: float, sampling: tuple[float, float]) -> np.ndarray:
    """Pixels within ``radius_mm`` of a set pixel of ``target`` (those included): the
    same pixels as ``ndimage.distance_transform_edt(~target, sampling) <= radius_mm``.

    On square pixels by OpenCV's exact Euclidean distance transform (several times
    faster): its float32 distances are square roots of exact integer squared pixel
    distances, compared with :func:`_squared_pixel_reach`'s bound (half-way to the next
    integer). Otherwise, and for an empty ``target``, by SciPy's.
    """
    reach = _squared_pixel_reach(float(radius_mm), float(sampling[0])) \
        if sampling[0] == sampling[1] and radius_mm >= 0 else None
    if reach is None or not target.any() or max(target.shape) > 2048:
        return ndimage.distance_transform_edt(~target, sampling=sampling) <= radius_mm
    distance = cv2.distanceTransform((~target).view(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    return distance <= math.sqrt(reach + 0.5)


def _closing(mask: np.ndarray, radius_mm: float, sampling: tuple[float, float]) -> np.ndarray:
    """Binary closing by a disc of ``radius_mm``, by distance transforms on a padded bbox.

    The mask is worked on inside its bounding box plus a margin larger than the radius
    (padded with background where the box meets the array's edge), so the cost follows
    the object and the result is the closing in an unbounded plane.
    """
    if radius_mm <= 0 or not mask.any():
        return mask.copy()
    my, mx = (int(math.ceil(radius_mm / s)) + 2 for s in sampling)
    box = _bbox(mask, (0, 0))
    crop = np.pad(mask[box], ((my, my), (mx, mx)))
    grown = _near(crop, radius_mm, sampling)
    closed = ~_near(~grown, radius_mm, sampling)
    out = mask.copy()
    out[box] |= closed[my:-my, mx:-mx]
    return out


def _opening(mask: np.ndarray, radius_mm: float, sampling: tuple[float, float]) -> np.ndarray:
    """Binary opening by an ellipse of ``radius_mm`` (OpenCV's kernel, in pixels per axis)."""
    ry, rx = (max(0, int(round(radius_mm / s))) for s in sampling)
    if radius_mm <= 0 or not (ry or rx):
        return mask.copy()
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * rx + 1, 2 * ry + 1))
    return cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_OPEN, kernel,
                            borderType=cv2.BORDER_CONSTANT, borderValue=0).astype(bool)


def _facing(points: np.ndarray, origin: np.ndarray, target: np.ndarray,
            sampling: tuple[float, float]) -> bool:
    """Whether the centroid of ``points`` (row, col) lies within 45 degrees of the
    direction from ``origin`` to ``target`` (all in pixels; angles measured in mm)."""
    direction = (points.mean(axis=0) - origin) * sampling
    towards = (np.asarray(target) - origin) * sampling
    norms = np.linalg.norm(direction) * np.linalg.norm(towards)
    return bool(norms > 0 and direction @ towards > math.cos(math.pi / 4) * norms)


def _hull_input(lung: np.ndarray, radius_mm: float, sampling: tuple[float, float],
                midline: tuple[float, float]) -> np.ndarray:
    """The pixels of one lung whose convex hull is taken: the lung without its thin
    parts (narrower than ``2 * radius_mm``) that face the mediastinum: bronchi and other
    airway joined to the lung, anterior tongues at the junction. Thin parts elsewhere
    (lung wedges beside a mass on the chest wall) stay: they draw the lung's outline."""
    core = _opening(lung, radius_mm, sampling)
    if not core.any():
        return lung
    centre = np.argwhere(lung).mean(axis=0)
    thin, count = _label_2d(lung & ~core)
    for label, where in enumerate(ndimage.find_objects(thin), start=1):
        points = np.argwhere(thin[where] == label) + [w.start for w in where]
        if not _facing(points, centre, midline, sampling):
            core[tuple(points.T)] = True
    return core


def _convex_hull(mask: np.ndarray) -> np.ndarray:
    """Filled convex hull (pixel centres) of all pixels of a 2D bool mask."""
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL,
                                   cv2.CHAIN_APPROX_SIMPLE)
    hull = cv2.convexHull(np.concatenate(contours))
    out = np.zeros(mask.shape, dtype=np.uint8)
    cv2.fillConvexPoly(out, hull, 1)
    return out.astype(bool) | mask


class LungMask:
    """Lung mask of one CT volume, computed per slice on demand (see module docstring).

    Args:
        volume: HU array ``(z, y, x)`` (int16 as read; float works too). Not modified
            and not copied.
        spacing_xyz: Voxel spacing ``(sx, sy, sz)`` in mm.
        params: Segmentation parameters.

    Example:
        >>> lungs = LungMask(scan.array, scan.geometry.spacing_xyz)
        >>> mask = lungs.slice(120)          # bool (y, x)
        >>> masks = lungs.slices([10, 11])   # bool (2, y, x)
    """

    def __init__(self, volume: np.ndarray, spacing_xyz: Sequence[float],
                 params: LungMaskParams | None = None) -> None:
        if volume.ndim != 3:
            raise ValueError(f'volume must be 3D (z, y, x), got shape {volume.shape}')
        self.volume = volume
        self.spacing_xyz = tuple(float(v) for v in spacing_xyz)
        if len(self.spacing_xyz) != 3 or min(self.spacing_xyz) <= 0:
            raise ValueError(f'spacing_xyz must be 3 positive numbers, got {spacing_xyz!r}')
        self.params = params or LungMaskParams()
        _, rows, cols = volume.shape
        pixel = min(self.spacing_xyz[0], self.spacing_xyz[1])
        step = max(1, int(self.params.coarse_mm / pixel)) if self.params.coarse_mm > 0 else 1
        # Keep at least ~64 coarse pixels across so that small test volumes stay faithful.
        self.step = max(1, min(step, min(rows, cols) // 64))
        self._coarse = self._coarse_lungs()
        self._sides, self._split_factors = self._split_sides()
        self._cache: dict[int, np.ndarray] = {}

    # ---------------------------------------------------------------- 3D steps
    def _coarse_lungs(self) -> np.ndarray:
        s = self.step
        air = self.volume[:, ::s, ::s] < self.params.threshold_hu
        coarse = np.zeros(air.shape, dtype=bool)
        tissue = ~air.all(axis=0)
        if not tissue.any():
            return coarse
        # Label only inside the in-plane bounding box of the tissue (the body, the
        # table): the lungs lie inside it, and air outside the body still reaches the
        # box's faces, so what is outside stays outside; the air around the body and the
        # padding of a circular field of view, often half of the slice, are not labelled.
        box = (slice(None),) + _bbox(tissue, (0, 0))
        labels, count = ndimage.label(air[box])
        del air
        if count == 0:
            return coarse
        # Component sizes, 16 slices at a time: np.bincount casts its input to int64,
        # which for the whole label volume would be the largest array of the scan.
        sizes = np.zeros(count + 1, dtype=np.int64)
        for z0 in range(0, labels.shape[0], 16):
            sizes += np.bincount(labels[z0:z0 + 16].ravel(), minlength=count + 1)
        sizes[0] = 0
        sizes[_side_face_labels(labels)] = 0
        order = np.argsort(sizes)[::-1][:self.params.max_lungs]
        keep = [lab for lab in order
                if sizes[lab] > 0 and sizes[lab] >= self.params.min_component_fraction * sizes[order[0]]]
        inside = coarse[box]  # a view: a comparison per kept label (a lookup table is slower)
        for lab in keep:
            inside |= labels == lab
        return coarse

    def _split_sides(self) -> tuple[np.ndarray, tuple[int, int, int]]:
        """Left/right labels (0 none, 1 low x, 2 high x) on the split grid, and its factors.

        See step 2 of the module docstring.
        """
        p = self.params
        sx, _, sz = self.spacing_xyz
        coarse_mm = sx * self.step
        factors = (max(1, int(round(p.split_mm / sz))), max(1, int(round(p.split_mm / coarse_mm))),
                   max(1, int(round(p.split_mm / coarse_mm))))
        full = _block_any(self._coarse, factors)
        sides = np.zeros(full.shape, dtype=np.uint8)
        if not full.any():
            return sides, factors
        # Work inside the lungs' bounding box (plus one empty cell, so erosion sees an edge).
        box = tuple(slice(max(int(i.min()) - 1, 0), int(i.max()) + 2) for i in np.nonzero(full))
        grid = full[box]
        cell = p.split_mm
        first = int(math.ceil(p.min_split_erosion_mm / cell))
        last = max(first, int(math.floor(p.max_split_erosion_mm / cell)))
        seeds, depth = None, first
        # From the airway-removing depth on (one erosion more at a time); lungs too small
        # for it (small fields of view) are tried at shallower depths after that.
        work = ndimage.binary_erosion(grid, _CROSS_3D, iterations=first) if first else grid
        for depth in list(range(first, last + 1)) + list(range(first - 1, -1, -1)):
            if depth > first:
                work = ndimage.binary_erosion(work, _CROSS_3D)
            elif depth < first:
                work = ndimage.binary_erosion(grid, _CROSS_3D, iterations=depth) if depth else grid
            labels, count = ndimage.label(work)
            sizes = np.bincount(labels.ravel())[1:]
            order = np.argsort(sizes)[::-1]
            if count >= 2 and sizes[order[0]] <= p.split_size_ratio * sizes[order[1]]:
                seeds = [labels == order[0] + 1, labels == order[1] + 1]
                break
        out = sides[box]
        if seeds is None:  # one lung (or lungs that never separate): one side, no hull across
            labels, count = ndimage.label(grid)
            out[labels == np.argmax(np.bincount(labels.ravel())[1:]) + 1] = 1
            return sides, factors
        # Order the sides by their mean column (x index): 1 = low x, 2 = high x.
        if np.nonzero(seeds[0])[2].mean() > np.nonzero(seeds[1])[2].mean():
            seeds = seeds[::-1]
        # Back into the lungs, inside them (geodesic), by the erosion depth plus two cells;
        # cells that both parts reach (where the lungs touch) stay unlabelled.
        grown = [ndimage.binary_dilation(seed, _CROSS_3D, iterations=depth + 2, mask=grid)
                 for seed in seeds]
        out[grown[0] & ~grown[1]] = 1
        out[grown[1] & ~grown[0]] = 2
        return sides, factors

    @property
    def coarse(self) -> np.ndarray:
        """The 3D coarse lung mask ``(z, ceil(y/step), ceil(x/step))``."""
        return self._coarse

    def coarse_area_mm2(self) -> np.ndarray:
        """Approximate lung area (mm^2) of every slice, from the coarse 3D mask."""
        s = self.step
        pixel_area = self.spacing_xyz[0] * self.spacing_xyz[1] * s * s
        return self._coarse.sum(axis=(1, 2)) * pixel_area

    # ---------------------------------------------------------------- 2D step
    def _upsampled(self, z: int) -> np.ndarray:
        s = self.step
        rows, cols = self.volume.shape[1:]
        coarse = self._coarse[z]
        if s == 1:
            return coarse
        return np.repeat(np.repeat(coarse, s, axis=0), s, axis=1)[:rows, :cols]

    def _upsampled_cells(self, grid: np.ndarray, box: tuple[slice, slice]) -> np.ndarray:
        """A 2D slice of the split grid at full resolution, inside ``box``."""
        _, fy, fx = self._split_factors
        rows = np.arange(box[0].start, box[0].stop) // (self.step * fy)
        cols = np.arange(box[1].start, box[1].stop) // (self.step * fx)
        return grid[rows[:, None], cols[None, :]]

    def slice(self, z: int) -> np.ndarray:
        """Full-resolution lung mask of slice ``z``: bool ``(y, x)`` (a new array)."""
        z = int(z)
        if not 0 <= z < self.volume.shape[0]:
            raise IndexError(f'slice {z} outside the volume of {self.volume.shape[0]} slices')
        if z not in self._cache:
            self._cache[z] = self._refine(z)
        return self._cache[z].copy()

    def slices(self, z_indices: Iterable[int]) -> np.ndarray:
        """Masks of several slices, bool ``(n, y, x)``."""
        zs = [int(z) for z in z_indices]
        rows, cols = self.volume.shape[1:]
        out = np.zeros((len(zs), rows, cols), dtype=bool)
        for i, z in enumerate(zs):
            out[i] = self.slice(z)
        return out

    def _split_slice(self, z: int, box: tuple[slice, slice], labels: np.ndarray, count: int,
                     lung: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Cut a slice's lung pixels into (side 1, side 2, neither); see module step 3."""
        grid = self._sides[z // self._split_factors[0]]
        sides = self._upsampled_cells(grid, box)
        votes = np.stack([np.bincount(labels[lung & (sides == k)], minlength=count + 1)
                          for k in (1, 2)])
        size = np.bincount(labels[lung], minlength=count + 1)
        claimed = votes.sum(axis=0)
        owned = (size > 0) & (claimed >= _CLAIMED_FRACTION * size)
        joined = owned & (votes.min(axis=0) >= _JOINED_FRACTION * claimed)
        out = [(owned & ~joined & (votes[k] >= votes[1 - k]))[labels] & lung for k in (0, 1)]
        if joined.any():
            # Each pixel of a joined component goes to the nearer side's cells; the cells
            # next to the other side are left out, so that the cut falls between the lungs.
            seeds = grid.copy()
            for k in (1, 2):
                seeds[(grid == k) & ndimage.binary_dilation(grid == 3 - k)] = 0
            seeds = self._upsampled_cells(seeds if seeds.any() else grid, box)
            _, (iy, ix) = ndimage.distance_transform_edt(seeds == 0, return_indices=True)
            nearest = seeds[iy, ix]
            cut = joined[labels] & lung
            out = [out[k] | (cut & (nearest == k + 1)) for k in (0, 1)]
        return out[0], out[1], lung & ~out[0] & ~out[1]

    def _with_pockets(self, lung: np.ndarray, core: np.ndarray, other: np.ndarray,
                      sampling: tuple[float, float], midline: tuple[float, float]) -> np.ndarray:
        """One lung with the pockets of its convex hull that are taken (module step 3).

        Args:
            lung: The lung's pixels after closing and hole filling (bool, the slice's crop).
            core: The pixels whose hull is used (:func:`_hull_input`).
            other: The other lung's core: a pocket that reaches it spans the mediastinum
                and is never taken.
            sampling: Pixel size (rows, cols) in mm.
            midline: (row, col) between the lungs, in the crop's pixels.
        """
        p = self.params
        margin = int(math.ceil(p.max_pocket_extension_mm / min(sampling))) + 1
        box = _bbox(lung, (margin, margin))
        part = lung[box]
        pockets, count = _label_2d(_convex_hull(core[box]) & ~part)
        if count == 0:
            return lung
        pixel_area = sampling[0] * sampling[1]
        area = np.bincount(pockets.ravel())[1:] * pixel_area
        limit = p.max_pocket_fraction * part.sum() * pixel_area
        accept = np.concatenate([[False], area <= min(p.max_pocket_mm2, limit)])
        accept[np.unique(pockets[ndimage.binary_dilation(other[box])])] = False
        accept[0] = False
        # Pockets that face the mediastinum (centroid within 45 degrees of the direction
        # from the lung's centroid to the midline) have the smaller limit; a lesion that
        # replaces the outermost lung on a slice leaves the hull's chord inside the lung's
        # true (convex) outline by the sagitta c^2 / (8 R) (c: the pocket's length, its
        # minimum-area rectangle's long side; R: the outline's radius of curvature), so
        # the other (costal) pockets are extended outwards by it.
        centre = np.argwhere(part).mean(axis=0)
        to_midline = np.asarray(midline) - [b.start for b in box]
        reach = np.zeros(count + 1)
        for label, where in enumerate(ndimage.find_objects(pockets), start=1):
            extent = [(w.stop - w.start) * s for w, s in zip(where, sampling)]
            small = area[label - 1] <= p.max_medial_pocket_mm2
            long_enough = math.hypot(*extent) ** 2 / (8 * p.outline_radius_mm) >= min(sampling)
            if not accept[label] or (small and not long_enough):
                continue
            inside = np.argwhere(pockets[where] == label)
            if _facing(inside + [w.start for w in where], centre, to_midline, sampling):
                accept[label] = small
                continue
            if long_enough:
                points = inside.astype(np.float32) * np.float32(sampling)
                length = max(cv2.minAreaRect(points)[1])
                reach[label] = min(length ** 2 / (8 * p.outline_radius_mm),
                                   p.max_pocket_extension_mm)
        taken = accept[pockets]
        if reach.max() >= min(sampling):
            far = reach[pockets] < min(sampling)
            pockets[far] = 0
            distance, (iy, ix) = ndimage.distance_transform_edt(pockets == 0, sampling=sampling,
                                                                return_indices=True)
            taken |= (distance <= reach[pockets[iy, ix]]) & ~part
        lung[box] |= taken
        return lung

    def _lung_air(self, z: int) -> tuple[np.ndarray, int, np.ndarray, np.ndarray] | None:
        """Slice ``z``'s air labels, their count, the outside labels and the lung air."""
        if not self._coarse[z].any():
            return None
        air = self.volume[z] < self.params.threshold_hu
        labels, count = _label_2d(air)
        overlap = np.bincount(labels[air & self._upsampled(z)], minlength=count + 1)
        overlap[0] = 0
        outside = _side_face_labels(labels)
        overlap[outside] = 0
        if not overlap.any():
            return None
        return labels, count, outside, (overlap > 0)[labels]

    def sides(self, z: int) -> np.ndarray:
        """Which lung each lung-air pixel of slice ``z`` was given to, before the shape steps.

        Returns:
            uint8 ``(y, x)``: 0 not lung air, 1 the lung of lower x index, 2 the lung of
            higher x index, 3 neither (airway, or a lung tip the split did not reach).
        """
        z = int(z)
        if not 0 <= z < self.volume.shape[0]:
            raise IndexError(f'slice {z} outside the volume of {self.volume.shape[0]} slices')
        out = np.zeros(self.volume.shape[1:], dtype=np.uint8)
        found = self._lung_air(z)
        if found is not None:
            labels, count, _, lung = found
            box = (slice(0, out.shape[0]), slice(0, out.shape[1]))
            for value, part in enumerate(self._split_slice(z, box, labels, count, lung), start=1):
                out[part] = value
        return out

    def _refine(self, z: int) -> np.ndarray:
        rows, cols = self.volume.shape[1:]
        mask = np.zeros((rows, cols), dtype=bool)
        found = self._lung_air(z)
        if found is None:
            return mask
        labels, count, outside, lung_full = found
        p = self.params
        sy, sx = self.spacing_xyz[1], self.spacing_xyz[0]
        sampling = (sy, sx)
        reach = p.closing_mm + p.dilation_mm + p.max_pocket_extension_mm
        margin = (int(math.ceil(reach / sy)) + 2, int(math.ceil(reach / sx)) + 2)
        # Work on the lungs' bounding box plus a margin, so that the cost follows the lungs.
        box = _bbox(lung_full, margin)
        labels_c, lung = labels[box], lung_full[box]
        side1, side2, neither = self._split_slice(z, box, labels_c, count, lung)
        midline = tuple((i.min() + i.max()) / 2 for i in np.nonzero(lung))
        shapes = [_fill_holes(_closing(part, p.closing_mm, sampling)) if part.any() else None
                  for part in (side1, side2)]
        crop = np.zeros(lung.shape, dtype=bool)
        if p.max_pocket_mm2 > 0:
            cores = [None if shape is None else _hull_input(shape, p.airway_opening_mm,
                                                             sampling, midline)
                     for shape in shapes]
            for k in (0, 1):
                if shapes[k] is not None:
                    other = cores[1 - k] if cores[1 - k] is not None else crop
                    crop |= self._with_pockets(shapes[k], cores[k], other, sampling, midline)
        else:
            for shape in shapes:
                if shape is not None:
                    crop |= shape
        if neither.any():
            crop |= _fill_holes(_closing(neither, p.closing_mm, sampling))
        if p.dilation_mm > 0:
            rim = _near(crop, p.dilation_mm, sampling)
            rim &= ~crop
            rim &= self.volume[z][box] <= p.rim_bone_hu
            crop |= rim
        body = np.ones(count + 1, dtype=bool)
        body[outside] = False
        body[0] = True  # tissue (not air) is body unless outside air encloses it
        crop &= body[labels_c]
        mask[box] = crop
        return mask


def segment_lungs(volume: np.ndarray, spacing_xyz: Sequence[float],
                  z_indices: Iterable[int] | None = None,
                  params: LungMaskParams | None = None) -> np.ndarray:
    """Lung mask of some or all slices of a volume (see :class:`LungMask`).

    Args:
        volume: HU array ``(z, y, x)``.
        spacing_xyz: ``(sx, sy, sz)`` in mm.
        z_indices: Slices wanted; ``None`` means every slice.
        params: Segmentation parameters.

    Returns:
        bool array ``(len(z_indices), y, x)`` (``(z, y, x)`` for all slices).
    """
    lungs = LungMask(volume, spacing_xyz, params)
    zs = range(volume.shape[0]) if z_indices is None else z_indices
    return lungs.slices(zs)
