"""Support for the whole-scan inference tests: small chest phantoms holding nodules of
known centre and radius, and an oracle :class:`SlicePredictor` that returns their true
cross-sections.

The oracle works in world mm: for each slice it is asked about it computes the world
position of every pixel from the scan's own geometry and reports the pixels within each
nodule's radius. So the same oracle serves a scan read from ``.mhd``, from a NIfTI
stored in RAS order (flipped array) or from a DICOM series, and a resampled image
(masks resized to the image it is given): whatever the pipeline then reports tests the
pipeline, not a network.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np
from scipy import ndimage

from projects.lung_nodule.apis.slice_predictor import SlicePrediction
from projects.lung_nodule.ct.io import CTScan
from tests.scanner_inputs import BODY_HU, ChestPhantom, make_chest_phantom

NODULE_HU = 40


@dataclass(frozen=True)
class TrueNodule:
    centre_xyz: tuple[float, float, float]  # world mm
    radius_mm: float


@dataclass(frozen=True)
class NoduleScan:
    """A phantom chest with nodules: ``volume`` (z, y, x) int16 HU, identity direction."""

    volume: np.ndarray
    spacing_xyz: tuple[float, float, float]
    origin_xyz: tuple[float, float, float]
    nodules: tuple[TrueNodule, ...]
    phantom: ChestPhantom


def _world_grid(shape_zyx, spacing_xyz, origin_xyz):
    z, y, x = (np.arange(n) for n in shape_zyx)
    return (origin_xyz[2] + z[:, None, None] * spacing_xyz[2],
            origin_xyz[1] + y[None, :, None] * spacing_xyz[1],
            origin_xyz[0] + x[None, None, :] * spacing_xyz[0])


def make_nodule_scan(shape_zyx: Sequence[int] = (24, 96, 96),
                     spacing_xyz: Sequence[float] = (0.7, 0.7, 1.25),
                     radii_mm: Sequence[float] = (4.0, 3.0), padding_hu: int = -2048,
                     origin_xyz: Sequence[float] | None = None) -> NoduleScan:
    """One nodule per radius, each at the deepest point of a lung (right, then left)."""
    phantom = make_chest_phantom(shape_zyx, spacing_xyz, padding_hu=padding_hu,
                                 origin_xyz=origin_xyz)
    volume = phantom.volume.copy()
    spacing = tuple(float(v) for v in spacing_xyz)
    depth = ndimage.distance_transform_edt(phantom.lungs, sampling=spacing[::-1])
    half = shape_zyx[2] // 2
    gz, gy, gx = _world_grid(volume.shape, spacing, phantom.origin_xyz)
    nodules = []
    for side, radius in zip((slice(0, half), slice(half, None)), radii_mm):
        part = np.zeros_like(depth)
        part[:, :, side] = depth[:, :, side]
        z, y, x = np.unravel_index(np.argmax(part), part.shape)
        assert part[z, y, x] > radius + 1.0, 'lung too small for this nodule'
        centre = (float(gx[0, 0, x]), float(gy[0, y, 0]), float(gz[z, 0, 0]))
        ball = (gx - centre[0]) ** 2 + (gy - centre[1]) ** 2 + (gz - centre[2]) ** 2 <= radius ** 2
        volume[ball] = NODULE_HU
        nodules.append(TrueNodule(centre, float(radius)))
    return NoduleScan(volume, spacing, phantom.origin_xyz, tuple(nodules), phantom)


def without_lungs(scan: NoduleScan) -> np.ndarray:
    """The same chest with its lungs filled with soft tissue (no air inside the body)."""
    volume = scan.volume.copy()
    volume[scan.phantom.lungs] = BODY_HU
    return volume


class OraclePredictor:
    """Returns the true cross-sections of the given nodules (score ``score`` each).

    Args:
        nodules: World-space truth.
        score: Score of every true cross-section.
        extra_in_body: Also report a false detection in the body wall (a disc of
            ``extra_in_body`` mm radius next to the lungs), which ``filter`` mode must
            drop and ``blank`` mode keeps.
    """

    score_thr = 0.05

    def __init__(self, nodules: Sequence[TrueNodule], score: float = 0.9,
                 extra_in_body: float | None = None) -> None:
        self.nodules = list(nodules)
        self.score = score
        self.extra_in_body = extra_in_body
        self.calls = 0

    def _pixel_world(self, scan: CTScan, z: int) -> np.ndarray:
        geometry = scan.geometry
        nz, ny, nx = scan.array.shape
        rows, cols = np.meshgrid(np.arange(ny), np.arange(nx), indexing='ij')
        index = np.stack([cols, rows, np.full_like(rows, z)], axis=-1).astype(np.float64)
        scaled = index * np.asarray(geometry.spacing_xyz)
        return np.asarray(geometry.origin_xyz) + scaled @ geometry.direction_matrix.T

    def __call__(self, images: np.ndarray, z_indices: Sequence[int],
                 scan: CTScan) -> list[SlicePrediction]:
        self.calls += 1
        out = []
        for image, z in zip(images, z_indices):
            world = self._pixel_world(scan, int(z))
            masks = [np.sum((world - np.asarray(n.centre_xyz)) ** 2, axis=-1) <= n.radius_mm ** 2
                     for n in self.nodules]
            masks = [m for m in masks if m.any()]
            if self.extra_in_body is not None:
                body_wall = self._body_wall_disc(scan, int(z))
                if body_wall is not None:
                    masks.append(body_wall)
            stack = np.array(masks, dtype=bool).reshape(-1, *scan.array.shape[1:])
            if stack.shape[1:] != image.shape:
                stack = np.array([cv2.resize(m.astype(np.uint8), image.shape[::-1],
                                             interpolation=cv2.INTER_NEAREST) > 0
                                  for m in stack], dtype=bool).reshape(-1, *image.shape)
            out.append(SlicePrediction(stack, np.full(len(stack), self.score)))
        return out

    def _body_wall_disc(self, scan: CTScan, z: int) -> np.ndarray | None:
        """A disc in the soft tissue at the front of the chest (no lung there)."""
        plane = scan.array[z]
        tissue = (plane > -200) & (plane < 200)
        rows, cols = np.nonzero(tissue)
        if len(rows) == 0:
            return None
        centre_col = plane.shape[1] // 2
        column = rows[cols == centre_col]
        if len(column) == 0:
            return None
        r = int(column.min()) + 3  # just inside the body outline, mid-line
        radius_px = self.extra_in_body / scan.geometry.spacing_xyz[0]
        yy, xx = np.ogrid[:plane.shape[0], :plane.shape[1]]
        return (yy - r) ** 2 + (xx - centre_col) ** 2 <= radius_px ** 2
