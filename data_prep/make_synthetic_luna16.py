#!/usr/bin/env python
"""Make a synthetic, LUNA16-shaped data set (for tests, demos and benchmarks).

Writes ``OUT/subset0/<seriesuid>.mhd`` + ``.raw`` (int16 HU, MetaImage as LUNA16 ships
it), ``OUT/annotations.csv`` (exactly LUNA16's columns, world mm) and
``OUT/ground_truth.json`` (per scan: geometry, lung ellipsoids, nodules with their
kind, so that tests can check the converters against an independent truth).

What a scan holds (realistic enough that the pipeline's shortcuts would show):

* the scanner's circular field of view, padding outside it at -2000 or -3024 HU;
* air (-1000) around a body ellipse of soft tissue (0..60 HU) with a fat layer, a
  spine and ribs (bone);
* two lungs (about -850 HU) joined to a trachea that leaves through the top slice, a
  heart carving the left lung, sometimes bowel gas under the lungs;
* branching vessel trees in the lungs (bright tubes: across a slice they look like
  nodules);
* nodules of 3-30 mm, diameters drawn from LUNA16's distribution (the histogram shipped
  as ``data_prep/luna16_diameter_histogram.csv``), solid (~40 HU) or ground-glass
  (~-600 HU), some touching the pleura (juxta-pleural), none in some scans;
* Gaussian noise; LUNA16-like geometry: in-plane spacing 0.46-0.98 mm, slices
  0.625-2.5 mm, non-zero origins, some scans with flipped axes in the direction matrix.

Scale: spacing is always LUNA16's, and the anatomy is laid out relative to the field of
view, so a small shape is a small "patient" at real resolution (the default 64x128x128
gives lungs of about 30 x 40 mm in-plane). Nodules keep their real sizes in mm, but a
diameter larger than 0.9x the smallest lung semi-axis is drawn again: small test scans
hold the small and medium nodules, which is most of LUNA16 (3-10 mm), and these survive
the export (a 3 mm nodule at 0.7 mm/px is about 14 px in area). The 50x50 patch export
needs lungs wider than 50 px: use ``--shape 40 256 256`` or more for it (negatives are
scarce at 128x128). ``--shape 300 512 512`` gives full-size scans with the full 3-30 mm
range.

The first four scans follow a fixed design so that even a 4-scan set covers the cases:
0 identity direction, solid + ground-glass nodules; 1 z flipped, one juxta-pleural
nodule; 2 x and y flipped, a juxta-pleural nodule; 3 no nodule. Later scans are random.

Example::

    python data_prep/make_synthetic_luna16.py --out data/synthetic_luna16 --num-scans 8 --seed 0
    python data_prep/make_synthetic_luna16.py --out data/luna16_full --num-scans 4 --shape 300 512 512
"""
from __future__ import annotations

import argparse
import csv
import io
import logging
import math
import os
import shutil
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

if __package__ in (None, ''):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import SimpleITK as sitk

from data_prep.common import (atomic_write_json, atomic_write_text, run_jobs, setup_logging)
from projects.lung_nodule.ct import ANNOTATION_COLUMNS, ScanGeometry

__all__ = ['DEFAULT_SHAPE', 'SyntheticNodule', 'SyntheticScan', 'load_diameter_histogram',
           'make_synthetic_luna16', 'make_synthetic_scan', 'main']

logger = logging.getLogger('data_prep')

DEFAULT_SHAPE: tuple[int, int, int] = (64, 128, 128)
HISTOGRAM = Path(__file__).resolve().parent / 'luna16_diameter_histogram.csv'
UID_PREFIX = '1.3.6.1.4.1.14519.5.2.1.6279.6001.'
_DIRECTIONS = {
    'identity': (1, 0, 0, 0, 1, 0, 0, 0, 1),
    'flip_z': (1, 0, 0, 0, 1, 0, 0, 0, -1),
    'flip_xy': (-1, 0, 0, 0, -1, 0, 0, 0, 1),
    'flip_x': (-1, 0, 0, 0, 1, 0, 0, 0, 1),
}
# Fixed design of the first scans: (direction, nodule kinds as (kind, juxta_pleural)).
_DESIGN = [
    ('identity', [('solid', False), ('ground_glass', False)]),
    ('flip_z', [('solid', True), ('solid', False)]),
    ('flip_xy', [('solid', True)]),
    ('identity', []),
]
HU_AIR, HU_LUNG, HU_FAT, HU_TISSUE, HU_BONE = -1000.0, -850.0, -90.0, 40.0, 600.0
HU_SOLID, HU_GGO = 40.0, -600.0


