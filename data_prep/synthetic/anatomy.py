"""The hard preset's chest: body wall, ribs, spine, mediastinum, heart, lungs, airways and
pulmonary vessels, in the index frame (mm = index * spacing, x y z).

Laid out relative to the field of view like the basic preset (a small shape is a small
patient at LUNA16's resolution), with per-scan variation. In-plane the body is an
ellipse; ``rb`` below is a pixel's radius in units of that ellipse (1 = the skin):

* skin, subcutaneous fat (its thickness varies by scan), chest wall muscle;
* ribs in a band just outside the lungs (``rb`` 0.83-0.89, at least 1 mm from them): each rib descends from the
  spine towards the sternum, so an axial slice cuts it into an oblique oval, cortex
  (~750 HU) around marrow (~230 HU); a sternum in front, a vertebra (body with discs,
  canal, arch, spinous process) behind;
* the scanner's table under the patient;
* in the thorax: mediastinal fat holding the aorta, pulmonary trunk and oesophagus; the
  heart in pericardial fat, carving both lungs;
* two lungs, ellipsoids whose outer surface stays inside the rib band, about -850 HU
  denser towards the back (gravity), joined to a trachea with a wall;
* pulmonary vessels: trees from each hilum whose branches thin towards the periphery,
  and vessels running through the slice plane (their round cross-sections are the size
  of small nodules: the classic false positives).
"""
from __future__ import annotations

import math
from collections import deque
from typing import Sequence

import numpy as np

from .common import Canvas, random_unit, segment_distance
from .shapes import Capsule, Cavity, occupancy

__all__ = ['HU_AIR', 'HU_SOFT', 'carve_airways', 'chest_layout', 'draw_chest',
           'paint_vessels', 'pulmonary_vessels', 'rotate_towards', 'through_plane_vessels',
           'vessel_tree']

HU_AIR, HU_SOFT, HU_MUSCLE, HU_BLOOD = -1000.0, 45.0, 50.0, 40.0
HU_CORTEX, HU_MARROW, HU_DISC = 750.0, 230.0, 90.0
_LUNG_RB = 0.817  # the lungs' largest rb (see chest_layout)


def chest_layout(shape_zyx: Sequence[int], spacing_xyz: Sequence[float],
                 rng: np.random.Generator) -> dict:
    """Where everything lies (index-frame mm), with per-scan variation."""
    nz, ny, nx = shape_zyx
    sx, sy, sz = spacing_xyz
    fov_z = nz * sz
    cx, cy = (nx - 1) / 2 * sx, (ny - 1) / 2 * sy
    fov_r = min(nx * sx, ny * sy) / 2
    a = 0.86 * fov_r * float(rng.uniform(0.95, 1.02))
    b = 0.62 * fov_r * float(rng.uniform(0.93, 1.05))
    bx, by = cx, cy + 0.04 * fov_r
    lung_cz = 0.5 * fov_z * float(rng.uniform(0.97, 1.03))
    # The lungs' outer surface stays inside the rib band (rb < 0.82 everywhere).
    lung_axes = [0.35 * a * float(rng.uniform(0.97, 1.0)), 0.6 * b * float(rng.uniform(0.97, 1.0)),
                 0.42 * fov_z]
    lungs = [{'centre_mm': [bx + side * 0.45 * a, by, lung_cz], 'semi_axes_mm': list(lung_axes)}
             for side in (-1, 1)]
    heart = {'centre_mm': [bx + 0.1 * a, by - 0.3 * b, lung_cz - 0.3 * lung_axes[2]],
             'semi_axes_mm': [0.28 * a * float(rng.uniform(0.92, 1.05)),
                              0.28 * b * float(rng.uniform(0.92, 1.05)), 0.35 * lung_axes[2]]}
    return {
        'fov': (cx, cy, fov_r), 'body': (bx, by, a, b), 'fov_z': fov_z, 'lungs': lungs,
        'heart': heart,
        # Ribs 0.06 rb thick, at least 1 mm outside the pleura (the extrapleural layer keeps
        # that much even in a small patient), then muscle and subcutaneous fat.
        'rib_band': (max(0.83, _LUNG_RB + 1.0 / a), max(0.83, _LUNG_RB + 1.0 / a) + 0.06),
        'fat_inner': max(float(rng.uniform(0.9, 0.95)), _LUNG_RB + 1.0 / a + 0.07),
        'fat_hu': float(rng.uniform(-110, -80)),
        'lung_hu': float(rng.uniform(-880, -835)),
        'lung_gradient_hu': float(rng.uniform(20, 80)),  # denser towards the back
        'rib_period_mm': float(np.clip(0.3 * a, 10.0, 30.0)),
        'rib_phase_mm': float(rng.uniform(0, 30)),
        'table_gap_mm': float(rng.uniform(2, 10)),
        'oesophagus_air': bool(rng.random() < 0.4),
        'bowel_gas': bool(rng.random() < 0.5),
    }


