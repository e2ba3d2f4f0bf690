"""Lesion shapes of the hard preset: signed distances, partial-volume occupancy, and the
long axis a radiologist would measure.

A lesion is a union of primitives (ellipsoids, spheres, tapered capsules), optionally
intersected with the thoracic cavity (the lungs minus the heart): a lesion that lies
against the pleura, the mediastinum or the heart is cut flat by it, so it takes the place
of lung inside the rib cage as real ones do, instead of poking into the chest wall.

Everything is in the index frame in mm (``mm = index * spacing``, x y z); grids are the
broadcastable ``(zs, ys, xs)`` arrays of :meth:`Canvas.grid_mm`. Signed distances are
negative inside. Partial volume: a voxel's occupancy is a linear ramp one in-plane voxel
wide across the surface, averaged over sub-samples spanning the slice thickness in z (a
thick slice averages what lies in its slab).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
from scipy.spatial import ConvexHull, QhullError

from .common import Canvas, random_unit, segment_distance

__all__ = ['Capsule', 'Cavity', 'Ellipsoid', 'LesionShape', 'Measured', 'measure_lesion',
           'occupancy', 'random_rotation', 'spicules_for', 'z_subsamples']

Box = tuple[slice, slice, slice]
Sdf = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A random 3x3 rotation (columns: the body axes in the index frame)."""
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q *= np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] *= -1
    return q