@dataclass
class SyntheticNodule:
    """A nodule of a synthetic scan (its truth)."""

    coord_xyz: list[float]
    centre_index_xyz: list[float]
    diameter_mm: float
    kind: str  # 'solid' | 'ground_glass'
    juxta_pleural: bool
    lung: int  # 0 right (low x index), 1 left


@dataclass
class SyntheticScan:
    """A synthetic scan: where it is and what it holds."""

    seriesuid: str
    mhd: str  # relative to the data set root
    size_xyz: list[int]
    spacing_xyz: list[float]
    origin_xyz: list[float]
    direction: list[float]
    fov_padding_hu: int
    lungs: list[dict]  # centre_mm (index frame: index * spacing) and semi_axes_mm, x y z
    heart: dict  # the same; carved out of the lungs
    nodules: list[SyntheticNodule] = field(default_factory=list)


def load_diameter_histogram(path: Path = HISTOGRAM) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(lower_mm, upper_mm, counts)`` of the shipped LUNA16 diameter histogram."""
    lines = [line for line in path.read_text().splitlines() if line and not line.startswith('#')]
    rows = list(csv.DictReader(lines))
    lower = np.array([float(r['lower_mm']) for r in rows])
    upper = np.array([float(r['upper_mm']) for r in rows])
    counts = np.array([float(r['count']) for r in rows])
    return lower, upper, counts


def _sample_diameter(rng: np.random.Generator, max_mm: float,
                     histogram: tuple[np.ndarray, np.ndarray, np.ndarray]) -> float:
    lower, upper, counts = histogram
    weights = counts * (lower < max_mm)
    if weights.sum() <= 0:
        raise ValueError(f'the lungs are too small for a {lower.min():.0f} mm nodule '
                         f'(largest diameter that fits: {max_mm:.1f} mm); use a larger --shape')
    i = rng.choice(len(counts), p=weights / weights.sum())
    return float(rng.uniform(lower[i], min(upper[i], max_mm)))


# ------------------------------------------------------------------ drawing helpers
class _Canvas:
    """The int16 volume being drawn, with index <-> mm (index frame) helpers."""

    def __init__(self, shape_zyx: Sequence[int], spacing_xyz: Sequence[float]) -> None:
        self.shape = tuple(int(v) for v in shape_zyx)
        self.spacing = np.asarray(spacing_xyz, dtype=np.float64)  # x, y, z
        self.volume = np.empty(self.shape, dtype=np.int16)

    def bbox(self, lo_mm: np.ndarray, hi_mm: np.ndarray) -> tuple[slice, slice, slice] | None:
        """Index slices (z, y, x) covering a box given in mm (x, y, z), clipped."""
        lo = np.maximum(np.floor(lo_mm / self.spacing).astype(int), 0)
        hi = np.minimum(np.ceil(hi_mm / self.spacing).astype(int) + 1,
                        np.array(self.shape[::-1]))
        if np.any(hi <= lo):
            return None
        return slice(lo[2], hi[2]), slice(lo[1], hi[1]), slice(lo[0], hi[0])

    def grid_mm(self, box: tuple[slice, slice, slice]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Broadcastable mm coordinates (z, y, x arrays) of a box's voxel centres."""
        zs = np.arange(box[0].start, box[0].stop)[:, None, None] * self.spacing[2]
        ys = np.arange(box[1].start, box[1].stop)[None, :, None] * self.spacing[1]
        xs = np.arange(box[2].start, box[2].stop)[None, None, :] * self.spacing[0]
        return zs, ys, xs

    def paint_max(self, box: tuple[slice, slice, slice], values: np.ndarray,
                  where: np.ndarray) -> None:
        """``volume = max(volume, values)`` where ``where`` (bright structures)."""
        region = self.volume[box]
        new = np.maximum(region, np.round(values).astype(np.int16))
        region[where] = new[where]