def _ellipse(xs: np.ndarray, ys: np.ndarray, centre: Sequence[float], axes: Sequence[float],
             w: float | None = None) -> np.ndarray:
    """In-plane cross-section of an ellipsoid at height ``w`` (or an ellipse if ``None``)."""
    t = 1.0 if w is None else 1.0 - ((w - centre[2]) / axes[2]) ** 2
    if t <= 0:
        return np.zeros(np.broadcast_shapes(xs.shape, ys.shape), dtype=bool)
    return ((xs - centre[0]) / axes[0]) ** 2 + ((ys - centre[1]) / axes[1]) ** 2 <= t


def _base_slices(layout: dict, xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict]:
    """The z-invariant parts: (slice below/above the thorax, slice in the thorax, masks)."""
    bx, by, a, b = layout['body']
    cx, cy, fov_r = layout['fov']
    u, v = (xs - bx) / a, (ys - by) / b
    rb = np.sqrt(u ** 2 + v ** 2)
    outside = np.full(rb.shape, HU_AIR, dtype=np.float32)
    # Table: two curved shells under the back, ending inside the field of view (the air
    # between them stays connected to the air around the patient).
    curve = (xs - bx) ** 2 / (0.8 * fov_r) ** 2 * 8.0
    top = by + b + layout['table_gap_mm'] - curve
    table = ((ys >= top) & (ys < top + 2.5)) | ((ys >= top + 12) & (ys < top + 14))
    outside[table & (np.abs(xs - bx) < 0.6 * fov_r)] = -150.0
    skin = 1.5 / min(a, b)
    outside[rb <= 1.0] = 25.0
    outside[rb <= 1.0 - skin] = layout['fat_hu']
    outside[rb <= layout['fat_inner']] = HU_MUSCLE
    outside[rb <= 0.8] = HU_SOFT
    # Vertebra: body (cortex + cancellous bone), canal, arch and spinous process.
    rv = 0.11 * a
    vy = by + 0.6 * b
    d_body = np.sqrt((xs - bx) ** 2 + (ys - vy) ** 2)
    canal_y = vy + 1.7 * rv
    d_canal = np.sqrt((xs - bx) ** 2 + (ys - canal_y) ** 2)
    arch = (d_canal >= 0.55 * rv) & (d_canal <= 0.95 * rv) & (ys >= canal_y - 0.3 * rv)
    spinous = (np.abs(xs - bx) <= 0.25 * rv) & (ys >= canal_y + 0.9 * rv) & (ys <= canal_y + 2.3 * rv)
    outside[arch | spinous] = HU_CORTEX
    outside[d_body <= rv] = HU_CORTEX
    vertebral_body = d_body <= 0.82 * rv
    outside[vertebral_body] = HU_MARROW
    outside[d_canal < 0.55 * rv] = 20.0
    # Sternum.
    sternum = _ellipse(xs, ys, (bx, by - 0.84 * b), (0.08 * a, 0.05 * b))
    thorax = outside.copy()
    thorax[sternum] = HU_CORTEX
    thorax[_ellipse(xs, ys, (bx, by - 0.84 * b), (0.06 * a, 0.03 * b))] = HU_MARROW
    # Mediastinum: fat holding the descending aorta and the oesophagus.
    thorax[_ellipse(xs, ys, (bx, by - 0.2 * b), (0.2 * a, 0.5 * b)) & (rb < 0.8)] = layout['fat_hu']
    thorax[_ellipse(xs, ys, (bx + 0.06 * a, by + 0.33 * b), (0.06 * a, 0.06 * a))] = HU_BLOOD
    thorax[_ellipse(xs, ys, (bx + 0.02 * a, by + 0.2 * b), (0.03 * a, 0.03 * a))] = 35.0
    if layout['oesophagus_air']:
        thorax[_ellipse(xs, ys, (bx + 0.02 * a, by + 0.2 * b), (0.01 * a, 0.01 * a))] = HU_AIR
    # Rib band: pixels, their position across the band and angle from the spine.
    theta = np.arctan2(v, u)
    from_back = np.abs((theta - math.pi / 2 + math.pi) % (2 * math.pi) - math.pi)
    band_lo, band_hi = layout['rib_band']
    band = (rb >= band_lo) & (rb <= band_hi) & (from_back > 0.28) & (from_back < math.pi - 0.2)
    flat = np.flatnonzero(np.broadcast_to(band, rb.shape))
    masks = {
        'rib_flat': flat,
        'rib_across': (rb.reshape(-1)[flat] - band_lo) / (band_hi - band_lo),
        'rib_from_back': from_back.reshape(-1)[flat],
        'vertebral_body': vertebral_body,
        'fov': (xs - cx) ** 2 + (ys - cy) ** 2 <= fov_r ** 2,
    }
    return outside, thorax, masks


