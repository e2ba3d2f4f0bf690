#!/usr/bin/env python
"""Make a synthetic, LUNA16-shaped data set (for tests, demos and benchmarks).

Writes, under ``OUT``:

* ``subset0/<seriesuid>.mhd`` + ``.raw`` (int16 HU, MetaImage as LUNA16 ships it);
* ``annotations.csv`` (exactly LUNA16's columns, world mm): the scored nodules;
* ``annotations_excluded.csv`` (the same columns): findings that are not scored, here
  masses of 3-6 cm (a hit on them is neither a true nor a false positive);
* ``labels/<seriesuid>.nii.gz``: per scan a uint16 label volume of the scored nodules with
  the scan's exact size, origin, spacing and direction; voxel value = the nodule's 1-based
  data row in ``annotations.csv`` (header not counted), 0 = background;
* ``ground_truth.json``: per scan its geometry, slice thickness, kernel, lung and heart
  ellipsoids, and per lesion its kind, shape, location, true shape parameters, volume and
  volume-equivalent diameter, so that tests can check the pipeline against an
  independent truth.

Two presets (``--preset``):

* ``hard`` (default): scans hard where real chest CT is hard: nodules and masses that
  indent the lung from the pleura, the mediastinum and the heart; juxta-vascular nodules;
  vessels running through the slice plane and vessel trees thinning towards the
  periphery; part-solid, lobulated, spiculated and calcified nodules; ribs, spine, a body
  wall of fat and muscle; per-scan reconstruction kernels (blur, noise), slice thickness
  with partial volume in z, field-of-view padding of -2000, -3024 or -1024 HU. There
  ``diameter_mm`` is the long axis on the largest axial cross-section, as a radiologist
  measures it. See :mod:`data_prep.synthetic.hard`.
* ``basic``: the first version's scans (spherical solid / ground-glass nodules, simple
  anatomy), reproduced exactly: same seed, same arrays. See :mod:`data_prep.synthetic.basic`.

Both keep LUNA16's geometry: in-plane spacing 0.46-0.98 mm, slices 0.625-2.5 mm, non-zero
origins, some scans with flipped axes in the direction matrix.

Scale: spacing is always LUNA16's, and the anatomy is laid out relative to the field of
view, so a small shape is a small "patient" at real resolution (the default 64x128x128
gives lungs of about 30 x 40 mm in-plane). Nodules keep their real sizes in mm, but a
diameter larger than 0.9x the smallest lung semi-axis is drawn again: small test scans
hold the small and medium nodules, which is most of LUNA16 (3-10 mm). Masses need a
field of view of about 150 mm or more (most 256 x 256 scans, no 128 x 128 one); a scan
too small for its mass goes without. The 50x50 patch export
needs lungs wider than 50 px: use ``--shape 40 256 256`` or more for it. ``--shape 300 512
512`` gives full-size scans with the full 3-30 mm range.

Example::

    python data_prep/make_synthetic_luna16.py --out data/synthetic_luna16 --num-scans 8 --seed 0
    python data_prep/make_synthetic_luna16.py --out data/luna16_full --num-scans 4 --shape 300 512 512
"""
from __future__ import annotations

import argparse
import csv
import io
import logging
import os
import sys
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

if __package__ in (None, ''):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from data_prep.common import atomic_write_json, atomic_write_text, run_jobs, setup_logging
from data_prep.synthetic.basic import make_basic_scan
from data_prep.synthetic.common import (SyntheticNodule, SyntheticScan, jsonable,
                                        load_diameter_histogram, write_label_volume)
from data_prep.synthetic.hard import make_hard_scan
from projects.lung_nodule.ct import ANNOTATION_COLUMNS, ScanGeometry

__all__ = ['DEFAULT_PRESET', 'DEFAULT_SHAPE', 'PRESETS', 'SyntheticNodule', 'SyntheticScan',
           'load_diameter_histogram', 'make_synthetic_luna16', 'make_synthetic_scan', 'main']

logger = logging.getLogger('data_prep')

DEFAULT_SHAPE: tuple[int, int, int] = (64, 128, 128)
PRESETS = {'hard': make_hard_scan, 'basic': make_basic_scan}
DEFAULT_PRESET = 'hard'


def _check_preset(preset: str) -> None:
    if preset not in PRESETS:
        raise ValueError(f'preset must be one of {sorted(PRESETS)}, got {preset!r}')


def make_synthetic_scan(out_subset: Path, index: int, seed: int, shape_zyx: Sequence[int],
                        spacing_xyz: Sequence[float] | None = None,
                        direction: Sequence[float] | None = None,
                        preset: str = DEFAULT_PRESET) -> SyntheticScan:
    """Draw and write one scan (``<uid>.mhd``/``.raw``, atomically) and return its truth.

    The scan depends only on ``(seed, index, shape, spacing, direction, preset)``. Its
    label volume is written by :func:`make_synthetic_luna16`, which knows the rows of
    ``annotations.csv``.
    """
    _check_preset(preset)
    return PRESETS[preset](out_subset, index, seed, shape_zyx, spacing_xyz, direction)[0]


def _scan_job(job: tuple) -> tuple[SyntheticScan, list[np.ndarray]]:
    *args, preset = job
    return PRESETS[preset](*args)


def _label_job(job: tuple[Path, SyntheticScan, list[tuple[np.ndarray, int]]]) -> None:
    path, scan, voxels = job
    geometry = ScanGeometry(scan.size_xyz, scan.spacing_xyz, scan.origin_xyz, scan.direction)
    write_label_volume(path, scan.size_xyz[::-1], geometry, voxels)


