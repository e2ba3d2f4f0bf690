"""Detector candidates -> orthogonal-view images for the false-positive reduction stage.

The detector (Mask R-CNN on single slices) marks vessels that cross the slice plane:
they are round there, like nodules. LUNA16 systems end with a second stage that looks at
each candidate in 3D and rescores it; ours is an mmpretrain classifier on three
orthogonal views (:func:`projects.lung_nodule.ct.views.orthogonal_views`). This tool
makes its training set from what the detector really gets wrong: the candidates that
``tools/infer_scan.py`` wrote for the *training* scans.

* **nodule**: every annotated nodule's centre, and ``--copies - 1`` copies moved by a
  random shift (Gaussian, ``--jitter-mm``, at most half the radius: the detector's
  centres are not exact either), plus every candidate that hits a nodule (LUNA16's rule:
  closer to its centre than its radius);
* **normal**: every other candidate, except those on an excluded finding
  (``--excluded``: neither nodule nor normal, as LUNA16 ignores them); and ``--background``
  points per scan on vessels and other dense structures inside the lungs, away from every
  finding (:func:`background_points`): more of what the detector confuses with nodules, from
  every exported scan, without running the detector on it.

Only scans of the chosen splits (``--splits`` CSV, ``--export-splits``) are used; never
export the test split, whose candidates the classifier will rescore. A scan of those
splits without candidates (not run through the detector) gives its nodules only; the
summary counts such scans.

Output (ImageNet-style folders, read by ``PatchFolderDataset``)::

    OUT/{train,val}/{nodule,normal}/<seriesuid>_<kind><i>.png   3-channel 32x32 PNG
    OUT/info.json      view size and mm per pixel (the rescoring must use the same)
    OUT/summary.json   counts, problems, skipped scans, seconds

The folder is written under a temporary name and renamed when complete: a failed run
leaves the previous output as it was. A scan that cannot be read is skipped and named.

Example::

    python data_prep/candidates_to_views.py --luna-root data/luna16 \\
        --annotations data/luna16/annotations.csv --candidates work_dirs/infer_train/candidates.csv \\
        --splits data/luna16_coco/splits.csv --out data/luna16_views
"""
from __future__ import annotations

import argparse
import shutil
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np

if __package__ in (None, ''):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from data_prep.common import (RunSummary, add_input_args, atomic_write_json, load_inputs, logger,
                              read_splits_csv, run_cli, run_jobs)
from projects.lung_nodule.ct import (CTScan, LungMask, NoduleAnnotation, ScanReadError,
                                     read_annotations, read_scan)
from projects.lung_nodule.ct.views import VIEW_MM_PER_PIXEL, VIEW_SIZE, orthogonal_views
from projects.lung_nodule.evaluation.froc import hit_matrix
from projects.lung_nodule.evaluation.luna16_inputs import read_candidates

CLASSES = ('normal', 'nodule')
#: Background points: voxels denser than this (vessel, airway wall, fissure; lung air is
#: below -700 HU) ...
DENSE_HU = -500
#: ... inside the lung mask, with more than this fraction of lung air (< AIR_HU) in a
#: window of about AIR_WINDOW_MM (z, y, x) around them: a structure in the parenchyma, not
#: the chest wall or the mediastinum, which the lung mask's hull also covers ...
AIR_HU = -700
AIR_FRACTION = 0.5
AIR_WINDOW_MM = (3.0, 7.0, 7.0)
#: ... and farther from every finding than this many radii (and BACKGROUND_MIN_CLEARANCE_MM).
BACKGROUND_CLEARANCE_RADII = 1.5
BACKGROUND_MIN_CLEARANCE_MM = 7.5


@dataclass(frozen=True)
class ViewJob:
    """One scan: its nodules, excluded findings and detector candidates."""

    seriesuid: str
    mhd_path: Path
    split: str
    nodules: tuple[NoduleAnnotation, ...]
    excluded: tuple[NoduleAnnotation, ...]
    candidates: tuple[tuple[float, float, float], ...]
    copies: int
    jitter_mm: float
    seed: int
    size: int
    mm_per_pixel: float
    background: int = 0


def within_radius(points: np.ndarray, findings: Sequence[NoduleAnnotation]) -> np.ndarray:
    """Whether each point hits some finding, by the FROC's own rule (:func:`hit_matrix`)."""
    return hit_matrix([f.coord_xyz for f in findings], [f.diameter_mm for f in findings],
                      points).any(axis=0)


def nodule_centres(job: ViewJob, rng: np.random.Generator) -> np.ndarray:
    """Each nodule's centre and ``copies - 1`` shifted copies, ``(n, 3)`` world mm."""
    centres = []
    for nodule in job.nodules:
        centre = np.asarray(nodule.coord_xyz, dtype=np.float64)
        centres.append(centre)
        limit = nodule.radius_mm / 2
        for _ in range(job.copies - 1):
            centres.append(centre + np.clip(rng.normal(0, job.jitter_mm, 3), -limit, limit))
    return np.asarray(centres, dtype=np.float64).reshape(-1, 3)