def draw_chest(canvas: Canvas, layout: dict) -> np.ndarray:
    """Draw the chest slice by slice into ``canvas.volume`` (float HU, air outside the
    body, no padding yet); return the thoracic cavity (lungs minus heart) as a bool
    volume, the region where vessels and lesions may be drawn."""
    nz, ny, nx = canvas.shape
    sx, sy, sz = canvas.spacing
    xs = (np.arange(nx) * sx)[None, :].astype(np.float64)
    ys = (np.arange(ny) * sy)[:, None].astype(np.float64)
    bx, by, a, b = layout['body']
    outside, thorax, masks = _base_slices(layout, xs, ys)
    lungs, heart = layout['lungs'], layout['heart']
    lung_top = max(e['centre_mm'][1] - e['semi_axes_mm'][1] for e in lungs)
    lung_depth = 2 * lungs[0]['semi_axes_mm'][1]
    lung_hu = (layout['lung_hu'] + layout['lung_gradient_hu']
               * np.clip((ys - lung_top) / lung_depth, 0, 1)).astype(np.float32)
    lung_hu = np.broadcast_to(lung_hu, (ny, nx))
    hz, haz = heart['centre_mm'][2], heart['semi_axes_mm'][2]
    lz, laz = lungs[0]['centre_mm'][2], lungs[0]['semi_axes_mm'][2]
    period = layout['rib_period_mm']
    slope = 0.9 * period  # mm of descent per radian from the spine towards the sternum
    rib_height = 0.45 * period
    cavity = np.zeros(canvas.shape, dtype=bool)
    pericardium = [s * 1.08 for s in heart['semi_axes_mm'][:2]] + [heart['semi_axes_mm'][2] * 1.05]
    gas_centre = (bx - 0.2 * a, by - 0.1 * b, 0.035 * layout['fov_z'])
    gas_axes = (0.1 * a, 0.08 * b, 0.03 * layout['fov_z'])
    for z in range(nz):
        w = z * sz
        in_thorax = abs(w - lz) < 1.05 * laz
        sl = (thorax if in_thorax else outside).copy()
        if (w + layout['rib_phase_mm']) % period < 0.2 * period:  # intervertebral disc
            sl[masks['vertebral_body']] = HU_DISC
        if in_thorax:
            phase = (w + layout['rib_phase_mm'] + slope * masks['rib_from_back']) % period
            along = phase / rib_height
            rib = (2 * along - 1) ** 2 + (2 * masks['rib_across'] - 1) ** 2 <= 1.0
            radial = np.sqrt((2 * along[rib] - 1) ** 2 + (2 * masks['rib_across'][rib] - 1) ** 2)
            sl.reshape(-1)[masks['rib_flat'][rib]] = np.where(radial > 0.6, HU_CORTEX, HU_MARROW)
            if hz + 0.6 * haz < w:  # ascending aorta above the heart
                sl[_ellipse(xs, ys, (bx - 0.05 * a, by - 0.3 * b), (0.065 * a, 0.065 * a))] = HU_BLOOD
            if hz + 0.4 * haz < w < hz + 1.3 * haz:  # pulmonary trunk
                sl[_ellipse(xs, ys, (bx + 0.06 * a, by - 0.42 * b), (0.055 * a, 0.055 * a))] = HU_BLOOD
        sl[_ellipse(xs, ys, heart['centre_mm'], pericardium, w)] = layout['fat_hu']
        lung = np.zeros((ny, nx), dtype=bool)
        for e in lungs:
            lung |= _ellipse(xs, ys, e['centre_mm'], e['semi_axes_mm'], w)
        in_heart = _ellipse(xs, ys, heart['centre_mm'], heart['semi_axes_mm'], w)
        lung &= ~in_heart
        sl[lung] = lung_hu[lung]
        sl[in_heart] = HU_BLOOD
        if layout['bowel_gas']:
            sl[_ellipse(xs, ys, gas_centre, gas_axes, w)] = HU_AIR
        cavity[z] = lung
        canvas.volume[z] = sl
    return cavity