def _annotation_csv(rows: list[tuple[str, SyntheticNodule]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator='\n')
    writer.writerow(ANNOTATION_COLUMNS)
    for uid, nodule in rows:
        writer.writerow([uid, *(repr(v) for v in nodule.coord_xyz), repr(nodule.diameter_mm)])
    return buffer.getvalue()


def make_synthetic_luna16(out_dir: str | os.PathLike, num_scans: int = 4, seed: int = 0,
                          shape: Sequence[int] = DEFAULT_SHAPE,
                          spacing_xyz: Sequence[float] | None = None,
                          direction: Sequence[float] | None = None,
                          workers: int = 1, preset: str = DEFAULT_PRESET) -> list[SyntheticScan]:
    """Write a synthetic LUNA16-shaped data set (see the module docstring).

    Args:
        out_dir: Output root; gets ``subset0/``, ``labels/``, ``annotations.csv``,
            ``annotations_excluded.csv`` and ``ground_truth.json``.
        num_scans: Number of scans (>= 1).
        seed: Everything is deterministic from it.
        shape: ``(z, y, x)`` voxels per scan; at least 16 x 64 x 64.
        spacing_xyz: Force this spacing on every scan (default: drawn per scan).
        direction: Force this direction matrix (9 numbers) on every scan.
        workers: Parallel processes.
        preset: ``'hard'`` (default) or ``'basic'`` (the first version's scans, exactly).

    Returns:
        The truth of every scan (also in ``ground_truth.json``).
    """
    shape = tuple(int(v) for v in shape)
    if len(shape) != 3 or shape[0] < 16 or shape[1] < 64 or shape[2] < 64:
        raise ValueError(f'shape must be (z, y, x) of at least (16, 64, 64), got {shape}')
    if num_scans < 1:
        raise ValueError(f'num_scans must be >= 1, got {num_scans}')
    _check_preset(preset)
    out_dir = Path(out_dir)
    subset = out_dir / 'subset0'
    jobs = [(subset, i, seed, shape, spacing_xyz, direction, preset) for i in range(num_scans)]
    results = run_jobs(_scan_job, jobs, workers, desc=f'synthetic scans ({preset})')
    scans = [scan for scan, _ in results]
    rows: list[tuple[str, SyntheticNodule]] = []
    label_jobs = []
    for scan, voxels in results:
        scan.label_path = f'labels/{scan.seriesuid}.nii.gz'
        for nodule in scan.nodules:
            rows.append((scan.seriesuid, nodule))
            nodule.label = len(rows)
        label_jobs.append((out_dir / scan.label_path, scan,
                           [(v, n.label) for v, n in zip(voxels, scan.nodules)]))
    run_jobs(_label_job, label_jobs, workers, desc='label volumes')
    atomic_write_text(out_dir / 'annotations.csv', _annotation_csv(rows))
    atomic_write_text(out_dir / 'annotations_excluded.csv', _annotation_csv(
        [(scan.seriesuid, mass) for scan in scans for mass in scan.excluded]))
    atomic_write_json(out_dir / 'ground_truth.json',
                      jsonable({'seed': seed, 'shape_zyx': list(shape), 'preset': preset,
                                'scans': [asdict(s) for s in scans]}), indent=1)
    return scans


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line arguments."""
    parser = argparse.ArgumentParser(
        description='Write a synthetic LUNA16-shaped data set: subset0/<seriesuid>.mhd/.raw '
                    '(int16 HU), annotations.csv and annotations_excluded.csv (world mm), '
                    'labels/<seriesuid>.nii.gz (value = row of annotations.csv) and '
                    'ground_truth.json. The hard preset takes about 0.5-2 s per 96x256x256 scan '
                    'on one core (see benchmarks/RESULTS.md).',
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument('--out', type=Path, required=True, help='output folder')
    parser.add_argument('--num-scans', type=int, default=4, help='number of scans')
    parser.add_argument('--seed', type=int, default=0, help='random seed')
    parser.add_argument('--shape', type=int, nargs=3, default=list(DEFAULT_SHAPE),
                        metavar=('Z', 'Y', 'X'),
                        help='voxels per scan; 300 512 512 gives full-size scans')
    parser.add_argument('--preset', choices=sorted(PRESETS), default=DEFAULT_PRESET,
                        help='hard: nodules at the lung wall, part-solid/lobulated/spiculated/'
                             'calcified nodules, masses, through-plane vessels, kernels, slice '
                             'thickness; basic: the first version\'s simpler scans, exactly')
    parser.add_argument('--workers', type=int, default=1, help='parallel processes')
    parser.add_argument('--verbose', action='store_true', help='debug messages')
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    args = parse_args(argv)
    setup_logging(args.verbose)
    try:
        scans = make_synthetic_luna16(args.out, args.num_scans, args.seed, args.shape,
                                      workers=args.workers, preset=args.preset)
    except (ValueError, RuntimeError, OSError) as exc:
        logger.error('%s', exc)
        return 1
    nodules = [n for s in scans for n in s.nodules]
    kinds = Counter(n.kind for n in nodules)
    locations = Counter(n.location for n in nodules)
    logger.info('wrote %d %s scans (%d without nodules), %d nodules (%s; %s) and %d excluded '
                'masses to %s', len(scans), args.preset, sum(not s.nodules for s in scans),
                len(nodules), ', '.join(f'{k} {v}' for k, v in sorted(kinds.items())),
                ', '.join(f'{k} {v}' for k, v in sorted(locations.items())),
                sum(len(s.excluded) for s in scans), args.out)
    return 0


if __name__ == '__main__':
    sys.exit(main())