def _in_ellipsoids(zs: np.ndarray, ys: np.ndarray, xs: np.ndarray, ellipsoids: list[dict],
                   shrink_mm: float = 0.0) -> np.ndarray:
    inside = np.zeros(np.broadcast_shapes(zs.shape, ys.shape, xs.shape), dtype=bool)
    for e in ellipsoids:
        (cx, cy, cz), (ax, ay, az) = e['centre_mm'], e['semi_axes_mm']
        inside |= (((xs - cx) / (ax - shrink_mm)) ** 2 + ((ys - cy) / (ay - shrink_mm)) ** 2
                   + ((zs - cz) / (az - shrink_mm)) ** 2) <= 1.0
    return inside


def _segment_distance(zs, ys, xs, p0: np.ndarray, p1: np.ndarray) -> np.ndarray:
    d = p1 - p0
    length2 = float(d @ d) or 1e-12
    t = ((xs - p0[0]) * d[0] + (ys - p0[1]) * d[1] + (zs - p0[2]) * d[2]) / length2
    t = np.clip(t, 0.0, 1.0)
    return np.sqrt((xs - p0[0] - t * d[0]) ** 2 + (ys - p0[1] - t * d[1]) ** 2
                   + (zs - p0[2] - t * d[2]) ** 2)


def _profile(distance: np.ndarray, radius: float, edge: float) -> np.ndarray:
    """1 inside, 0 outside, a linear partial-volume ramp one ``edge`` wide at ``radius``."""
    return np.clip((radius - distance) / edge + 0.5, 0.0, 1.0)


def _draw_tube(canvas: _Canvas, p0: np.ndarray, p1: np.ndarray, radius: float, hu: float,
               base_hu: float, lungs: list[dict] | None) -> None:
    """Bright tube (vessel) from ``p0`` to ``p1`` (mm, x y z), only inside ``lungs``."""
    box = canvas.bbox(np.minimum(p0, p1) - radius - 1, np.maximum(p0, p1) + radius + 1)
    if box is None:
        return
    zs, ys, xs = canvas.grid_mm(box)
    weight = _profile(_segment_distance(zs, ys, xs, p0, p1), radius, float(canvas.spacing[:2].mean()))
    where = weight > 0
    if lungs is not None:
        where &= _in_ellipsoids(zs, ys, xs, lungs)
    canvas.paint_max(box, base_hu + (hu - base_hu) * weight, where)


def _carve_tube(canvas: _Canvas, p0: np.ndarray, p1: np.ndarray, radius: float) -> None:
    """Air tube (trachea, bronchi)."""
    box = canvas.bbox(np.minimum(p0, p1) - radius - 1, np.maximum(p0, p1) + radius + 1)
    if box is None:
        return
    zs, ys, xs = canvas.grid_mm(box)
    canvas.volume[box][_segment_distance(zs, ys, xs, p0, p1) <= radius] = int(HU_AIR)


def _draw_ball(canvas: _Canvas, centre: np.ndarray, radius: float, hu: float,
               base_hu: float) -> None:
    box = canvas.bbox(centre - radius - 1, centre + radius + 1)
    if box is None:
        return
    zs, ys, xs = canvas.grid_mm(box)
    dist = np.sqrt((xs - centre[0]) ** 2 + (ys - centre[1]) ** 2 + (zs - centre[2]) ** 2)
    weight = _profile(dist, radius, float(canvas.spacing[:2].mean()))
    canvas.paint_max(box, base_hu + (hu - base_hu) * weight, weight > 0)


def _random_unit(rng: np.random.Generator) -> np.ndarray:
    v = rng.normal(size=3)
    return v / np.linalg.norm(v)


def _vessel_tree(canvas: _Canvas, rng: np.random.Generator, root: np.ndarray,
                 direction: np.ndarray, radius: float, length: float, lungs: list[dict],
                 min_radius: float, depth: int = 0) -> None:
    end = root + direction * length
    _draw_tube(canvas, root, end, radius, float(rng.uniform(20, 70)), HU_LUNG, lungs)
    if depth >= 6 or radius * 0.72 < min_radius:
        return
    for sign in (1, -1):
        axis = np.cross(direction, _random_unit(rng))
        axis /= np.linalg.norm(axis) or 1.0
        angle = math.radians(rng.uniform(25, 45)) * sign
        # Rodrigues rotation of ``direction`` about ``axis``.
        new = (direction * math.cos(angle) + np.cross(axis, direction) * math.sin(angle)
               + axis * (axis @ direction) * (1 - math.cos(angle)))
        _vessel_tree(canvas, rng, end, new / np.linalg.norm(new), radius * 0.72,
                     length * rng.uniform(0.7, 0.95), lungs, min_radius, depth + 1)


