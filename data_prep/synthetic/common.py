"""What every synthetic scan shares: its truth records, the drawing canvas, distance
helpers and the writers (MetaImage scan, NIfTI label volume), all atomic.

Frames: the generator draws in the *index frame*, in mm (``mm = index * spacing``,
ordered x, y, z); only the written geometry (origin, direction) maps it to the world.
Numpy volumes are ``(z, y, x)``.
"""
from __future__ import annotations

import csv
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import SimpleITK as sitk

from projects.lung_nodule.ct import ScanGeometry

__all__ = ['DIRECTIONS', 'HISTOGRAM', 'UID_PREFIX', 'Canvas', 'SyntheticNodule',
           'SyntheticScan', 'jsonable', 'load_diameter_histogram', 'random_unit',
           'sample_diameter', 'segment_distance', 'write_label_volume', 'write_mhd']

HISTOGRAM = Path(__file__).resolve().parents[1] / 'luna16_diameter_histogram.csv'
UID_PREFIX = '1.3.6.1.4.1.14519.5.2.1.6279.6001.'
DIRECTIONS = {
    'identity': (1, 0, 0, 0, 1, 0, 0, 0, 1),
    'flip_z': (1, 0, 0, 0, 1, 0, 0, 0, -1),
    'flip_xy': (-1, 0, 0, 0, -1, 0, 0, 0, 1),
    'flip_x': (-1, 0, 0, 0, 1, 0, 0, 0, 1),
}


@dataclass
class SyntheticNodule:
    """A lesion of a synthetic scan (its truth).

    ``coord_xyz`` (world mm) and ``centre_index_xyz`` are the centre of the sphere in the
    basic preset and the centroid of the drawn lesion in the hard one (LUNA16's centres
    are centroids of the readers' outlines). ``diameter_mm`` is what ``annotations.csv``
    says: the sphere's diameter (basic), or the long axis on the largest axial cross-section
    as a radiologist measures it (hard).
    """

    coord_xyz: list[float]
    centre_index_xyz: list[float]
    diameter_mm: float
    kind: str  # 'solid' | 'ground_glass' | 'part_solid' | 'calcified' | 'mass'
    juxta_pleural: bool  # touches the pleura (costal, mediastinal or cardiac)
    lung: int  # 0 right (low x index), 1 left
    shape: str = 'sphere'  # 'sphere' | 'ellipsoid' | 'lobulated' | 'spiculated'
    location: str = 'parenchyma'  # 'parenchyma' | 'pleural' | 'mediastinal' | 'cardiac' | 'vascular'
    equivalent_diameter_mm: float = 0.0  # diameter of the sphere of the same volume
    volume_mm3: float = 0.0
    long_axis_slice: int = -1  # z index of the largest axial cross-section (-1: not measured)
    long_axis_index_xyz: list[list[float]] = field(default_factory=list)  # its 2 end points
    params: dict[str, Any] = field(default_factory=dict)  # true shape and densities
    label: int = 0  # value in the label volume = 1-based data row of annotations.csv


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
    preset: str = 'basic'
    slice_thickness_mm: float = 0.0  # reconstructed slab per slice (0: a point sample)
    kernel: dict[str, Any] = field(default_factory=dict)  # reconstruction kernel: blur, noise
    excluded: list[SyntheticNodule] = field(default_factory=list)  # annotations_excluded.csv
    label_path: str = ''  # relative to the data set root


def jsonable(value: Any) -> Any:
    """``value`` with numpy arrays and scalars turned into lists and Python numbers."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    return value


def load_diameter_histogram(path: Path = HISTOGRAM) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(lower_mm, upper_mm, counts)`` of the shipped LUNA16 diameter histogram."""
    lines = [line for line in path.read_text().splitlines() if line and not line.startswith('#')]
    rows = list(csv.DictReader(lines))
    lower = np.array([float(r['lower_mm']) for r in rows])
    upper = np.array([float(r['upper_mm']) for r in rows])
    counts = np.array([float(r['count']) for r in rows])
    return lower, upper, counts


