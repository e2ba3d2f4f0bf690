"""The ``hard`` preset (the default): scans that are hard where real chest CT is hard.

On top of the chest of :mod:`.anatomy` (body wall, ribs, spine, mediastinum, heart,
airways, vessel trees and through-plane vessels), a hard scan holds:

* nodules of LUNA16's sizes, of four kinds: solid (~20-60 HU), ground glass
  (-750..-500 HU), part-solid (a solid core in ground glass) and calcified (a core of
  400-900 HU); shaped as spheres, ellipsoids, lobulated (a union of spheres) or
  spiculated (thin strands radiating from the body; drawn, but not part of the label or
  the diameter);
* located in the parenchyma, against a vessel (juxta-vascular: a vessel touches it), or
  indenting the lung from the costal pleura, the mediastinum or the heart: the lesion is
  cut flat by the thoracic cavity, so it takes the place of lung inside the rib cage and
  its soft tissue merges with the wall's;
* in a few scans a mass of 3-6 cm against the pleura or mediastinum, listed in
  ``annotations_excluded.csv`` (as LUNA16 lists findings that are not scored) and not in
  the label volume;
* scanner effects that vary by scan: slice thickness 0.6-2.5 mm with partial-volume
  averaging in z, a reconstruction kernel (soft / standard / lung: in-plane blur, and
  noise of its own level shaped by the same blur, so a sharp kernel has fine-grained
  noise and a soft one blotchy noise), and the padding outside the field of view
  (-2000 or -3024 HU, sometimes -1024).

What ``annotations.csv`` says of a lesion is what a reader would: the centroid of the
drawn lesion and its long axis on its largest axial cross-section.

The first four scans follow a fixed design so that even a 4-scan set shows every kind,
shape and location, and masses where the lungs are big enough for them (lung semi-axes
of at least about 21 mm in-plane, i.e. a field of view of about 150 mm or more: most
256 x 256 scans at LUNA16's spacing, no 128 x 128 one); later scans are random.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from scipy import ndimage

from projects.lung_nodule.ct import ScanGeometry

from .anatomy import carve_airways, chest_layout, draw_chest, paint_vessels, pulmonary_vessels
from .common import (DIRECTIONS, UID_PREFIX, Canvas, SyntheticNodule, SyntheticScan, jsonable,
                     load_diameter_histogram, random_unit, sample_diameter, write_mhd)
from .shapes import (Capsule, Cavity, Ellipsoid, LesionShape, Measured, measure_lesion,
                     occupancy, random_rotation, spicules_for, z_subsamples)

__all__ = ['KERNELS', 'make_hard_scan']

logger = logging.getLogger('data_prep')

KINDS = {'solid': 0.55, 'ground_glass': 0.14, 'part_solid': 0.16, 'calcified': 0.15}
SHAPES = {
    'solid': {'sphere': 0.3, 'ellipsoid': 0.3, 'lobulated': 0.2, 'spiculated': 0.2},
    'ground_glass': {'sphere': 0.4, 'ellipsoid': 0.4, 'lobulated': 0.2},
    'part_solid': {'sphere': 0.4, 'ellipsoid': 0.4, 'lobulated': 0.2},
    'calcified': {'sphere': 0.8, 'lobulated': 0.2},
}
LOCATIONS = {'parenchyma': 0.35, 'pleural': 0.25, 'mediastinal': 0.1, 'cardiac': 0.08,
             'vascular': 0.22}
INDENTING = ('pleural', 'mediastinal', 'cardiac')
# Reconstruction kernels: ranges of the in-plane blur (Gaussian sigma, mm) and of the
# noise (HU, its standard deviation in a uniform region, after the blur).
KERNELS = {
    'soft': {'blur_mm': (0.55, 0.8), 'noise_hu': (8.0, 16.0)},  # PSF FWHM ~1.3-1.9 mm
    'standard': {'blur_mm': (0.4, 0.55), 'noise_hu': (14.0, 28.0)},  # ~0.9-1.3 mm
    'lung': {'blur_mm': (0.2, 0.35), 'noise_hu': (30.0, 55.0)},  # ~0.5-0.8 mm
}
PADDINGS = {-2000: 0.45, -3024: 0.4, -1024: 0.15}
# Fixed design of the first scans: direction, nodules (kind, shape, location), masses.
_DESIGN = [
    ('identity', [('solid', 'sphere', 'parenchyma'), ('part_solid', 'ellipsoid', 'parenchyma'),
                  ('calcified', 'sphere', 'parenchyma'), ('solid', 'lobulated', 'vascular')],
     ['mediastinal']),
    ('flip_z', [('solid', 'ellipsoid', 'pleural'), ('solid', 'spiculated', 'parenchyma'),
                ('ground_glass', 'ellipsoid', 'parenchyma'), ('solid', 'sphere', 'cardiac')], []),
    ('flip_xy', [('solid', 'lobulated', 'mediastinal'), ('part_solid', 'lobulated', 'pleural'),
                 ('solid', 'sphere', 'vascular')], ['pleural']),
    ('identity', [], []),
]
MASS_RANGE_MM = (30.0, 60.0)


def _pick(rng: np.random.Generator, table: dict):
    keys = list(table)
    p = np.array([table[k] for k in keys], dtype=float)
    return keys[int(rng.choice(len(keys), p=p / p.sum()))]


# ------------------------------------------------------------------ lesions
def _lesion_shape(rng: np.random.Generator, kind: str, shape: str, centre: np.ndarray,
                  radius: float, cavity: Cavity) -> tuple[LesionShape, dict]:
    """The shape and densities of a lesion of nominal ``radius`` at ``centre``."""
    core: list[Ellipsoid] = []
    spicules: list[Capsule] = []
    if shape == 'sphere':
        body = [Ellipsoid(centre, np.full(3, radius))]
    elif shape in ('ellipsoid', 'spiculated'):
        low = 0.6 if shape == 'ellipsoid' else 0.8
        axes = radius * np.array([1.0, rng.uniform(low, 1.0), rng.uniform(low, 1.0)])
        body = [Ellipsoid(centre, axes, random_rotation(rng))]
        if shape == 'spiculated':
            spicules = spicules_for(rng, body[0], int(rng.integers(8, 17)))
    elif shape == 'lobulated':
        main = 0.8 * radius if kind != 'mass' else 0.85 * radius
        body = [Ellipsoid(centre, np.full(3, main))]
        for _ in range(int(rng.integers(3, 6) if kind != 'mass' else rng.integers(2, 5))):
            lobe = radius * float(rng.uniform(0.45, 0.65) if kind != 'mass' else rng.uniform(0.4, 0.55))
            body.append(Ellipsoid(centre + random_unit(rng) * radius * float(rng.uniform(0.45, 0.7)),
                                  np.full(3, lobe)))
    else:
        raise ValueError(f'unknown lesion shape {shape!r}')
    if kind == 'solid':
        hu = {'body': float(rng.uniform(20, 60))}
    elif kind == 'ground_glass':
        hu = {'body': float(rng.uniform(-750, -500))}
    elif kind == 'part_solid':
        hu = {'body': float(rng.uniform(-700, -500)), 'core': float(rng.uniform(0, 50))}
        core = [Ellipsoid(centre + random_unit(rng) * 0.15 * radius,  # >= 4 mm: visible
                          np.full(3, min(0.75 * radius, max(2.0, radius * float(rng.uniform(0.4, 0.6))))))]
    elif kind == 'calcified':
        hu = {'body': float(rng.uniform(30, 60)), 'core': float(rng.uniform(400, 900))}
        core = [Ellipsoid(centre, np.full(3, min(radius, max(1.5, radius * float(rng.uniform(0.5, 1.0))))))]
    elif kind == 'mass':
        hu = {'body': float(rng.uniform(30, 50))}
        if rng.random() < 0.5:  # necrotic centre
            hu['core'] = float(rng.uniform(5, 20))
            core = [Ellipsoid(centre, np.full(3, 0.4 * radius))]
    else:
        raise ValueError(f'unknown lesion kind {kind!r}')
    return LesionShape(body, core, spicules, cavity), hu


def _surface_point(rng: np.random.Generator, location: str, lung_index: int, layout: dict,
                   cavity: Cavity) -> tuple[np.ndarray, np.ndarray] | None:
    """A point of the lung's boundary of the given kind, and the unit normal pointing
    into the lung there."""
    side = -1.0 if lung_index == 0 else 1.0
    lung = layout['lungs'][lung_index]
    if location in ('pleural', 'mediastinal'):
        centre, axes = np.asarray(lung['centre_mm']), np.asarray(lung['semi_axes_mm'])
        if location == 'pleural':  # lateral, anterior and posterior costal surface
            theta, phi = rng.uniform(-0.95, 0.95) * math.pi / 2, rng.uniform(-0.6, 0.6) * math.pi / 2
            lateral = side
        else:  # the medial surface, facing the mediastinum
            theta, phi = rng.uniform(-0.7, 0.7) * math.pi / 2, rng.uniform(-0.3, 0.6) * math.pi / 2
            lateral = -side
        unit = np.array([lateral * math.cos(theta) * math.cos(phi), math.sin(theta) * math.cos(phi),
                         math.sin(phi)])
        normal = unit / axes
        return centre + axes * unit, -normal / np.linalg.norm(normal)
    # Cardiac: a point of the heart's surface that lies in this lung.
    heart = layout['heart']
    centre, axes = np.asarray(heart['centre_mm']), np.asarray(heart['semi_axes_mm'])
    unit = random_unit(rng)
    point = centre + axes * unit
    lung_ell = cavity.lungs[lung_index]
    x, y, z = point
    if lung_ell.sdf(np.asarray(z), np.asarray(y), np.asarray(x)) > -1.0:
        return None
    normal = unit / axes
    return point, normal / np.linalg.norm(normal)


def _place(rng: np.random.Generator, location: str, radius: float, layout: dict, cavity: Cavity,
           placed: list[tuple[np.ndarray, float]], depth_range: tuple[float, float]
           ) -> tuple[np.ndarray, int] | None:
    """A centre for a lesion of bounding ``radius`` at ``location``, clear of ``placed``."""
    for _ in range(100):
        lung_index = int(rng.integers(0, 2))
        if location in INDENTING:
            found = _surface_point(rng, location, lung_index, layout, cavity)
            if found is None:
                continue
            surface, inward = found
            point = surface + inward * radius * float(rng.uniform(*depth_range))
            if not cavity.contains(point, margin=0.5):
                continue
        else:
            lung = layout['lungs'][lung_index]
            point = (np.asarray(lung['centre_mm']) + np.asarray(lung['semi_axes_mm'])
                     * random_unit(rng) * float(rng.uniform(0, 1)) ** (1 / 3))
            if not cavity.contains(point, margin=radius + 1.5):
                continue
        if any(np.linalg.norm(point - p) < radius + r + 2.0 for p, r in placed):
            continue
        return point, lung_index
    return None


def _touching_vessel(rng: np.random.Generator, centre: np.ndarray, radius: float) -> Capsule:
    """A vessel passing along a nodule and touching it (juxta-vascular)."""
    d = random_unit(rng)
    n = np.cross(d, random_unit(rng))
    n /= np.linalg.norm(n)
    rv = float(rng.uniform(0.7, 1.6))
    axis_point = centre + n * (0.85 * radius + 0.5 * rv)
    half = radius + float(rng.uniform(6, 15))
    return Capsule(axis_point - d * half, axis_point + d * half, rv, 0.8 * rv)


@dataclass
class _Lesion:
    """A placed, measured lesion waiting to be drawn."""

    kind: str
    shape_name: str
    location: str
    lung: int
    shape: LesionShape
    hu: dict
    measured: Measured
    nominal_mm: float
    vessel: Capsule | None  # the vessel touching a juxta-vascular nodule

    def record(self, geometry: ScanGeometry) -> SyntheticNodule:
        m = self.measured
        params = {'nominal_diameter_mm': self.nominal_mm, 'hu': self.hu, **self.shape.as_dict()}
        if self.vessel is not None:
            params['touching_vessel'] = self.vessel.as_dict()
        return SyntheticNodule(
            [float(v) for v in geometry.index_to_world(m.centroid_index_xyz)],
            [float(v) for v in m.centroid_index_xyz], float(m.long_axis_mm), self.kind,
            self.location in INDENTING, self.lung, shape=self.shape_name, location=self.location,
            equivalent_diameter_mm=m.equivalent_diameter_mm, volume_mm3=m.volume_mm3,
            long_axis_slice=m.long_axis_slice, long_axis_index_xyz=m.long_axis_index_xyz,
            params=jsonable(params))


def _make_lesion(rng: np.random.Generator, canvas: Canvas, kind: str, shape_name: str,
                 location: str, diameter: float, layout: dict, cavity: Cavity,
                 placed: list[tuple[np.ndarray, float]], offsets: np.ndarray,
                 accept: tuple[float, float]) -> _Lesion | None:
    """Place, shape and measure a lesion; ``None`` if no placement gives a measured long
    axis within ``accept`` (mm)."""
    depth = (0.2, 0.45) if kind == 'mass' else (0.3, 0.7)
    # How far the body may reach from its centre (lobes bulge out; spicules are cut by
    # the cavity anyway).
    reach = diameter / 2 * (1.35 if shape_name == 'lobulated' else 1.0)
    for _ in range(8):
        spot = _place(rng, location, reach, layout, cavity, placed, depth)
        if spot is None:
            continue
        centre, lung = spot
        shape, hu = _lesion_shape(rng, kind, shape_name, centre, diameter / 2, cavity)
        measured = measure_lesion(canvas, shape, offsets, margin_mm=float(canvas.spacing[:2].mean()))
        if measured is None or not accept[0] <= measured.long_axis_mm <= accept[1]:
            continue
        vessel = _touching_vessel(rng, centre, diameter / 2) if location == 'vascular' else None
        placed.append((centre, max(shape.radius(), diameter / 2)))
        return _Lesion(kind, shape_name, location, lung, shape, hu, measured, diameter, vessel)
    return None


def _paint_lesion(canvas: Canvas, lesion: _Lesion, offsets: np.ndarray) -> None:
    """Mix the lesion (body + spicules, then its core) into the volume with partial volume."""
    box = lesion.measured.box
    zs, ys, xs = canvas.grid_mm(box)
    edge = float(canvas.spacing[:2].mean())
    drawn = (occupancy(lesion.shape.drawn_sdf, zs, ys, xs, offsets, edge)
             if lesion.shape.spicules else lesion.measured.body)
    region = canvas.volume[box]
    region += (lesion.hu['body'] - region) * drawn
    if lesion.shape.core:
        core = occupancy(lesion.shape.core_sdf, zs, ys, xs, offsets, edge)
        region += (lesion.hu['core'] - region) * core


# ------------------------------------------------------------------ scanner
def _z_partial_volume(volume: np.ndarray, thickness: float, spacing_z: float) -> np.ndarray:
    """Average each slice over a slab ``thickness`` mm thick (piecewise-constant voxels)."""
    r = thickness / spacing_z
    if r <= 1.0 + 1e-6:
        return volume
    half = int(math.ceil((r - 1) / 2))
    j = np.arange(-half, half + 1)
    weights = np.clip(np.minimum(j + 0.5, r / 2) - np.maximum(j - 0.5, -r / 2), 0, 1)
    return ndimage.convolve1d(volume, (weights / weights.sum()).astype(np.float32), axis=0,
                              mode='nearest')


def _gaussian_gain(sigma_px: float, truncate: float = 3.0) -> float:
    """Root of the sum of squares of scipy's 1D Gaussian kernel: the std that unit white
    noise keeps after the filter along one axis."""
    radius = int(truncate * sigma_px + 0.5)
    k = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma_px) ** 2)
    return float(np.sqrt(((k / k.sum()) ** 2).sum()))


def _geometry(rng: np.random.Generator, shape_zyx: Sequence[int], dir_name: str,
              spacing_xyz: Sequence[float] | None, direction: Sequence[float] | None
              ) -> ScanGeometry:
    """LUNA16-like spacing, a roughly centred origin; flipped axes start at the far end."""
    spacing = (tuple(float(v) for v in spacing_xyz) if spacing_xyz is not None else
               (round(float(rng.uniform(0.46, 0.98)), 6),) * 2
               + (float(rng.choice([0.625, 1.0, 1.25, 1.5, 2.0, 2.5])),))
    direction = tuple(float(v) for v in (direction if direction is not None else DIRECTIONS[dir_name]))
    nz, ny, nx = (int(v) for v in shape_zyx)
    size = (nx, ny, nz)
    diag = np.diag(np.asarray(direction).reshape(3, 3))
    extent = (np.asarray(size) - 1) * np.asarray(spacing)
    origin = [float(round(-d * e / 2 + rng.uniform(-30, 30), 4)) for d, e in zip(diag, extent)]
    origin[2] -= float(rng.uniform(50, 200))
    return ScanGeometry(size, spacing, tuple(origin), direction)


# ------------------------------------------------------------------ one scan
def make_hard_scan(out_subset: Path, index: int, seed: int, shape_zyx: Sequence[int],
                   spacing_xyz: Sequence[float] | None = None,
                   direction: Sequence[float] | None = None
                   ) -> tuple[SyntheticScan, list[np.ndarray]]:
    """Draw and write one hard scan (``<uid>.mhd``/``.raw``, atomically).

    The scan depends only on ``(seed, index, shape, spacing, direction)``.

    Returns:
        Its truth, and per nodule (not per excluded mass) the flat indices of its label
        voxels (partial-volume occupancy >= 0.5).
    """
    rng = np.random.default_rng([seed, index, 2])
    uid = UID_PREFIX + ''.join(str(d) for d in rng.integers(0, 10, size=30))
    if index < len(_DESIGN):
        dir_name, specs, masses = _DESIGN[index]
    else:
        dir_name = str(rng.choice(list(DIRECTIONS), p=[0.6, 0.15, 0.15, 0.1]))
        count = 0 if rng.random() < 0.15 else int(rng.integers(1, 8))
        specs = []
        for _ in range(count):
            kind = _pick(rng, KINDS)
            specs.append((kind, _pick(rng, SHAPES[kind]), _pick(rng, LOCATIONS)))
        masses = [str(rng.choice(['pleural', 'mediastinal']))] if rng.random() < 0.15 else []
    geometry = _geometry(rng, shape_zyx, dir_name, spacing_xyz, direction)
    spacing = geometry.spacing_xyz
    thickness = float(max(spacing[2], min(2.5, spacing[2] * float(rng.choice([1.0, 1.0, 1.25, 1.5, 2.0])))))
    kernel_name = str(rng.choice(list(KERNELS), p=[0.3, 0.4, 0.3]))
    spec = KERNELS[kernel_name]
    kernel = {'name': kernel_name, 'blur_mm': float(rng.uniform(*spec['blur_mm'])),
              'noise_hu': float(rng.uniform(*spec['noise_hu']))}
    padding = int(_pick(rng, PADDINGS))

    nz, ny, nx = (int(v) for v in shape_zyx)
    canvas = Canvas((nz, ny, nx), spacing, dtype=np.float32)
    layout = chest_layout((nz, ny, nx), spacing, rng)
    cavity = Cavity.from_anatomy(layout['lungs'], layout['heart'])
    offsets = z_subsamples(thickness)

    # Lesions: placed and measured first (masses before nodules, which keep clear of them).
    placed: list[tuple[np.ndarray, float]] = []
    excluded: list[_Lesion] = []
    lung_axes = np.asarray(layout['lungs'][0]['semi_axes_mm'])
    mass_cap = min(MASS_RANGE_MM[1] - 2, 1.5 * float(lung_axes[:2].min()))
    for location in masses:
        if mass_cap < MASS_RANGE_MM[0] + 2:
            logger.debug('scan %d: lungs of %s mm are too small for a 3-6 cm mass', index, lung_axes)
            break
        mass = _make_lesion(rng, canvas, 'mass', 'lobulated', location,
                            float(rng.uniform(MASS_RANGE_MM[0] + 2, mass_cap)), layout, cavity,
                            placed, offsets, MASS_RANGE_MM)
        if mass is not None:
            excluded.append(mass)
    histogram = load_diameter_histogram()
    max_diameter = 0.9 * float(lung_axes.min())
    lesions: list[_Lesion] = []
    for kind, shape_name, location in specs:
        # Calcified granulomas are small; a part-solid nodule needs room for its core.
        cap = min(max_diameter, 12.0) if kind == 'calcified' else max_diameter
        low = min(6.0, cap - 1.0) if kind == 'part_solid' else 0.0
        lesion = _make_lesion(rng, canvas, kind, shape_name, location,
                              sample_diameter(rng, cap, histogram, low), layout, cavity, placed,
                              offsets, (3.0, 40.0))
        if lesion is None:
            logger.debug('scan %d: no room for a %s %s %s nodule', index, kind, shape_name, location)
        else:
            lesions.append(lesion)

    vessels, bronchi = pulmonary_vessels(rng, layout, cavity, min_radius=max(0.35, 0.35 * spacing[0]))
    vessels += [(lesion.vessel, 40.0) for lesion in lesions if lesion.vessel is not None]

    # Anatomy, airways, the slab average in z, then vessels and lesions (partial volume
    # of their own), the kernel's blur and noise, and the padding.
    cavity_mask = draw_chest(canvas, layout)
    carve_airways(canvas, layout, cavity_mask, bronchi)
    canvas.volume = _z_partial_volume(canvas.volume, thickness, spacing[2])
    anatomy = canvas.volume.copy()
    paint_vessels(canvas, anatomy, cavity_mask, vessels, z_subsamples(thickness, step_mm=0.8))
    del anatomy
    for lesion in [*excluded, *lesions]:
        _paint_lesion(canvas, lesion, offsets)
    # The kernel: white noise, then the in-plane blur that shapes both the image and the
    # noise (scaled so that the noise's std after the blur is the kernel's noise_hu);
    # slab by slab (the blur is in-plane), then the padding outside the field of view.
    volume = canvas.volume
    sigma = (kernel['blur_mm'] / spacing[1], kernel['blur_mm'] / spacing[0])
    gain = _gaussian_gain(sigma[0]) * _gaussian_gain(sigma[1])
    fov = _fov_mask(layout, ny, nx, spacing)
    out = np.empty(volume.shape, dtype=np.int16)
    for z0 in range(0, nz, 16):
        slab = volume[z0:z0 + 16]
        noise = rng.standard_normal(size=slab.shape, dtype=np.float32)
        noise *= kernel['noise_hu'] / gain
        slab += noise
        ndimage.gaussian_filter(slab, sigma=(0, *sigma), output=slab, truncate=3.0)
        slab[:, ~fov] = padding
        np.clip(np.round(slab), -3024, 3071, out=slab)
        out[z0:z0 + 16] = slab
    write_mhd(out, geometry, out_subset, uid)
    scan = SyntheticScan(
        uid, f'{out_subset.name}/{uid}.mhd', list(geometry.size_xyz), list(spacing),
        list(geometry.origin_xyz), list(geometry.direction), padding, layout['lungs'],
        layout['heart'], [lesion.record(geometry) for lesion in lesions], preset='hard',
        slice_thickness_mm=thickness, kernel=kernel,
        excluded=[mass.record(geometry) for mass in excluded])
    return scan, [lesion.measured.flat_indices for lesion in lesions]


def _fov_mask(layout: dict, ny: int, nx: int, spacing: Sequence[float]) -> np.ndarray:
    cx, cy, fov_r = layout['fov']
    xs = (np.arange(nx) * spacing[0])[None, :]
    ys = (np.arange(ny) * spacing[1])[:, None]
    return (xs - cx) ** 2 + (ys - cy) ** 2 <= fov_r ** 2
