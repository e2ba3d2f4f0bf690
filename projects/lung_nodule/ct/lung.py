"""Lung segmentation by threshold + morphology, shared by data preparation and
whole-scan inference (so that training slices and inference slices are masked alike).

Method (hybrid: 3D to decide *which* air is lung, 2D to draw the lung *shape*):

1. **3D, coarse** (in-plane stride so that voxels are about ``coarse_mm`` wide): voxels
   below ``threshold_hu`` are air; air connected to the volume's side faces is outside
   the body. That includes the padding outside the scanner's circular field of view
   (-2000 or -3024 HU, below any threshold) and the air ring around the body. Of the
   remaining 3D components the two largest are kept (the lungs; they may be one
   component when joined through the trachea), and a second one only when it is at least
   ``min_component_fraction`` of the largest: that drops bowel gas and other small air
   pockets, which a single slice cannot tell from a lung base. 3D labelling runs once per
   scan on a ~4x smaller grid (about 0.3 s for 512x512x300).
2. **2D, full resolution**, only on the slices asked for: the air components of the
   slice that overlap the coarse lungs, then a closing of radius ``closing_mm`` (by
   Euclidean distance transforms, in mm, so it is isotropic whatever the pixel size),
   hole filling, and a dilation of ``dilation_mm``. Hole filling puts vessels and
   nodules inside the lung back into it; the closing seals the mouth of the notch that a
   juxta-pleural nodule (solid, attached to the chest wall) cuts into the thresholded
   lung, after which hole filling takes the nodule in. Being per slice, the cost is
   proportional to the slices needed (3 per nodule for the COCO export) rather than to
   the volume.

The closing also bridges the two lungs where they come closer than ``2 * closing_mm``
(anterior junction), and hole filling takes in the top of the diaphragm dome where a
slice shows lung all around it; both are harmless for restricting detection to the
lung region, which is what the mask is for.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
from scipy import ndimage

__all__ = ['LungMask', 'LungMaskParams', 'segment_lungs']


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
        closing_mm: Radius of the 2D closing (seals juxta-pleural notches up to about
            twice this wide).
        dilation_mm: Final 2D dilation, so that the pleural surface is inside the mask.
    """

    threshold_hu: float = -320.0
    coarse_mm: float = 2.0
    min_component_fraction: float = 0.1
    max_lungs: int = 2
    closing_mm: float = 10.0
    dilation_mm: float = 2.0

    def __post_init__(self) -> None:
        for name in ('coarse_mm', 'min_component_fraction', 'closing_mm', 'dilation_mm'):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f'LungMaskParams.{name} must be finite and >= 0, got {value!r}')
        if self.max_lungs < 1:
            raise ValueError(f'LungMaskParams.max_lungs must be >= 1, got {self.max_lungs}')


def _side_face_labels(labels: np.ndarray) -> np.ndarray:
    faces = (labels[..., 0, :], labels[..., -1, :], labels[..., :, 0], labels[..., :, -1])
    return np.unique(np.concatenate([f.ravel() for f in faces]))


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
        self._cache: dict[int, np.ndarray] = {}

    # ---------------------------------------------------------------- 3D step
    def _coarse_lungs(self) -> np.ndarray:
        s = self.step
        air = self.volume[:, ::s, ::s] < self.params.threshold_hu
        labels, count = ndimage.label(air)
        del air
        if count == 0:
            return np.zeros(labels.shape, dtype=bool)
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
        lut = np.zeros(count + 1, dtype=bool)
        lut[keep] = True
        return lut[labels]

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

    def _refine(self, z: int) -> np.ndarray:
        rows, cols = self.volume.shape[1:]
        mask = np.zeros((rows, cols), dtype=bool)
        if not self._coarse[z].any():
            return mask
        air = self.volume[z] < self.params.threshold_hu
        labels, count = ndimage.label(air)
        overlap = np.bincount(labels[air & self._upsampled(z)], minlength=count + 1)
        overlap[0] = 0
        overlap[_side_face_labels(labels)] = 0
        lut = overlap > 0
        if not lut.any():
            return mask
        lung = lut[labels]
        sy, sx = self.spacing_xyz[1], self.spacing_xyz[0]
        reach = self.params.closing_mm + self.params.dilation_mm
        margin_y, margin_x = int(math.ceil(reach / sy)) + 2, int(math.ceil(reach / sx)) + 2
        ys, xs = np.nonzero(lung)
        y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
        # Work on the lung's bounding box plus a margin (padded with background), so
        # that the distance transforms cost what the lungs need, not the whole slice.
        crop = np.zeros((y1 - y0 + 2 * margin_y, x1 - x0 + 2 * margin_x), dtype=bool)
        crop[margin_y:-margin_y, margin_x:-margin_x] = lung[y0:y1, x0:x1]
        sampling = (sy, sx)
        if self.params.closing_mm > 0:
            grown = ndimage.distance_transform_edt(~crop, sampling=sampling) <= self.params.closing_mm
            crop = ndimage.distance_transform_edt(grown, sampling=sampling) > self.params.closing_mm
        crop = ndimage.binary_fill_holes(crop)
        if self.params.dilation_mm > 0:
            crop = ndimage.distance_transform_edt(~crop, sampling=sampling) <= self.params.dilation_mm
        # Paste back, clipping the margin at the slice border.
        ty0, tx0 = y0 - margin_y, x0 - margin_x
        sy0, sx0 = max(0, -ty0), max(0, -tx0)
        dy0, dx0 = max(0, ty0), max(0, tx0)
        h = min(crop.shape[0] - sy0, rows - dy0)
        w = min(crop.shape[1] - sx0, cols - dx0)
        mask[dy0:dy0 + h, dx0:dx0 + w] = crop[sy0:sy0 + h, sx0:sx0 + w]
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