def carve_airways(canvas: Canvas, layout: dict, cavity: np.ndarray,
                  bronchi: Sequence[Capsule] = ()) -> None:
    """Trachea (with a soft-tissue wall) from the carina up through the top slice, the
    main bronchi into each lung (they join the lungs through the airway, as real ones),
    and ``bronchi`` (lumen radius ``r0``), walled, kept inside the lungs (``cavity``)."""
    lungs, spacing = layout['lungs'], canvas.spacing
    bx, _, a, _ = layout['body']
    carina = np.array([bx, lungs[0]['centre_mm'][1] - 0.1 * lungs[0]['semi_axes_mm'][1],
                       lungs[0]['centre_mm'][2] + 0.35 * lungs[0]['semi_axes_mm'][2]])
    radius = max(0.06 * a, 1.5 * max(spacing[0], spacing[1]))
    wall = max(1.0, 0.8 * float(spacing[0]))
    tubes = [(carina, carina + np.array([0, 0, layout['fov_z']]), radius, False)]
    tubes += [(carina, np.asarray(e['centre_mm']) + np.array([0, 0, 0.2 * e['semi_axes_mm'][2]]),
               0.7 * radius, False) for e in lungs]
    tubes += [(b.p0, b.p1, b.r0, True) for b in bronchi]
    for hu, grow in ((HU_SOFT, 1.0), (HU_AIR, 0.0)):
        for p0, p1, r, in_lung in tubes:
            r = r + grow * max(wall * r / radius, 0.6 * float(spacing[0]))
            box = canvas.bbox(np.minimum(p0, p1) - r - 1, np.maximum(p0, p1) + r + 1)
            if box is None:
                continue
            zs, ys, xs = canvas.grid_mm(box)
            inside = segment_distance(zs, ys, xs, p0, p1) <= r
            if in_lung:
                inside &= cavity[box]
            canvas.volume[box][inside] = hu


