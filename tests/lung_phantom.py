"""A chest phantom built in the test process, for the lung-mask tests.

Two lungs (ellipsoids of -850 HU) that the -320 HU threshold joins twice: through a
trachea and two main bronchi, and at an anterior junction (the lungs' anterior tongues
meet at the midline, where the pleurae of the two lungs touch); a heart carving the medial
side of the high-x lung; body wall with fat, muscle and ribs, a spine; a scanner
field of view padded with -2000 HU; and solid lesions (40 HU) that indent the lungs
from the chest wall, the mediastinum and the heart, and one that straddles the pleura.
A lesion is drawn where its sphere lies in the lungs (it takes the place of lung), so
its *in-lung part* is ``sphere & true lungs``. Everything is in mm about the volume's
centre (x to the right of the image, y down, z up the slices).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

HU_LUNG, HU_TISSUE, HU_FAT, HU_BONE, HU_AIR, HU_PAD = -850, 40, -100, 500, -1000, -2000


@dataclass
class Phantom:
    """A phantom volume and its truth (all boolean arrays are ``(z, y, x)``)."""

    volume: np.ndarray
    spacing_xyz: tuple[float, float, float]
    lungs: np.ndarray  # the lungs' outline: lung tissue and the lesions' in-lung parts
    lung_sides: list[np.ndarray]  # the low-x and the high-x lung, apart
    body: np.ndarray
    trachea: np.ndarray
    mediastinum: np.ndarray  # tissue between the lungs, heart included, not the junction
    lesions: dict[str, np.ndarray] = field(default_factory=dict)  # in-lung part of each


def _grid(shape_zyx, spacing_xyz):
    nz, ny, nx = shape_zyx
    sx, sy, sz = spacing_xyz
    z = (np.arange(nz) - nz / 2 + 0.5)[:, None, None] * sz
    y = (np.arange(ny) - ny / 2 + 0.5)[None, :, None] * sy
    x = (np.arange(nx) - nx / 2 + 0.5)[None, None, :] * sx
    return z, y, x


def _ellipsoid(zyx, centre_xyz, axes_xyz):
    z, y, x = zyx
    (cx, cy, cz), (ax, ay, az) = centre_xyz, axes_xyz
    return ((x - cx) / ax) ** 2 + ((y - cy) / ay) ** 2 + ((z - cz) / az) ** 2 <= 1


def _tube(zyx, p0, p1, radius):
    """Voxels within ``radius`` of the segment p0-p1 (x, y, z mm)."""
    z, y, x = zyx
    p0, p1 = np.asarray(p0, float), np.asarray(p1, float)
    d = p1 - p0
    t = ((x - p0[0]) * d[0] + (y - p0[1]) * d[1] + (z - p0[2]) * d[2]) / (d @ d)
    t = np.clip(t, 0, 1)
    return ((x - p0[0] - t * d[0]) ** 2 + (y - p0[1] - t * d[1]) ** 2
            + (z - p0[2] - t * d[2]) ** 2) <= radius ** 2


def make_chest_phantom(shape_zyx=(64, 200, 200), spacing_xyz=(1.6, 1.6, 3.0),
                       junction: bool = True, lesions: bool = True, seed: int = 0) -> Phantom:
    """Build the phantom (about 0.5 s for the default 64x200x200).

    Args:
        shape_zyx: Volume shape.
        spacing_xyz: Voxel size in mm.
        junction: Join the lungs at the anterior junction (besides the airways).
        lesions: Draw the lesions.
        seed: Seed of the image noise.
    """
    zyx = _grid(shape_zyx, spacing_xyz)
    z, y, x = zyx
    nz = shape_zyx[0]
    z_top = (nz / 2) * spacing_xyz[2]
    fov = (x ** 2 + y ** 2 <= (0.48 * shape_zyx[2] * spacing_xyz[0]) ** 2) & np.ones_like(z, bool)
    body = _ellipsoid(zyx, (0, 0, 0), (150, 110, 1e6))
    inner = _ellipsoid(zyx, (0, 0, 0), (140, 100, 1e6))
    lung_axes = (55, 80, 0.8 * z_top)
    sides = [_ellipsoid(zyx, (s * 63, 0, -0.1 * z_top), lung_axes) for s in (-1, 1)]
    heart = _ellipsoid(zyx, (25, -30, -0.45 * z_top), (45, 40, 0.35 * z_top))
    sides = [s & ~heart for s in sides]
    if junction:  # anterior tongues of both lungs that meet at the midline (middle slices)
        for k, s in enumerate((-1, 1)):
            tongue = _ellipsoid(zyx, (s * 16, -58, 0), (17, 12, 0.3 * z_top))
            sides[k] |= tongue & (s * x >= 0)
    lungs = sides[0] | sides[1]
    carina = (0, 10, 0.25 * z_top)
    trachea = _tube(zyx, carina, (0, 10, 2 * z_top), 9.0)
    bronchi = _tube(zyx, carina, (-45, 5, 0.05 * z_top), 6.0) | _tube(zyx, carina, (45, 5, 0.05 * z_top), 6.0)
    volume = np.full(lungs.shape, HU_AIR, np.float32)
    volume[body] = HU_FAT
    volume[inner] = HU_TISSUE
    ribs = np.zeros(lungs.shape, bool)
    for angle in np.linspace(0, 2 * np.pi, 24, endpoint=False):
        ribs |= (x - 128 * np.cos(angle)) ** 2 + (y - 89 * np.sin(angle)) ** 2 <= 6 ** 2
    volume[ribs & inner] = HU_BONE
    volume[(x ** 2 + (y - 85) ** 2 <= 15 ** 2) & np.ones_like(z, bool)] = HU_BONE  # spine
    volume[lungs] = HU_LUNG
    volume[trachea | (bronchi & ~lungs)] = HU_AIR
    volume[bronchi & lungs] = HU_AIR
    mediastinum = inner & ~lungs & ~trachea & ~bronchi & (np.abs(x) <= 20)
    drawn = {}
    if lesions:
        zc = -0.1 * z_top
        # (name, centre on the lung surface, inward unit direction, radius, depth of the
        # centre inside the lung in radii: 0 = straddling the pleura)
        specs = [
            ('pleural_straddling_10mm', (-118, 0, zc + 10), (1, 0, 0), 5.0, 0.0),
            ('pleural_20mm', (118, 0, zc - 20), (-1, 0, 0), 10.0, 0.6),
            ('chest_wall_mass_50mm', (-63, 80, zc - 10), (0, -1, 0), 25.0, 0.7),
            ('chest_wall_mass_36mm', (70, 79, zc + 25), (0, -1, 0), 18.0, 0.6),
            ('mediastinal_15mm', (-8, 0, zc + 20), (-1, 0, 0), 7.5, 0.5),
            ('heart_16mm', (60, -30, -0.45 * z_top), (1, 0, 0), 8.0, 0.5),
        ]
        for name, surface, inward, radius, depth in specs:
            centre = np.asarray(surface, float) + depth * radius * np.asarray(inward, float)
            if name == 'heart_16mm':  # on the heart's lateral surface, in the lung beside it
                centre = np.array([25 + 45 + depth * radius, -30, -0.45 * z_top])
            sphere = (x - centre[0]) ** 2 + (y - centre[1]) ** 2 + (z - centre[2]) ** 2 <= radius ** 2
            part = sphere & lungs
            assert part.any(), name
            volume[part] = HU_TISSUE
            drawn[name] = part
    rng = np.random.default_rng(seed)
    volume += rng.normal(0, 20, volume.shape).astype(np.float32)
    volume[~fov] = HU_PAD
    return Phantom(volume=volume.astype(np.int16), spacing_xyz=tuple(spacing_xyz), lungs=lungs,
                   lung_sides=sides, body=body & fov, trachea=trachea & ~lungs,
                   mediastinum=mediastinum & ~heart, lesions=drawn)