@dataclass
class Ellipsoid:
    """An ellipsoid (a sphere when the semi-axes are equal).

    Args:
        centre: Centre (mm, x y z).
        semi_axes: Semi-axes (mm) along the columns of ``rotation``.
        rotation: 3x3 rotation; ``None`` = axis-aligned.
    """

    centre: np.ndarray
    semi_axes: np.ndarray
    rotation: np.ndarray | None = None

    def sdf(self, zs: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
        """Signed distance (exact for a sphere; the usual first-order bound otherwise)."""
        d = (xs - self.centre[0], ys - self.centre[1], zs - self.centre[2])
        if self.rotation is None:
            q = d
        else:
            r = self.rotation
            q = tuple(r[0, i] * d[0] + r[1, i] * d[1] + r[2, i] * d[2] for i in range(3))
        a = self.semi_axes
        if np.ptp(a) < 1e-9:
            return np.sqrt(q[0] ** 2 + q[1] ** 2 + q[2] ** 2) - a[0]
        k0 = np.sqrt((q[0] / a[0]) ** 2 + (q[1] / a[1]) ** 2 + (q[2] / a[2]) ** 2)
        k1 = np.sqrt((q[0] / a[0] ** 2) ** 2 + (q[1] / a[1] ** 2) ** 2 + (q[2] / a[2] ** 2) ** 2)
        return k0 * (k0 - 1.0) / np.maximum(k1, 1e-9)

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Axis-aligned box (mm) around it."""
        r = np.eye(3) if self.rotation is None else self.rotation
        half = np.sqrt(((r * self.semi_axes[None, :]) ** 2).sum(axis=1))
        return self.centre - half, self.centre + half

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready parameters."""
        out: dict[str, Any] = {'type': 'ellipsoid', 'centre_mm': self.centre.tolist(),
                               'semi_axes_mm': self.semi_axes.tolist()}
        if self.rotation is not None:
            out['rotation'] = self.rotation.tolist()
        return out


@dataclass
class Capsule:
    """A tapered tube from ``p0`` (radius ``r0``) to ``p1`` (radius ``r1``): a vessel
    segment or a spicule."""

    p0: np.ndarray
    p1: np.ndarray
    r0: float
    r1: float

    def sdf(self, zs: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
        dist, t = segment_distance(zs, ys, xs, self.p0, self.p1, with_t=True)
        return dist - (self.r0 + (self.r1 - self.r0) * t)

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        r = max(self.r0, self.r1)
        return np.minimum(self.p0, self.p1) - r, np.maximum(self.p0, self.p1) + r

    def as_dict(self) -> dict[str, Any]:
        return {'type': 'capsule', 'p0_mm': self.p0.tolist(), 'p1_mm': self.p1.tolist(),
                'r0_mm': float(self.r0), 'r1_mm': float(self.r1)}


def _union(primitives: Sequence[Ellipsoid | Capsule], zs, ys, xs) -> np.ndarray:
    out = primitives[0].sdf(zs, ys, xs)
    for p in primitives[1:]:
        out = np.minimum(out, p.sdf(zs, ys, xs))
    return out


def _point_sdf(e: Ellipsoid, point: Sequence[float]) -> float:
    """:meth:`Ellipsoid.sdf` of an axis-aligned ellipsoid at one point."""
    q = [float(point[i]) - float(e.centre[i]) for i in range(3)]
    a = [float(v) for v in e.semi_axes]
    k0 = math.sqrt(sum((q[i] / a[i]) ** 2 for i in range(3)))
    k1 = math.sqrt(sum((q[i] / a[i] ** 2) ** 2 for i in range(3)))
    return k0 * (k0 - 1.0) / max(k1, 1e-9)


@dataclass
class Cavity:
    """The thoracic cavity a lesion may fill: the lung ellipsoids minus the heart."""

    lungs: list[Ellipsoid]
    heart: Ellipsoid

    @classmethod
    def from_anatomy(cls, lungs: list[dict], heart: dict) -> 'Cavity':
        def ell(e: dict) -> Ellipsoid:
            return Ellipsoid(np.asarray(e['centre_mm'], float), np.asarray(e['semi_axes_mm'], float))
        return cls([ell(e) for e in lungs], ell(heart))

    def sdf(self, zs: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
        return np.maximum(_union(self.lungs, zs, ys, xs), -self.heart.sdf(zs, ys, xs))

    def contains(self, point: np.ndarray, margin: float = 0.0) -> bool:
        """Whether ``point`` (mm) lies inside, at least ``margin`` mm from the surface
        (:meth:`sdf` for one point, in plain floats: it is called thousands of times)."""
        inside_lungs = min(_point_sdf(e, point) for e in self.lungs)
        return max(inside_lungs, -_point_sdf(self.heart, point)) <= -margin


@dataclass
class LesionShape:
    """A lesion: its body (the label), an optional core of another density (a solid core
    in ground glass, a calcification), optional spicules (drawn, not labelled: thin
    strands, not part of the measured outline), cut by the cavity when ``clip`` is set."""

    body: list[Ellipsoid | Capsule]
    core: list[Ellipsoid | Capsule] = field(default_factory=list)
    spicules: list[Capsule] = field(default_factory=list)
    clip: Cavity | None = None

    def _clipped(self, sdf: np.ndarray, zs, ys, xs) -> np.ndarray:
        return sdf if self.clip is None else np.maximum(sdf, self.clip.sdf(zs, ys, xs))

    def body_sdf(self, zs, ys, xs) -> np.ndarray:
        return self._clipped(_union(self.body, zs, ys, xs), zs, ys, xs)

    def drawn_sdf(self, zs, ys, xs) -> np.ndarray:
        """Body and spicules (what the image shows at the body's density)."""
        return self._clipped(_union([*self.body, *self.spicules], zs, ys, xs), zs, ys, xs)

    def core_sdf(self, zs, ys, xs) -> np.ndarray:
        return np.maximum(_union(self.core, zs, ys, xs), self.body_sdf(zs, ys, xs))

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        boxes = [p.bounds() for p in [*self.body, *self.spicules]]
        return np.min([b[0] for b in boxes], axis=0), np.max([b[1] for b in boxes], axis=0)

    def centre(self) -> np.ndarray:
        return np.asarray(self.body[0].centre if isinstance(self.body[0], Ellipsoid)
                          else self.body[0].p0, float)

    def radius(self) -> float:
        """Radius of a ball around :meth:`centre` holding the body and spicules."""
        lo, hi = self.bounds()
        c = self.centre()
        return float(np.linalg.norm(np.maximum(np.abs(lo - c), np.abs(hi - c))))

    def as_dict(self) -> dict[str, Any]:
        return {'body': [p.as_dict() for p in self.body], 'core': [p.as_dict() for p in self.core],
                'spicules': [p.as_dict() for p in self.spicules],
                'clipped_by_cavity': self.clip is not None}


def z_subsamples(thickness: float, step_mm: float = 0.4) -> np.ndarray:
    """Offsets (mm) of the z sub-samples averaged over a slab ``thickness`` mm thick."""
    k = max(1, int(math.ceil(thickness / step_mm)))
    return ((np.arange(k) + 0.5) / k - 0.5) * thickness


def occupancy(sdf: Sdf, zs: np.ndarray, ys: np.ndarray, xs: np.ndarray, offsets: np.ndarray,
              edge: float) -> np.ndarray:
    """Partial-volume fraction (float32, shape of the grid) of the shape ``sdf``.

    Args:
        sdf: Signed distance of the shape.
        zs, ys, xs: Broadcastable grid (mm); ``zs`` has shape ``(nz, 1, 1)``.
        offsets: z sub-sample offsets (:func:`z_subsamples`), averaged.
        edge: Width (mm) of the in-plane ramp (one voxel).
    """
    sub = (zs.reshape(-1, 1) + offsets[None, :]).reshape(-1, 1, 1)
    d = sdf(sub, ys, xs)
    occ = np.clip(0.5 - d / edge, 0.0, 1.0).astype(np.float32)
    return occ.reshape(zs.shape[0], len(offsets), *occ.shape[1:]).mean(axis=1)


@dataclass
class Measured:
    """What the generator measures of a drawn lesion (index frame unless said)."""

    box: Box
    body: np.ndarray  # occupancy of the body in ``box``
    flat_indices: np.ndarray  # label voxels (occupancy >= 0.5) in the whole volume
    centroid_index_xyz: np.ndarray
    volume_mm3: float
    long_axis_mm: float
    long_axis_slice: int
    long_axis_index_xyz: list[list[float]]

    @property
    def equivalent_diameter_mm(self) -> float:
        return float((6.0 * self.volume_mm3 / math.pi) ** (1.0 / 3.0))


def _max_feret(points: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Largest distance between two of ``points`` (n, 2) and the pair."""
    candidates = points
    if len(points) > 3:
        try:
            candidates = points[ConvexHull(points).vertices]
        except QhullError:  # collinear points: every point is a candidate
            candidates = points
    d2 = ((candidates[:, None, :] - candidates[None, :, :]) ** 2).sum(-1)
    i, j = np.unravel_index(int(np.argmax(d2)), d2.shape)
    return float(math.sqrt(d2[i, j])), candidates[i], candidates[j]


def measure_lesion(canvas: Canvas, shape: LesionShape, offsets: np.ndarray,
                   margin_mm: float) -> Measured | None:
    """Occupancy, label voxels, centroid, volume and long axis of a lesion.

    The long axis is measured as a radiologist does: on the axial slice where the label
    is largest, the longest chord (maximum Feret diameter) of the lesion's outline. The
    outline is the 0.5 level of the slice's partial-volume occupancy, sampled on a grid
    four times finer than the pixels, so the figure does not depend on pixelation.

    Returns:
        ``None`` when no voxel reaches half occupancy (the lesion falls between voxels or
        outside the volume).
    """
    lo, hi = shape.bounds()
    pad = np.array([margin_mm, margin_mm, margin_mm + float(np.abs(offsets).max(initial=0.0))])
    box = canvas.bbox(lo - pad, hi + pad)
    if box is None:
        return None
    zs, ys, xs = canvas.grid_mm(box)
    edge = float(canvas.spacing[:2].mean())
    body = occupancy(shape.body_sdf, zs, ys, xs, offsets, edge)
    label = body >= 0.5
    if not label.any():
        return None
    local = np.nonzero(label)
    flat = np.ravel_multi_index(tuple(ix + sl.start for ix, sl in zip(local, box)), canvas.shape)
    # Centre of the label's voxel centres (what a measurement of the label finds).
    centroid_zyx = np.array([(ix + sl.start).mean() for ix, sl in zip(local, box)])
    volume = float(body.sum(dtype=np.float64) * np.prod(canvas.spacing))
    # Largest axial cross-section (ties: the slice nearest the centroid).
    areas = label.sum(axis=(1, 2))
    zs_index = np.arange(box[0].start, box[0].stop)
    best = int(np.lexsort((np.abs(zs_index - centroid_zyx[0]), -areas))[0])
    z_index = int(zs_index[best])
    rows, cols = np.nonzero(label[best])
    sx, sy, sz = canvas.spacing
    step = min(sx, sy) / 4
    extent = max((np.ptp(rows) + 3) * sy, (np.ptp(cols) + 3) * sx)
    step = max(step, extent / 400)  # bounded work for large masses
    y0, y1 = (box[1].start + rows.min() - 1.5) * sy, (box[1].start + rows.max() + 1.5) * sy
    x0, x1 = (box[2].start + cols.min() - 1.5) * sx, (box[2].start + cols.max() + 1.5) * sx
    fy = np.arange(y0, y1 + step / 2, step)[None, :, None]
    fx = np.arange(x0, x1 + step / 2, step)[None, None, :]
    fine = occupancy(shape.body_sdf, np.array([[[z_index * sz]]]), fy, fx, offsets, edge)[0] >= 0.5
    fr, fc = np.nonzero(fine)
    if len(fr) == 0:  # a sliver: fall back on the pixels
        points = np.stack([(rows + box[1].start) * sy, (cols + box[2].start) * sx], axis=1)
        step = min(sx, sy)
    else:
        points = np.stack([fy[0, fr, 0], fx[0, 0, fc]], axis=1)
    length, p, q = _max_feret(points)
    ends = [[float(pt[1] / sx), float(pt[0] / sy), float(z_index)] for pt in (p, q)]
    return Measured(box, body, flat, centroid_zyx[::-1].copy(), volume, length + step, z_index, ends)


def spicules_for(rng: np.random.Generator, body: Ellipsoid, count: int) -> list[Capsule]:
    """Thin strands radiating from an ellipsoid's surface (a spiculated margin)."""
    out = []
    r = float(body.semi_axes.max())
    for _ in range(count):
        u = random_unit(rng)
        start = body.centre + u * 0.7 * float(body.semi_axes.min())
        length = r * float(rng.uniform(0.6, 1.5)) + 1.5
        out.append(Capsule(start, start + u * (length + 0.3 * r), float(rng.uniform(0.5, 0.9)),
                           float(rng.uniform(0.2, 0.35))))
    return out