def _cross(a: Sequence[float], b: Sequence[float]) -> np.ndarray:
    """3-vector cross product (``np.cross`` costs more than the arithmetic here)."""
    return np.array([a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]])


def rotate_towards(direction: np.ndarray, rng: np.random.Generator, angle_deg: float) -> np.ndarray:
    """``direction`` turned by ``angle_deg`` about a random perpendicular axis."""
    axis = _cross(direction, random_unit(rng))
    axis /= math.sqrt(float(axis @ axis)) or 1.0
    angle = math.radians(angle_deg)
    new = (direction * math.cos(angle) + _cross(axis, direction) * math.sin(angle)
           + axis * float(axis @ direction) * (1 - math.cos(angle)))
    return new / math.sqrt(float(new @ new))


def vessel_tree(rng: np.random.Generator, root: np.ndarray, direction: np.ndarray,
                radius: float, cavity: Cavity, min_radius: float,
                max_segments: int = 150) -> list[Capsule]:
    """A pulmonary vessel tree: each segment tapers; at its end the vessel goes on a little
    thinner and gives off a thinner side branch, until the branches are thinner than
    ``min_radius`` or leave the lung. Grown breadth first, so ``max_segments`` trims the
    finest generation."""
    out: list[Capsule] = []
    queue = deque([(root, direction, radius)])
    while queue and len(out) < max_segments:
        start, d, r = queue.popleft()
        end = start + d * r * float(rng.uniform(3.5, 6.5))
        r_end = 0.9 * r
        out.append(Capsule(start, end, r, r_end))
        if not cavity.contains(end):
            continue
        main, side = 0.92 * r_end, r_end * float(rng.uniform(0.5, 0.75))
        if main >= min_radius:
            queue.append((end, rotate_towards(d, rng, float(rng.uniform(8, 25))), main))
        if side >= min_radius:
            queue.append((end, rotate_towards(d, rng, float(rng.uniform(35, 70))), side))
    return out


def through_plane_vessels(rng: np.random.Generator, lung: dict, cavity: Cavity,
                          count: int) -> list[Capsule]:
    """Vessels running roughly along z (through the axial plane), 2-4.6 mm wide: in a
    slice they are round spots the size of small nodules, in the next slices they go on."""
    centre, axes = np.asarray(lung['centre_mm']), np.asarray(lung['semi_axes_mm'])
    out: list[Capsule] = []
    for _ in range(50 * count):
        if len(out) >= count:
            break
        start = centre + axes * random_unit(rng) * float(rng.uniform(0, 0.85))
        if not cavity.contains(start, margin=3.0):
            continue
        d = np.array([rng.uniform(-0.35, 0.35), rng.uniform(-0.35, 0.35), rng.choice([-1.0, 1.0])])
        d /= np.linalg.norm(d)
        r0 = float(rng.uniform(1.0, 2.3))
        length = axes[2] * float(rng.uniform(0.3, 0.7))
        mid = start + d * length / 2
        out.append(Capsule(start, mid, r0, 0.85 * r0))
        d2 = rotate_towards(d, rng, float(rng.uniform(5, 20)))
        out.append(Capsule(mid, mid + d2 * length / 2, 0.85 * r0, 0.6 * r0))
    return out


