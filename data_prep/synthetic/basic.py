"""The ``basic`` preset: the synthetic scans as the project first made them.

Kept bit for bit (same seed -> same arrays and ``annotations.csv``; a test holds it to
checksums taken before the ``hard`` preset existed), so that results measured on it stay
reproducible. What a basic scan holds:

* the scanner's circular field of view, padding outside it at -2000 or -3024 HU;
* air (-1000) around a body ellipse of soft tissue (0..60 HU) with a fat layer, a
  spine and ribs (bone);
* two lungs (about -850 HU) joined to a trachea that leaves through the top slice, a
  heart carving the left lung, sometimes bowel gas under the lungs;
* branching vessel trees in the lungs (bright tubes: across a slice they look like
  nodules);
* spherical nodules of 3-30 mm, diameters drawn from LUNA16's distribution, solid
  (~40 HU) or ground-glass (~-600 HU), some touching the pleura (juxta-pleural), none in
  some scans;
* Gaussian noise of one level per scan.

The first four scans follow a fixed design so that even a 4-scan set covers the cases:
0 identity direction, solid + ground-glass nodules; 1 z flipped, one juxta-pleural
nodule; 2 x and y flipped, a juxta-pleural nodule; 3 no nodule. Later scans are random.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np

from projects.lung_nodule.ct import ScanGeometry

from .common import (DIRECTIONS, UID_PREFIX, Canvas, SyntheticNodule, SyntheticScan,
                     load_diameter_histogram, random_unit, sample_diameter, segment_distance,
                     write_mhd)

__all__ = ['make_basic_scan']

# Fixed design of the first scans: (direction, nodule kinds as (kind, juxta_pleural)).
_DESIGN = [
    ('identity', [('solid', False), ('ground_glass', False)]),
    ('flip_z', [('solid', True), ('solid', False)]),
    ('flip_xy', [('solid', True)]),
    ('identity', []),
]
HU_AIR, HU_LUNG, HU_FAT, HU_TISSUE, HU_BONE = -1000.0, -850.0, -90.0, 40.0, 600.0
HU_SOLID, HU_GGO = 40.0, -600.0


def _in_ellipsoids(zs: np.ndarray, ys: np.ndarray, xs: np.ndarray, ellipsoids: list[dict],
                   shrink_mm: float = 0.0) -> np.ndarray:
    inside = np.zeros(np.broadcast_shapes(zs.shape, ys.shape, xs.shape), dtype=bool)
    for e in ellipsoids:
        (cx, cy, cz), (ax, ay, az) = e['centre_mm'], e['semi_axes_mm']
        inside |= (((xs - cx) / (ax - shrink_mm)) ** 2 + ((ys - cy) / (ay - shrink_mm)) ** 2
                   + ((zs - cz) / (az - shrink_mm)) ** 2) <= 1.0
    return inside


def _profile(distance: np.ndarray, radius: float, edge: float) -> np.ndarray:
    """1 inside, 0 outside, a linear partial-volume ramp one ``edge`` wide at ``radius``."""
    return np.clip((radius - distance) / edge + 0.5, 0.0, 1.0)


def _draw_tube(canvas: Canvas, p0: np.ndarray, p1: np.ndarray, radius: float, hu: float,
               base_hu: float, lungs: list[dict] | None) -> None:
    """Bright tube (vessel) from ``p0`` to ``p1`` (mm, x y z), only inside ``lungs``."""
    box = canvas.bbox(np.minimum(p0, p1) - radius - 1, np.maximum(p0, p1) + radius + 1)
    if box is None:
        return
    zs, ys, xs = canvas.grid_mm(box)
    weight = _profile(segment_distance(zs, ys, xs, p0, p1), radius, float(canvas.spacing[:2].mean()))
    where = weight > 0
    if lungs is not None:
        where &= _in_ellipsoids(zs, ys, xs, lungs)
    canvas.paint_max(box, base_hu + (hu - base_hu) * weight, where)


def _carve_tube(canvas: Canvas, p0: np.ndarray, p1: np.ndarray, radius: float) -> None:
    """Air tube (trachea, bronchi)."""
    box = canvas.bbox(np.minimum(p0, p1) - radius - 1, np.maximum(p0, p1) + radius + 1)
    if box is None:
        return
    zs, ys, xs = canvas.grid_mm(box)
    canvas.volume[box][segment_distance(zs, ys, xs, p0, p1) <= radius] = int(HU_AIR)


def _draw_ball(canvas: Canvas, centre: np.ndarray, radius: float, hu: float,
               base_hu: float) -> np.ndarray:
    """Paint a ball; return the flat indices of the voxels whose centre lies inside it."""
    box = canvas.bbox(centre - radius - 1, centre + radius + 1)
    if box is None:
        return np.empty(0, dtype=np.int64)
    zs, ys, xs = canvas.grid_mm(box)
    dist = np.sqrt((xs - centre[0]) ** 2 + (ys - centre[1]) ** 2 + (zs - centre[2]) ** 2)
    weight = _profile(dist, radius, float(canvas.spacing[:2].mean()))
    canvas.paint_max(box, base_hu + (hu - base_hu) * weight, weight > 0)
    local = np.nonzero(dist <= radius)
    return np.ravel_multi_index(tuple(ix + sl.start for ix, sl in zip(local, box)), canvas.shape)


def _vessel_tree(canvas: Canvas, rng: np.random.Generator, root: np.ndarray,
                 direction: np.ndarray, radius: float, length: float, lungs: list[dict],
                 min_radius: float, depth: int = 0) -> None:
    end = root + direction * length
    _draw_tube(canvas, root, end, radius, float(rng.uniform(20, 70)), HU_LUNG, lungs)
    if depth >= 6 or radius * 0.72 < min_radius:
        return
    for sign in (1, -1):
        axis = np.cross(direction, random_unit(rng))
        axis /= np.linalg.norm(axis) or 1.0
        angle = math.radians(rng.uniform(25, 45)) * sign
        # Rodrigues rotation of ``direction`` about ``axis``.
        new = (direction * math.cos(angle) + np.cross(axis, direction) * math.sin(angle)
               + axis * (axis @ direction) * (1 - math.cos(angle)))
        _vessel_tree(canvas, rng, end, new / np.linalg.norm(new), radius * 0.72,
                     length * rng.uniform(0.7, 0.95), lungs, min_radius, depth + 1)


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


def _draw_slices(canvas: Canvas, anatomy: dict, padding_hu: int, rng: np.random.Generator,
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
            unit = random_unit(rng) * rng.uniform(0, 1) ** (1 / 3)
            point = centre + inner * unit
        rel_heart = (point - np.asarray(heart['centre_mm'])) / (np.asarray(heart['semi_axes_mm']) + radius + 2)
        if rel_heart @ rel_heart <= 1:
            continue
        if any(np.linalg.norm(point - p) < radius + r + 2.0 for p, r in placed):
            continue
        return point
    return None


def make_basic_scan(out_subset: Path, index: int, seed: int, shape_zyx: Sequence[int],
                    spacing_xyz: Sequence[float] | None = None,
                    direction: Sequence[float] | None = None
                    ) -> tuple[SyntheticScan, list[np.ndarray]]:
    """Draw and write one basic scan (``<uid>.mhd``/``.raw``, atomically).

    The scan depends only on ``(seed, index, shape, spacing, direction)``.

    Returns:
        Its truth, and per nodule the flat indices of its voxels (those whose centre lies
        in the sphere) for the label volume.
    """
    rng = np.random.default_rng([seed, index])
    uid = UID_PREFIX + ''.join(str(d) for d in rng.integers(0, 10, size=30))
    if index < len(_DESIGN):
        dir_name, kinds = _DESIGN[index]
    else:
        dir_name = str(rng.choice(list(DIRECTIONS), p=[0.6, 0.15, 0.15, 0.1]))
        count = 0 if rng.random() < 0.25 else int(rng.integers(1, 4))
        kinds = [('ground_glass' if rng.random() < 0.2 else 'solid', bool(rng.random() < 0.3))
                 for _ in range(count)]
    spacing = (tuple(float(v) for v in spacing_xyz) if spacing_xyz is not None else
               (round(float(rng.uniform(0.46, 0.98)), 6),) * 2
               + (float(rng.choice([0.625, 1.0, 1.25, 1.5, 2.0, 2.5])),))
    direction = tuple(float(v) for v in (direction if direction is not None else DIRECTIONS[dir_name]))
    nz, ny, nx = (int(v) for v in shape_zyx)
    size = (nx, ny, nz)
    diag = np.diag(np.asarray(direction).reshape(3, 3))
    extent = (np.asarray(size) - 1) * np.asarray(spacing)
    # Roughly centred world box, like scanners write; a flipped axis starts at the far end.
    origin = tuple(float(round(-d * e / 2 + rng.uniform(-30, 30), 4)) for d, e in zip(diag, extent))
    origin = (origin[0], origin[1], origin[2] - float(rng.uniform(50, 200)))
    geometry = ScanGeometry(size, spacing, origin, direction)
    padding = int(rng.choice([-2000, -3024]))

    canvas = Canvas((nz, ny, nx), spacing)
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
    voxels: list[np.ndarray] = []
    placed: list[tuple[np.ndarray, float]] = []
    for kind, juxta in kinds:
        for _ in range(20):
            diameter = sample_diameter(rng, max_diameter, histogram)
            lung_index = int(rng.integers(0, 2))
            point = _place_nodule(rng, lungs, anatomy['heart'], lung_index, diameter / 2, juxta, placed)
            if point is not None:
                break
        else:
            raise RuntimeError(f'scan {index}: could not place a {kind} nodule in lungs of '
                               f'{lungs[0]["semi_axes_mm"]} mm')
        placed.append((point, diameter / 2))
        hu = HU_SOLID if kind == 'solid' else HU_GGO
        voxels.append(_draw_ball(canvas, point, diameter / 2, hu, HU_LUNG))
        index_xyz = point / np.asarray(spacing)
        world = geometry.index_to_world(index_xyz)
        nodules.append(SyntheticNodule(
            [float(v) for v in world], [float(v) for v in index_xyz], float(diameter), kind,
            bool(juxta), lung_index, shape='sphere',
            location='pleural' if juxta else 'parenchyma', equivalent_diameter_mm=float(diameter),
            volume_mm3=float(math.pi / 6 * diameter ** 3),
            params={'hu': {'body': hu}, 'body': [{'type': 'ellipsoid',
                                                   'centre_mm': [float(v) for v in point],
                                                   'semi_axes_mm': [float(diameter / 2)] * 3}]}))
    # Noise inside the field of view (the padding stays exact, as scanners write it).
    xs = (np.arange(nx) * spacing[0])[None, :]
    ys = (np.arange(ny) * spacing[1])[:, None]
    fov = ((xs - cx) ** 2 + (ys - cy) ** 2 <= fov_r ** 2)
    sigma = float(rng.uniform(10, 25))
    for z0 in range(0, nz, 16):
        slab = canvas.volume[z0:z0 + 16]
        noise = rng.normal(0.0, sigma, size=slab.shape).astype(np.float32) * fov
        slab[...] = np.clip(slab + noise, -3024, 3071).astype(np.int16)

    write_mhd(canvas.volume, geometry, out_subset, uid)
    scan = SyntheticScan(uid, f'{out_subset.name}/{uid}.mhd', list(size), list(spacing),
                         list(origin), list(direction), padding, lungs, anatomy['heart'], nodules,
                         preset='basic', kernel={'name': 'white_noise', 'noise_hu': sigma})
    return scan, voxels