# ------------------------------------------------------------------ one scan
def _anatomy(shape_zyx: Sequence[int], spacing_xyz: Sequence[float]) -> dict:
    """Body, lungs, heart... in the index frame (mm = index * spacing), x y z order."""
    nz, ny, nx = shape_zyx
    sx, sy, sz = spacing_xyz
    fov_x, fov_y, fov_z = nx * sx, ny * sy, nz * sz
    cx, cy = (nx - 1) / 2 * sx, (ny - 1) / 2 * sy
    fov_r = min(fov_x, fov_y) / 2
    a, b = 0.86 * fov_r, 0.62 * fov_r  # body semi-axes (lateral, antero-posterior)
    body_cy = cy + 0.04 * fov_r
    lung_axes = [0.36 * a, 0.72 * b, 0.42 * fov_z]
    lung_cz = 0.5 * fov_z
    lungs = [{'centre_mm': [cx + side * 0.47 * a, body_cy - 0.05 * b, lung_cz],
              'semi_axes_mm': list(lung_axes)} for side in (-1, 1)]
    heart = {'centre_mm': [cx + 0.12 * a, body_cy - 0.35 * b, lung_cz - 0.25 * lung_axes[2]],
             'semi_axes_mm': [0.3 * a, 0.3 * b, 0.3 * lung_axes[2]]}
    return {'fov': (cx, cy, fov_r), 'body': (cx, body_cy, a, b), 'lungs': lungs,
            'heart': heart, 'fov_z': fov_z}


def _draw_slices(canvas: _Canvas, anatomy: dict, padding_hu: int, rng: np.random.Generator,
                 with_gas: bool) -> None:
    nz, ny, nx = canvas.shape
    sx, sy, sz = canvas.spacing
    xs = (np.arange(nx) * sx)[None, :]
    ys = (np.arange(ny) * sy)[:, None]
    cx, cy, fov_r = anatomy['fov']
    bx, by, a, b = anatomy['body']
    fov = (xs - cx) ** 2 + (ys - cy) ** 2 <= fov_r ** 2
    body_r = ((xs - bx) / a) ** 2 + ((ys - by) / b) ** 2
    body, fat = body_r <= 1.0, (body_r <= 1.0) & (body_r > 0.8)
    spine = ((xs - bx) / (0.12 * a)) ** 2 + ((ys - (by + 0.72 * b)) / (0.12 * a)) ** 2 <= 1.0
    angles = np.linspace(0.25 * math.pi, 1.75 * math.pi, 10) + 0.5 * math.pi
    rib_phase = rng.uniform(0, 2 * math.pi, size=len(angles))
    gas = {'centre_mm': [bx - 0.2 * a, by - 0.1 * b, 0.035 * anatomy['fov_z']],
           'semi_axes_mm': [0.1 * a, 0.08 * b, 0.03 * anatomy['fov_z']]}
    for z in range(nz):
        w = z * sz
        sl = np.full((ny, nx), padding_hu, dtype=np.int16)
        sl[fov] = int(HU_AIR)
        sl[body] = int(HU_TISSUE)
        sl[fat] = int(HU_FAT)
        sl[spine] = int(HU_BONE)
        lung = np.zeros((ny, nx), dtype=bool)
        for e in anatomy['lungs']:
            (ex, ey, ez), (ax, ay, az) = e['centre_mm'], e['semi_axes_mm']
            t = 1.0 - ((w - ez) / az) ** 2
            if t > 0:
                lung |= ((xs - ex) / (ax * math.sqrt(t))) ** 2 + ((ys - ey) / (ay * math.sqrt(t))) ** 2 <= 1
        (hx, hy, hz), (hax, hay, haz) = anatomy['heart']['centre_mm'], anatomy['heart']['semi_axes_mm']
        t = 1.0 - ((w - hz) / haz) ** 2
        heart = (((xs - hx) / (hax * math.sqrt(t))) ** 2 + ((ys - hy) / (hay * math.sqrt(t))) ** 2 <= 1
                 if t > 0 else np.zeros((ny, nx), dtype=bool))
        sl[lung & ~heart] = int(HU_LUNG)
        for angle, phase in zip(angles, rib_phase):
            if math.sin(2 * math.pi * w / 25.0 + phase) > 0.2:  # ribs cross a slice obliquely
                rx, ry = bx + 0.95 * a * math.cos(angle), by + 0.95 * b * math.sin(angle)
                rib = (xs - rx) ** 2 + (ys - ry) ** 2 <= (0.03 * a) ** 2
                sl[rib] = int(HU_BONE)
        if with_gas:
            (gx, gy, gz), (gax, gay, gaz) = gas['centre_mm'], gas['semi_axes_mm']
            t = 1.0 - ((w - gz) / gaz) ** 2
            if t > 0:
                sl[((xs - gx) / (gax * math.sqrt(t))) ** 2 + ((ys - gy) / (gay * math.sqrt(t))) ** 2 <= 1] = int(HU_AIR)
        canvas.volume[z] = sl


