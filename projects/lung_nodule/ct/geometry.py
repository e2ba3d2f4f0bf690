"""Scan geometry: world (mm) <-> voxel index, with origin, spacing *and* direction.

Axis conventions (the same as SimpleITK and MONAI's ITK reader):

* numpy arrays of a volume are indexed ``[z, y, x]`` (``sitk.GetArrayFromImage`` order);
* ``spacing_xyz``, ``origin_xyz``, continuous indices ``index_xyz`` and world points
  ``point_xyz`` are ordered ``(x, y, z)`` (``GetSpacing()`` / ``GetOrigin()`` order);
* ``direction`` is the 3x3 direction cosine matrix as SimpleITK's ``GetDirection()``
  returns it: 9 numbers, row-major, column ``j`` being the world direction of index axis
  ``j``.

The world point of a continuous index is ``origin + D @ (spacing * index)``. Popular
LUNA16 scripts compute ``np.absolute(world - origin) / spacing``, which is right only for
an identity direction: a flipped axis then lands on the mirrored voxel. Here the
conversion is SimpleITK's own ``TransformPhysicalPointToContinuousIndex`` on a 1-voxel
reference image that carries the scan's geometry, so it is exactly what ITK does for the
full image, without needing the pixel data.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import SimpleITK as sitk

__all__ = ['ScanGeometry']

_IDENTITY = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)


def _triple(values: Iterable[float], name: str) -> tuple[float, float, float]:
    out = tuple(float(v) for v in values)
    if len(out) != 3 or not all(math.isfinite(v) for v in out):
        raise ValueError(f'{name} must be 3 finite numbers (x, y, z), got {out!r}')
    return out  # type: ignore[return-value]


@dataclass(frozen=True)
class ScanGeometry:
    """Where the voxels of a 3D CT volume lie in the world (patient) frame.

    Args:
        size_xyz: Number of voxels along x, y, z (``image.GetSize()``); the numpy array
            has shape ``(size_z, size_y, size_x)``.
        spacing_xyz: Voxel size in mm along the x, y, z index axes.
        origin_xyz: World position (mm) of the centre of voxel ``(0, 0, 0)``.
        direction: 9 numbers, the row-major 3x3 direction matrix (``GetDirection()``).
            It must be orthonormal (LUNA16's are identities or axis flips).
    """

    size_xyz: tuple[int, int, int]
    spacing_xyz: tuple[float, float, float]
    origin_xyz: tuple[float, float, float]
    direction: tuple[float, ...] = _IDENTITY

    def __post_init__(self) -> None:
        size = tuple(int(v) for v in self.size_xyz)
        if len(size) != 3 or min(size) < 1:
            raise ValueError(f'size_xyz must be 3 positive integers, got {self.size_xyz!r}')
        spacing = _triple(self.spacing_xyz, 'spacing_xyz')
        if min(spacing) <= 0:
            raise ValueError(f'spacing_xyz must be positive, got {spacing!r}')
        direction = tuple(float(v) for v in self.direction)
        if len(direction) != 9:
            raise ValueError(f'direction must have 9 numbers, got {len(direction)}: {direction!r}')
        matrix = np.asarray(direction).reshape(3, 3)
        if not np.allclose(matrix @ matrix.T, np.eye(3), atol=1e-4):
            raise ValueError(f'direction must be an orthonormal 3x3 matrix, got {direction!r}')
        object.__setattr__(self, 'size_xyz', size)
        object.__setattr__(self, 'spacing_xyz', spacing)
        object.__setattr__(self, 'origin_xyz', _triple(self.origin_xyz, 'origin_xyz'))
        object.__setattr__(self, 'direction', direction)

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_image(cls, image: sitk.Image) -> 'ScanGeometry':
        """Geometry of a 3D SimpleITK image (or of an ``ImageFileReader`` header)."""
        if image.GetDimension() != 3:
            raise ValueError(f'expected a 3D image, got {image.GetDimension()}D')
        return cls(tuple(image.GetSize()), tuple(image.GetSpacing()),
                   tuple(image.GetOrigin()), tuple(image.GetDirection()))

    @classmethod
    def from_reader(cls, reader: sitk.ImageFileReader) -> 'ScanGeometry':
        """Geometry from a reader after ``ReadImageInformation()`` (no pixel data read)."""
        if reader.GetDimension() != 3:
            raise ValueError(f'{reader.GetFileName()}: expected a 3D image, '
                             f'got {reader.GetDimension()}D')
        return cls(tuple(reader.GetSize()), tuple(reader.GetSpacing()),
                   tuple(reader.GetOrigin()), tuple(reader.GetDirection()))

    @classmethod
    def from_coco_image(cls, entry: Mapping[str, Any], num_slices: int = 1) -> 'ScanGeometry':
        """Geometry from a COCO image entry written by ``data_prep/luna16_to_coco.py``.

        The entry carries ``width``, ``height``, ``spacing_xyz``, ``origin_xyz`` and
        ``direction``; the number of slices is not stored there and only matters for
        :meth:`contains_index`, hence ``num_slices``.
        """
        return cls((int(entry['width']), int(entry['height']), int(num_slices)),
                   tuple(entry['spacing_xyz']), tuple(entry['origin_xyz']),
                   tuple(entry['direction']))

    # ------------------------------------------------------------------ properties
    @property
    def shape_zyx(self) -> tuple[int, int, int]:
        """Shape of the numpy array of the volume, ``(z, y, x)``."""
        return self.size_xyz[2], self.size_xyz[1], self.size_xyz[0]

    @property
    def direction_matrix(self) -> np.ndarray:
        """The 3x3 direction matrix (float64)."""
        return np.asarray(self.direction, dtype=np.float64).reshape(3, 3)

    @property
    def flipped_axes(self) -> tuple[str, ...]:
        """Names of the index axes whose direction points against the world axis."""
        diag = np.diag(self.direction_matrix)
        return tuple(name for name, d in zip('xyz', diag) if d < 0)

    def as_dict(self) -> dict[str, list]:
        """JSON-ready ``spacing_xyz``, ``origin_xyz``, ``direction`` (COCO extra keys)."""
        return {'spacing_xyz': list(self.spacing_xyz), 'origin_xyz': list(self.origin_xyz),
                'direction': list(self.direction)}

    def reference_image(self) -> sitk.Image:
        """A 1x1x1 image carrying this geometry (index <-> world needs no pixel data)."""
        image = sitk.Image(1, 1, 1, sitk.sitkUInt8)
        image.SetSpacing(self.spacing_xyz)
        image.SetOrigin(self.origin_xyz)
        image.SetDirection(self.direction)
        return image

    # ------------------------------------------------------------------ transforms
    def _transform(self, points: Sequence[float] | np.ndarray, method: str) -> np.ndarray:
        """Apply a SimpleITK point transform of the reference image to one or N points."""
        pts = np.asarray(points, dtype=np.float64)
        transform = getattr(self.reference_image(), method)
        flat = pts.reshape(-1, 3)
        out = np.array([transform(tuple(p)) for p in flat], dtype=np.float64)
        return out.reshape(pts.shape)

    def world_to_index(self, points_xyz: Sequence[float] | np.ndarray) -> np.ndarray:
        """World points (mm, x, y, z) -> continuous voxel indices ``(x, y, z)``.

        Args:
            points_xyz: One point ``(x, y, z)`` or an array of shape ``(N, 3)``.

        Returns:
            float64 array of the same shape; integer values are voxel centres.
        """
        return self._transform(points_xyz, 'TransformPhysicalPointToContinuousIndex')

    def index_to_world(self, index_xyz: Sequence[float] | np.ndarray) -> np.ndarray:
        """Continuous voxel indices ``(x, y, z)`` -> world points (mm, x, y, z)."""
        return self._transform(index_xyz, 'TransformContinuousIndexToPhysicalPoint')

    def pixel_to_world(self, row: float, col: float, z_index: float) -> np.ndarray:
        """World point (x, y, z) of a slice pixel: ``row`` = y index, ``col`` = x index."""
        return self.index_to_world((col, row, z_index))

    def contains_index(self, index_xyz: Sequence[float] | np.ndarray) -> bool:
        """Whether a continuous index lies within the volume's voxels (edges included).

        Voxel ``i`` covers ``[i - 0.5, i + 0.5]``; so a point is inside when every
        coordinate is in ``[-0.5, size - 0.5]``.
        """
        idx = np.asarray(index_xyz, dtype=np.float64)
        size = np.asarray(self.size_xyz, dtype=np.float64)
        return bool(np.all(np.isfinite(idx)) and np.all(idx >= -0.5) and np.all(idx <= size - 0.5))
