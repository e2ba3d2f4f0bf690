"""In-plane resampling of slice images for a network trained at another pixel size.

Nodules are 3-30 mm; the model learnt them at LUNA16's 0.46-0.98 mm pixels. A scan
with 3 mm pixels would show them at a quarter of the size in pixels, below the
smallest anchors, so its slices are resampled to the config's
``infer_pixel_spacing_mm`` before the network and the masks are resampled back to
the scan's own pixel grid afterwards (everything downstream -- linking, measurement,
label volume -- is in the scan's geometry). Only spacings outside
:data:`RESAMPLE_RATIO_BAND` around the target are resampled: inside it the model has
seen such pixels, and resampling would only blur. Slices are never resampled along z
(thick slices are processed as they are).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np

__all__ = ['InPlaneResampling', 'RESAMPLE_RATIO_BAND']

#: ``native pixel mm / infer_pixel_spacing_mm`` inside this band is used as it is. With
#: the default 0.7 mm that keeps 0.42-1.05 mm native, which covers LUNA16 (0.46-0.98).
RESAMPLE_RATIO_BAND: tuple[float, float] = (0.6, 1.5)


@dataclass(frozen=True)
class InPlaneResampling:
    """Scan pixel grid <-> model pixel grid of one scan's slices.

    Attributes:
        native_shape: ``(rows, cols)`` of the scan's slices.
        model_shape: ``(rows, cols)`` of the images given to the network.
        native_spacing_xy: The scan's pixel size (x, y) in mm.
        model_spacing_xy: The pixel size the network sees (x, y) in mm.
    """

    native_shape: tuple[int, int]
    model_shape: tuple[int, int]
    native_spacing_xy: tuple[float, float]
    model_spacing_xy: tuple[float, float]

    @classmethod
    def plan(cls, spacing_xyz: Sequence[float], shape_yx: Sequence[int],
             target_mm: float | None,
             band: tuple[float, float] = RESAMPLE_RATIO_BAND) -> 'InPlaneResampling | None':
        """The resampling a scan needs, or ``None`` when its pixels are close enough.

        Args:
            spacing_xyz: The scan's spacing (x, y, z) mm.
            shape_yx: ``(rows, cols)`` of its slices.
            target_mm: The config's ``infer_pixel_spacing_mm``; ``None`` never resamples.
            band: Ratios ``native / target`` (per axis) that are used as they are.
        """
        if target_mm is None:
            return None
        if not (math.isfinite(target_mm) and target_mm > 0):
            raise ValueError(f'infer_pixel_spacing_mm must be a positive number, got {target_mm!r}')
        sx, sy = float(spacing_xyz[0]), float(spacing_xyz[1])
        if all(band[0] <= s / target_mm <= band[1] for s in (sx, sy)):
            return None
        rows, cols = int(shape_yx[0]), int(shape_yx[1])
        model_shape = (max(1, round(rows * sy / target_mm)), max(1, round(cols * sx / target_mm)))
        # The exact pixel size after rounding the image size (field of view is kept).
        model_spacing = (cols * sx / model_shape[1], rows * sy / model_shape[0])
        return cls((rows, cols), model_shape, (sx, sy), model_spacing)

    def to_model(self, images: np.ndarray) -> np.ndarray:
        """uint8 ``(n, rows, cols)`` scan slices -> ``(n, *model_shape)`` (bilinear)."""
        out = np.empty((len(images), *self.model_shape), dtype=images.dtype)
        for i, image in enumerate(images):
            out[i] = cv2.resize(image, self.model_shape[::-1], interpolation=cv2.INTER_LINEAR)
        return out

    def to_scan(self, masks: np.ndarray) -> np.ndarray:
        """bool ``(k, *model_shape)`` masks -> ``(k, rows, cols)`` (bilinear, >= 0.5)."""
        out = np.zeros((len(masks), *self.native_shape), dtype=bool)
        for i, mask in enumerate(masks):
            out[i] = cv2.resize(mask.astype(np.float32), self.native_shape[::-1],
                                interpolation=cv2.INTER_LINEAR) >= 0.5
        return out

    def as_dict(self) -> dict:
        """JSON-ready description (for ``summary.json``)."""
        return {'native_shape': list(self.native_shape), 'model_shape': list(self.model_shape),
                'native_spacing_xy': list(self.native_spacing_xy),
                'model_spacing_xy': list(self.model_spacing_xy)}