def _place_nodule(rng: np.random.Generator, lungs: list[dict], heart: dict, lung_index: int,
                  radius: float, juxta: bool, placed: list[tuple[np.ndarray, float]]
                  ) -> np.ndarray | None:
    lung = lungs[lung_index]
    centre, axes = np.asarray(lung['centre_mm']), np.asarray(lung['semi_axes_mm'])
    side = -1.0 if lung_index == 0 else 1.0
    for _ in range(200):
        if juxta:
            # A point of the lateral/posterior lung surface, then inwards along the normal
            # so that the sphere touches the pleura (overlapping it by up to 1 mm).
            theta = rng.uniform(-0.6, 0.9) * math.pi / 2  # around the lateral direction
            phi = rng.uniform(-0.5, 0.5) * math.pi / 2    # elevation (z)
            unit = np.array([side * math.cos(theta) * math.cos(phi), math.sin(theta) * math.cos(phi),
                             math.sin(phi)])
            surface = centre + axes * unit
            normal = unit / axes
            normal /= np.linalg.norm(normal)
            overlap = rng.uniform(0.0, min(1.0, 0.15 * radius))
            point = surface - normal * (radius - overlap)
        else:
            inner = axes - radius - 1.5
            if np.any(inner <= 0):
                return None
            unit = _random_unit(rng) * rng.uniform(0, 1) ** (1 / 3)
            point = centre + inner * unit
        rel_heart = (point - np.asarray(heart['centre_mm'])) / (np.asarray(heart['semi_axes_mm']) + radius + 2)
        if rel_heart @ rel_heart <= 1:
            continue
        if any(np.linalg.norm(point - p) < radius + r + 2.0 for p, r in placed):
            continue
        return point
    return None