def pulmonary_vessels(rng: np.random.Generator, layout: dict, cavity: Cavity, min_radius: float
                      ) -> tuple[list[tuple[Capsule, float]], list[Capsule]]:
    """The vessels of both lungs, as ``(capsule, HU)``, and the bronchi that run beside the
    first segment of each tree (lumen radius ``r0``).

    Six trees per lung from the hilum, and vessels through the slice plane; their number
    and the size of the trees grow with the lung's volume (a 150 ml lung, as in a
    256 x 256 scan, gets 8-16 through-plane vessels and trees of up to 150 segments), so
    that a full-size scan is not emptier than a small one.
    """
    vessels: list[tuple[Capsule, float]] = []
    bronchi: list[Capsule] = []
    for side, lung in zip((-1, 1), layout['lungs']):
        centre, axes = np.asarray(lung['centre_mm']), np.asarray(lung['semi_axes_mm'])
        scale = 4 / 3 * math.pi * float(np.prod(axes)) / 1000 / 150
        radius = float(np.clip(0.1 * axes[0], 0.6, 5.0))
        for dz in np.linspace(-0.5, 0.5, 6):
            root = centre + np.array([-side * 0.6 * axes[0], rng.uniform(-0.2, 0.2) * axes[1],
                                      (dz + rng.uniform(-0.08, 0.08)) * axes[2]])
            d0 = np.array([side, rng.uniform(-0.8, 0.8), dz * 2 + rng.uniform(-0.3, 0.3)])
            tree = vessel_tree(rng, root, d0 / np.linalg.norm(d0), radius, cavity, min_radius,
                               max_segments=int(150 * np.clip(scale, 1, 6)))
            hu = float(rng.uniform(30, 60))
            vessels += [(c, hu) for c in tree]
            first = tree[0]
            off = np.cross(first.p1 - first.p0, random_unit(rng))
            off *= (first.r0 + 0.7 * radius + 0.8) / (np.linalg.norm(off) or 1.0)
            bronchi.append(Capsule(first.p0 + off, first.p1 + off, 0.7 * first.r0, 0.6 * first.r1))
        count = max(2, int(round(int(rng.integers(8, 17)) * min(scale, 6.0))))
        vessels += [(c, float(rng.uniform(30, 60))) for c in through_plane_vessels(rng, lung, cavity, count)]
    return vessels, bronchi


def paint_vessels(canvas: Canvas, anatomy: np.ndarray, cavity_mask: np.ndarray,
                  vessels: Sequence[tuple[Capsule, float]], offsets: np.ndarray) -> None:
    """Paint vessels (capsule, HU) inside the cavity with partial volume.

    Each vessel is painted in pieces no longer than a few radii (small boxes), as the
    union of the pieces: ``volume = max(volume, anatomy + (hu - anatomy) * occupancy)``.

    Args:
        canvas: The float canvas.
        anatomy: The volume before any vessel (what a vessel's partial volume mixes with).
        cavity_mask: Where vessels may lie (bool volume).
        vessels: ``(capsule, HU)`` pairs.
        offsets: z sub-sample offsets (slice thickness).
    """
    edge = float(canvas.spacing[:2].mean())
    z_pad = float(np.abs(offsets).max(initial=0.0))
    for capsule, hu in vessels:
        length = float(np.linalg.norm(capsule.p1 - capsule.p0))
        pieces = max(1, int(math.ceil(length / max(4.0 * max(capsule.r0, capsule.r1), 3.0))))
        for k in range(pieces):
            t0, t1 = k / pieces, (k + 1) / pieces
            piece = Capsule(capsule.p0 + (capsule.p1 - capsule.p0) * t0,
                            capsule.p0 + (capsule.p1 - capsule.p0) * t1,
                            capsule.r0 + (capsule.r1 - capsule.r0) * t0,
                            capsule.r0 + (capsule.r1 - capsule.r0) * t1)
            lo, hi = piece.bounds()
            pad = np.array([edge, edge, edge + z_pad])
            box = canvas.bbox(lo - pad, hi + pad)
            if box is None:
                continue
            inside = cavity_mask[box]
            if not inside.any():
                continue
            zs, ys, xs = canvas.grid_mm(box)
            occ = occupancy(piece.sdf, zs, ys, xs, offsets, edge)
            base = anatomy[box]
            region = canvas.volume[box]
            np.copyto(region, np.maximum(region, base + (hu - base) * occ), where=inside & (occ > 0))