def background_points(scan: CTScan, findings: Sequence[NoduleAnnotation], count: int,
                      rng: np.random.Generator) -> np.ndarray:
    """Up to ``count`` random world points (mm) on dense structures inside the lungs.

    Why: the detector's false positives are vessels and airway walls cut across; the
    candidates of the scans it ran on give ~1,000 of them, and these points add the same
    kinds of structure from every exported scan at the cost of a lung mask, not of
    inference (demo: CPM 0.455 -> 0.487, benchmarks/RESULTS.md). The rules are the
    constants above; ``(0, 3)`` when the scan has no such voxel.
    """
    if count <= 0:
        return np.zeros((0, 3))
    from scipy import ndimage  # imported here: it adds to every converter's start-up
    sx, sy, sz = scan.geometry.spacing_xyz
    lungs = LungMask(scan.array, scan.geometry.spacing_xyz)
    lung_z = np.flatnonzero(lungs.coarse_area_mm2() > 0)
    if not len(lung_z):
        return np.zeros((0, 3))
    first, last = int(lung_z[0]), int(lung_z[-1]) + 1
    volume = scan.array[first:last]
    window = [2 * max(1, round(mm / 2 / s)) + 1 for mm, s in zip(AIR_WINDOW_MM, (sz, sy, sx))]
    air = ndimage.uniform_filter((volume < AIR_HU).astype(np.float32), size=window)
    voxels = np.argwhere((volume > DENSE_HU) & (air > AIR_FRACTION)
                         & lungs.slices(range(first, last)))
    voxels[:, 0] += first
    if findings and len(voxels):  # clearance in index space, scaled to mm (direction is a rotation)
        centres = scan.geometry.world_to_index([f.coord_xyz for f in findings])[:, ::-1]
        reach = np.array([max(BACKGROUND_CLEARANCE_RADII * f.radius_mm,
                              BACKGROUND_MIN_CLEARANCE_MM) for f in findings])
        scale = np.array([sz, sy, sx])
        distance = np.linalg.norm((voxels[:, None, :] - centres[None]) * scale, axis=2)
        voxels = voxels[(distance > reach).all(axis=1)]
    if not len(voxels):
        return np.zeros((0, 3))
    chosen = voxels[rng.choice(len(voxels), size=min(count, len(voxels)), replace=False)]
    return scan.geometry.index_to_world(chosen[:, ::-1].astype(np.float64)).reshape(-1, 3)


def scan_views(job: ViewJob) -> dict[str, Any]:
    """The views of one scan by class; never raises for bad input."""
    try:
        scan = read_scan(job.mhd_path)
        rng = np.random.default_rng([job.seed, int(job.seriesuid.replace('.', '')[-9:])])
        candidates = np.asarray(job.candidates, dtype=np.float64).reshape(-1, 3)
        hits = within_radius(candidates, job.nodules)
        ignored = ~hits & within_radius(candidates, job.excluded)
        positives = np.concatenate([nodule_centres(job, rng), candidates[hits]])
        background = background_points(scan, job.nodules + job.excluded, job.background, rng)
        negatives = np.concatenate([candidates[~hits & ~ignored], background])
        views = {name: orthogonal_views(scan, points, job.size, job.mm_per_pixel)
                 for name, points in (('nodule', positives), ('normal', negatives))}
        counts = {'views_nodule': len(positives), 'views_normal': len(negatives),
                  'views_background': len(background),
                  'candidates': len(candidates), 'candidates_hit': int(hits.sum()),
                  'candidates_on_excluded': int(ignored.sum())}
        return {'seriesuid': job.seriesuid, 'status': 'done', 'views': views, 'counts': counts}
    except (ScanReadError, ValueError, MemoryError) as exc:
        reason = str(exc)
    except Exception as exc:  # one bad scan must not stop the run
        reason = f'{type(exc).__name__}: {exc}'
    return {'seriesuid': job.seriesuid, 'status': 'failed', 'reason': reason}


def view_jobs(args: argparse.Namespace, summary: RunSummary) -> list[ViewJob]:
    """One job per scan of the exported splits that is on disk."""
    inputs = load_inputs(args.luna_root, args.annotations, summary)
    splits = read_splits_csv(args.splits)
    excluded: dict[str, list[NoduleAnnotation]] = defaultdict(list)
    if args.excluded is not None:
        rows, problems = read_annotations(args.excluded)
        for problem in problems:
            summary.warn(f'bad excluded row, left out: {problem}')
        for row in rows:
            excluded[row.seriesuid].append(row)
    candidates, warnings = read_candidates(args.candidates)
    for message in warnings:
        summary.warn(message)
    by_scan: dict[str, list[tuple[float, float, float]]] = defaultdict(list)
    for candidate in candidates:
        by_scan[candidate.seriesuid].append(candidate.coord_xyz)
    wanted = set(args.export_splits)
    jobs = []
    for uid, split in sorted(splits.items()):
        if split not in wanted:
            continue
        if uid not in inputs.scans:
            summary.skip_scan(uid, f'listed in {args.splits} but not found under {args.luna_root}')
            continue
        if uid not in by_scan:  # not run through the detector (the demo runs half of them)
            summary.counts['scans_without_candidates'] += 1
        jobs.append(ViewJob(uid, inputs.scans[uid], split, tuple(inputs.nodules.get(uid, [])),
                            tuple(excluded.get(uid, [])), tuple(by_scan.get(uid, [])),
                            args.copies, args.jitter_mm, args.seed, args.size, args.mm_per_pixel,
                            args.background))
    other = sorted(set(by_scan) - {j.seriesuid for j in jobs})
    if other:
        summary.counts['candidate_scans_not_exported'] = len(other)
    if summary.counts['scans_without_candidates']:
        logger.info('%d scans of %s have no candidate: only their nodules are exported',
                    summary.counts['scans_without_candidates'], '/'.join(args.export_splits))
    return jobs


