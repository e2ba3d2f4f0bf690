"""Independent reference computations for the CT / data-prep tests.

Written from the definitions (world = origin + D @ (spacing * index)), with numpy only,
so that the tests do not check the package against itself.
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np


def world_of_pixels(entry: dict, rows: int, cols: int) -> np.ndarray:
    """World coordinates (mm) of every pixel centre of a COCO slice entry: (rows, cols, 3)."""
    spacing = np.asarray(entry['spacing_xyz'], dtype=np.float64)
    origin = np.asarray(entry['origin_xyz'], dtype=np.float64)
    direction = np.asarray(entry['direction'], dtype=np.float64).reshape(3, 3)
    r, c = np.meshgrid(np.arange(rows), np.arange(cols), indexing='ij')
    index = np.stack([c, r, np.full_like(r, entry['z_index'])], axis=-1).astype(np.float64)
    return origin + (index * spacing) @ direction.T


def sphere_mask_from_world(entry: dict, rows: int, cols: int, centre_xyz, diameter_mm) -> np.ndarray:
    """Pixels of a slice whose centre lies inside the sphere (world frame)."""
    world = world_of_pixels(entry, rows, cols)
    d2 = ((world - np.asarray(centre_xyz, dtype=np.float64)) ** 2).sum(-1)
    return d2 <= (diameter_mm / 2.0) ** 2


def index_of_world(point_xyz, spacing_xyz, origin_xyz, direction) -> np.ndarray:
    """Continuous (x, y, z) index of a world point: D^T (p - o) / s."""
    d = np.asarray(direction, dtype=np.float64).reshape(3, 3)
    return d.T @ (np.asarray(point_xyz, float) - np.asarray(origin_xyz, float)) / np.asarray(spacing_xyz, float)


def read_annotations_csv(path: Path) -> dict[str, list[tuple[tuple[float, float, float], float]]]:
    """seriesuid -> [(centre_xyz, diameter_mm)] with the csv module only."""
    out: dict[str, list] = {}
    with open(path, newline='') as handle:
        for row in csv.DictReader(handle):
            out.setdefault(row['seriesuid'], []).append(
                ((float(row['coordX']), float(row['coordY']), float(row['coordZ'])),
                 float(row['diameter_mm'])))
    return out


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0