def make_synthetic_scan(out_subset: Path, index: int, seed: int, shape_zyx: Sequence[int],
                        spacing_xyz: Sequence[float] | None = None,
                        direction: Sequence[float] | None = None) -> SyntheticScan:
    """Draw and write one scan (``<uid>.mhd``/``.raw``, atomically) and return its truth.

    The scan depends only on ``(seed, index, shape, spacing, direction)``.
    """
    rng = np.random.default_rng([seed, index])
    uid = UID_PREFIX + ''.join(str(d) for d in rng.integers(0, 10, size=30))
    if index < len(_DESIGN):
        dir_name, kinds = _DESIGN[index]
    else:
        dir_name = str(rng.choice(list(_DIRECTIONS), p=[0.6, 0.15, 0.15, 0.1]))
        count = 0 if rng.random() < 0.25 else int(rng.integers(1, 4))
        kinds = [('ground_glass' if rng.random() < 0.2 else 'solid', bool(rng.random() < 0.3))
                 for _ in range(count)]
    spacing = (tuple(float(v) for v in spacing_xyz) if spacing_xyz is not None else
               (round(float(rng.uniform(0.46, 0.98)), 6),) * 2
               + (float(rng.choice([0.625, 1.0, 1.25, 1.5, 2.0, 2.5])),))
    direction = tuple(float(v) for v in (direction if direction is not None else _DIRECTIONS[dir_name]))
    nz, ny, nx = (int(v) for v in shape_zyx)
    size = (nx, ny, nz)
    diag = np.diag(np.asarray(direction).reshape(3, 3))
    extent = (np.asarray(size) - 1) * np.asarray(spacing)
    # Roughly centred world box, like scanners write; a flipped axis starts at the far end.
    origin = tuple(float(round(-d * e / 2 + rng.uniform(-30, 30), 4)) for d, e in zip(diag, extent))
    origin = (origin[0], origin[1], origin[2] - float(rng.uniform(50, 200)))
    geometry = ScanGeometry(size, spacing, origin, direction)
    padding = int(rng.choice([-2000, -3024]))

    canvas = _Canvas((nz, ny, nx), spacing)
    anatomy = _anatomy((nz, ny, nx), spacing)
    lungs = anatomy['lungs']
    _draw_slices(canvas, anatomy, padding, rng, with_gas=bool(rng.random() < 0.5))
    # Trachea from the carina up through the top slice, bronchi into each lung.
    cx, cy, fov_r = anatomy['fov']
    a = anatomy['body'][2]
    carina = np.array([cx, lungs[0]['centre_mm'][1] - 0.1 * lungs[0]['semi_axes_mm'][1],
                       lungs[0]['centre_mm'][2] + 0.35 * lungs[0]['semi_axes_mm'][2]])
    trachea_r = max(0.06 * a, 1.5 * max(spacing[0], spacing[1]))
    _carve_tube(canvas, carina, carina + np.array([0, 0, anatomy['fov_z']]), trachea_r)
    for lung in lungs:
        _carve_tube(canvas, carina, np.asarray(lung['centre_mm'])
                    + np.array([0, 0, 0.2 * lung['semi_axes_mm'][2]]), 0.7 * trachea_r)
    # Vessel trees from each hilum, three roots per lung (upper, middle, lower).
    for side, lung in zip((-1, 1), lungs):
        centre, axes = np.asarray(lung['centre_mm']), np.asarray(lung['semi_axes_mm'])
        for dz in (-0.35, 0.0, 0.35):
            root = centre + np.array([-side * 0.55 * axes[0], 0, dz * axes[2]])
            direction0 = np.array([side, rng.uniform(-0.5, 0.5), dz + rng.uniform(-0.3, 0.3)])
            _vessel_tree(canvas, rng, root, direction0 / np.linalg.norm(direction0),
                         radius=float(np.clip(0.09 * axes[0], 1.2, 5.0)),
                         length=0.4 * axes[0], lungs=lungs,
                         min_radius=max(0.4, 0.5 * spacing[0]))
    # Nodules.
    histogram = load_diameter_histogram()
    max_diameter = 0.9 * float(min(min(lg['semi_axes_mm']) for lg in lungs))
    nodules: list[SyntheticNodule] = []
    placed: list[tuple[np.ndarray, float]] = []
    for kind, juxta in kinds:
        for _ in range(20):
            diameter = _sample_diameter(rng, max_diameter, histogram)
            lung_index = int(rng.integers(0, 2))
            point = _place_nodule(rng, lungs, anatomy['heart'], lung_index, diameter / 2, juxta, placed)
            if point is not None:
                break
        else:
            raise RuntimeError(f'scan {index}: could not place a {kind} nodule in lungs of '
                               f'{lungs[0]["semi_axes_mm"]} mm')
        placed.append((point, diameter / 2))
        _draw_ball(canvas, point, diameter / 2, HU_SOLID if kind == 'solid' else HU_GGO, HU_LUNG)
        index_xyz = point / np.asarray(spacing)
        world = geometry.index_to_world(index_xyz)
        nodules.append(SyntheticNodule([float(v) for v in world], [float(v) for v in index_xyz],
                                       float(diameter), kind, bool(juxta), lung_index))
    # Noise inside the field of view (the padding stays exact, as scanners write it).
    xs = (np.arange(nx) * spacing[0])[None, :]
    ys = (np.arange(ny) * spacing[1])[:, None]
    fov = ((xs - cx) ** 2 + (ys - cy) ** 2 <= fov_r ** 2)
    sigma = float(rng.uniform(10, 25))
    for z0 in range(0, nz, 16):
        slab = canvas.volume[z0:z0 + 16]
        noise = rng.normal(0.0, sigma, size=slab.shape).astype(np.float32) * fov
        slab[...] = np.clip(slab + noise, -3024, 3071).astype(np.int16)

    _write_mhd(canvas.volume, geometry, out_subset, uid)
    return SyntheticScan(uid, f'{out_subset.name}/{uid}.mhd', list(size), list(spacing),
                         list(origin), list(direction), padding, lungs, anatomy['heart'], nodules)