def convert(args: argparse.Namespace, summary: RunSummary) -> bool:
    """The whole export (arguments of :func:`parse_args`); whether anything was written."""
    jobs = view_jobs(args, summary)
    if not jobs:
        summary.warn(f'no scan of the splits {args.export_splits} in {args.splits}')
        return False
    results = run_jobs(scan_views, jobs, args.workers, desc='scans -> candidate views')
    out = args.out
    staging = out.with_name(f'.{out.name}.partial')
    shutil.rmtree(staging, ignore_errors=True)
    written = 0
    for job, result in zip(jobs, results):  # run_jobs keeps the job order
        uid = job.seriesuid
        if result['status'] != 'done':
            summary.skip_scan(uid, result['reason'])
            continue
        summary.counts.update(result['counts'])
        for name, views in result['views'].items():
            folder = staging / job.split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i, view in enumerate(views):
                cv2.imwrite(str(folder / f'{uid}_{name}{i:03d}.png'), view)
                written += 1
    if not written:
        shutil.rmtree(staging, ignore_errors=True)
        return False
    for split in args.export_splits:  # every split x class folder exists, empty or not
        for name in CLASSES:
            (staging / split / name).mkdir(parents=True, exist_ok=True)
    atomic_write_json(staging / 'info.json', {'view_size': args.size,
                                              'mm_per_pixel': args.mm_per_pixel,
                                              'channels': ['axial', 'coronal', 'sagittal']},
                      indent=1)
    if out.exists():
        shutil.rmtree(out)
    staging.rename(out)
    return True


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line arguments."""
    parser = argparse.ArgumentParser(
        description='Detector candidates (candidates.csv of tools/infer_scan.py on the training '
                    'scans) -> 3-view nodule/normal images for the false-positive reduction '
                    'classifier. Seconds for a few dozen scans.',
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_input_args(parser)
    parser.add_argument('--candidates', type=Path, nargs='+', required=True,
                        help="the detector's candidates.csv (LUNA16 submission format)")
    parser.add_argument('--splits', type=Path, required=True,
                        help='splits.csv of the COCO export (seriesuid,split)')
    parser.add_argument('--export-splits', nargs='+', default=['train'],
                        choices=('train', 'val'),
                        help='splits whose scans are exported (never the test split)')
    parser.add_argument('--excluded', type=Path, default=None,
                        help="LUNA16's annotations_excluded.csv: candidates on these findings "
                             'are left out of both classes')
    parser.add_argument('--copies', type=int, default=10,
                        help='views per annotated nodule (its centre, then shifted copies)')
    parser.add_argument('--jitter-mm', type=float, default=1.0,
                        help='standard deviation of the copies\' shift (at most half the radius)')
    parser.add_argument('--background', type=int, default=0,
                        help='normal views per scan at random points on vessels and other dense '
                             'lung structures away from every finding (a lung mask per scan: '
                             '~0.5 s each)')
    parser.add_argument('--size', type=int, default=VIEW_SIZE, help='view side in pixels')
    parser.add_argument('--mm-per-pixel', type=float, default=VIEW_MM_PER_PIXEL,
                        help='sampling step of the views')
    parser.add_argument('--seed', type=int, default=0,
                        help='seed of the shifted copies and the background points')
    parser.add_argument('--workers', type=int, default=1, help='parallel processes, one scan each')
    parser.add_argument('--strict', action='store_true',
                        help='exit non-zero when any input problem was met')
    parser.add_argument('--verbose', action='store_true', help='debug messages')
    args = parser.parse_args(argv)
    if (args.copies < 1 or args.jitter_mm < 0 or args.size < 8 or not args.mm_per_pixel > 0
            or args.background < 0):
        parser.error('need --copies >= 1, --jitter-mm >= 0, --size >= 8, --mm-per-pixel > 0, '
                     '--background >= 0')
    if args.workers < 1:
        parser.error('--workers must be >= 1')
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code (see ``--strict``)."""
    return run_cli(convert, parse_args(argv), 'candidates_to_views')


if __name__ == '__main__':
    sys.exit(main())