def sample_diameter(rng: np.random.Generator, max_mm: float,
                    histogram: tuple[np.ndarray, np.ndarray, np.ndarray],
                    min_mm: float = 0.0) -> float:
    """A diameter from LUNA16's distribution, between ``min_mm`` and ``max_mm``."""
    lower, upper, counts = histogram
    weights = counts * (lower < max_mm) * (upper > min_mm)
    if weights.sum() <= 0:
        raise ValueError(f'the lungs are too small for a {max(lower.min(), min_mm):.0f} mm nodule '
                         f'(largest diameter that fits: {max_mm:.1f} mm); use a larger --shape')
    i = rng.choice(len(counts), p=weights / weights.sum())
    return float(rng.uniform(max(lower[i], min_mm), min(upper[i], max_mm)))


class Canvas:
    """The volume being drawn, with index <-> mm (index frame) helpers.

    Args:
        shape_zyx: Volume shape.
        spacing_xyz: Voxel size (mm).
        dtype: ``int16`` (the basic preset draws HU directly) or ``float32`` (the hard
            preset blurs and adds noise before rounding).
    """

    def __init__(self, shape_zyx: Sequence[int], spacing_xyz: Sequence[float],
                 dtype: type = np.int16) -> None:
        self.shape = tuple(int(v) for v in shape_zyx)
        self.spacing = np.asarray(spacing_xyz, dtype=np.float64)  # x, y, z
        self.volume = np.empty(self.shape, dtype=dtype)

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


def segment_distance(zs, ys, xs, p0: np.ndarray, p1: np.ndarray,
                     with_t: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Distance (mm) of grid points to the segment ``p0``-``p1`` (x y z mm); optionally
    also the position ``t`` in [0, 1] of the nearest point along it."""
    d = p1 - p0
    length2 = float(d @ d) or 1e-12
    t = ((xs - p0[0]) * d[0] + (ys - p0[1]) * d[1] + (zs - p0[2]) * d[2]) / length2
    t = np.clip(t, 0.0, 1.0)
    dist = np.sqrt((xs - p0[0] - t * d[0]) ** 2 + (ys - p0[1] - t * d[1]) ** 2
                   + (zs - p0[2] - t * d[2]) ** 2)
    return (dist, t) if with_t else dist


def random_unit(rng: np.random.Generator) -> np.ndarray:
    """A random direction (x, y, z)."""
    v = rng.normal(size=3)
    return v / np.linalg.norm(v)


def _write_image_atomic(image: sitk.Image, folder: Path, name: str, compress: bool,
                        companions: Sequence[str] = ()) -> None:
    """Write ``folder/name`` (and ITK's companion files) via a hidden temporary folder;
    the named file lands last, so a reader never sees it before its data."""
    folder.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder, prefix='.tmp-'))
    try:
        sitk.WriteImage(image, str(tmp / name), useCompression=compress)
        for companion in companions:
            os.replace(tmp / companion, folder / companion)
        os.replace(tmp / name, folder / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _with_geometry(image: sitk.Image, geometry: ScanGeometry) -> sitk.Image:
    image.SetSpacing(geometry.spacing_xyz)
    image.SetOrigin(geometry.origin_xyz)
    image.SetDirection(geometry.direction)
    return image


def write_mhd(volume: np.ndarray, geometry: ScanGeometry, out_subset: Path, uid: str) -> None:
    """Write ``<uid>.mhd``/``.raw`` (uncompressed, as LUNA16 ships them); ``.mhd`` last."""
    image = _with_geometry(sitk.GetImageFromArray(volume), geometry)
    _write_image_atomic(image, out_subset, f'{uid}.mhd', compress=False, companions=[f'{uid}.raw'])


def write_label_volume(path: Path, shape_zyx: Sequence[int], geometry: ScanGeometry,
                       voxels: Sequence[tuple[np.ndarray, int]]) -> None:
    """Write a uint16 label volume (NIfTI, gzipped) with the scan's exact geometry.

    Args:
        path: ``<folder>/<seriesuid>.nii.gz``.
        shape_zyx: The scan's array shape.
        geometry: The scan's geometry (size, spacing, origin, direction).
        voxels: ``(flat indices into the (z, y, x) array, value)`` per lesion.
    """
    labels = np.zeros(tuple(int(v) for v in shape_zyx), dtype=np.uint16)
    flat = labels.reshape(-1)
    for indices, value in voxels:
        if not 0 < value < 2 ** 16:
            raise ValueError(f'label value {value} does not fit a uint16 label volume')
        flat[indices] = value
    image = _with_geometry(sitk.GetImageFromArray(labels), geometry)
    _write_image_atomic(image, Path(path).parent, Path(path).name, compress=True)