def _write_mhd(volume: np.ndarray, geometry: ScanGeometry, out_subset: Path, uid: str) -> None:
    """Write ``<uid>.mhd``/``.raw`` via a hidden temporary folder; the ``.mhd`` lands last."""
    image = sitk.GetImageFromArray(volume)
    image.SetSpacing(geometry.spacing_xyz)
    image.SetOrigin(geometry.origin_xyz)
    image.SetDirection(geometry.direction)
    out_subset.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_subset, prefix='.tmp-'))
    try:
        sitk.WriteImage(image, str(tmp / f'{uid}.mhd'), useCompression=False)
        os.replace(tmp / f'{uid}.raw', out_subset / f'{uid}.raw')
        os.replace(tmp / f'{uid}.mhd', out_subset / f'{uid}.mhd')
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _scan_job(job: tuple) -> SyntheticScan:
    return make_synthetic_scan(*job)


def make_synthetic_luna16(out_dir: str | os.PathLike, num_scans: int = 4, seed: int = 0,
                          shape: Sequence[int] = DEFAULT_SHAPE,
                          spacing_xyz: Sequence[float] | None = None,
                          direction: Sequence[float] | None = None,
                          workers: int = 1) -> list[SyntheticScan]:
    """Write a synthetic LUNA16-shaped data set (see the module docstring).

    Args:
        out_dir: Output root; gets ``subset0/``, ``annotations.csv``, ``ground_truth.json``.
        num_scans: Number of scans (>= 1).
        seed: Everything is deterministic from it.
        shape: ``(z, y, x)`` voxels per scan; at least 16 x 64 x 64.
        spacing_xyz: Force this spacing on every scan (default: drawn per scan).
        direction: Force this direction matrix (9 numbers) on every scan.
        workers: Parallel processes.

    Returns:
        The truth of every scan (also in ``ground_truth.json``).
    """
    shape = tuple(int(v) for v in shape)
    if len(shape) != 3 or shape[0] < 16 or shape[1] < 64 or shape[2] < 64:
        raise ValueError(f'shape must be (z, y, x) of at least (16, 64, 64), got {shape}')
    if num_scans < 1:
        raise ValueError(f'num_scans must be >= 1, got {num_scans}')
    out_dir = Path(out_dir)
    subset = out_dir / 'subset0'
    jobs = [(subset, i, seed, shape, spacing_xyz, direction) for i in range(num_scans)]
    scans = run_jobs(_scan_job, jobs, workers, desc='synthetic scans')
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator='\n')
    writer.writerow(ANNOTATION_COLUMNS)
    for scan in scans:
        for nodule in scan.nodules:
            writer.writerow([scan.seriesuid, *(repr(v) for v in nodule.coord_xyz),
                             repr(nodule.diameter_mm)])
    atomic_write_text(out_dir / 'annotations.csv', buffer.getvalue())
    atomic_write_json(out_dir / 'ground_truth.json',
                      {'seed': seed, 'shape_zyx': list(shape), 'scans': [asdict(s) for s in scans]},
                      indent=1)
    return scans


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line arguments."""
    parser = argparse.ArgumentParser(
        description='Write a synthetic LUNA16-shaped data set: subset0/<seriesuid>.mhd/.raw '
                    '(int16 HU), annotations.csv (world mm) and ground_truth.json.',
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument('--out', type=Path, required=True, help='output folder')
    parser.add_argument('--num-scans', type=int, default=4, help='number of scans')
    parser.add_argument('--seed', type=int, default=0, help='random seed')
    parser.add_argument('--shape', type=int, nargs=3, default=list(DEFAULT_SHAPE),
                        metavar=('Z', 'Y', 'X'),
                        help='voxels per scan; 300 512 512 gives full-size scans')
    parser.add_argument('--workers', type=int, default=1, help='parallel processes')
    parser.add_argument('--verbose', action='store_true', help='debug messages')
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    args = parse_args(argv)
    setup_logging(args.verbose)
    try:
        scans = make_synthetic_luna16(args.out, args.num_scans, args.seed, args.shape,
                                      workers=args.workers)
    except (ValueError, RuntimeError, OSError) as exc:
        logger.error('%s', exc)
        return 1
    nodules = [n for s in scans for n in s.nodules]
    logger.info('wrote %d scans (%d without nodules) and %d nodules (%d juxta-pleural, %d '
                'ground-glass) to %s', len(scans), sum(not s.nodules for s in scans), len(nodules),
                sum(n.juxta_pleural for n in nodules), sum(n.kind == 'ground_glass' for n in nodules),
                args.out)
    return 0


if __name__ == '__main__':
    sys.exit(main())
