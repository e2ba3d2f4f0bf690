#!/usr/bin/env python
"""LUNA16 -> COCO instance segmentation of 2D slices (the paper's section III-B).

For every nodule of ``annotations.csv`` (world mm centre + diameter):

1. world -> voxel with origin, spacing **and direction** (SimpleITK's transform);
2. the 3 slices nearest its centre are exported (each slice once per scan), and on each
   exported slice every nodule whose sphere cuts it is annotated with the sphere's
   cross-section (radius ``sqrt(r^2 - dz^2)`` mm, a pixel inside when its centre is);
   cross-sections under ``--min-area`` pixels are dropped and counted. With
   ``--excluded annotations_excluded.csv``, the excluded findings that cut an exported
   slice are written there too, as ``iscrowd: 1`` regions: COCO's ignore regions, so
   that pycocotools counts a detection of one as neither a true nor a false positive,
   as LUNA16's FROC does (a finding with diameter -1 gets 10 mm, the official
   script's rule). mmdet trains on them as background, as without the option;
3. the lungs are segmented (:class:`projects.lung_nodule.ct.LungMask`) and, in the
   ``--lung-mask-mode blank`` (the paper's), pixels outside them set to 0; ``filter``
   keeps the whole slice (``--no-lung-mask`` is the old name of ``filter``). The mode is
   written into every JSON's ``info['lung_mask_mode']``: the lung configs' dataset
   refuses a file of the other mode;
4. HU clipped to [-1024, 800], scaled to [0, 1], saved as 8-bit PNG at native size, in
   the volume's array order (row = y index, column = x index), never reoriented.

Outputs (``data_root`` of the Mask R-CNN configs)::

    OUT/images/{train,val,test}/<seriesuid>_z<zzzz>.png
    OUT/annotations/instances_{train,val,test}.json
    OUT/splits.csv        seriesuid,split for every scan found (those without nodules too)
    OUT/summary.json      counts, input problems, skipped scans

COCO image entries also carry ``seriesuid``, ``z_index``, ``spacing_xyz``,
``origin_xyz`` and ``direction``; annotations carry ``nodule_id`` (the same on the
slices of one nodule) and ``diameter_mm``, excluded findings' ``excluded_line`` (their
line in the CSV) instead of ``nodule_id``; masks are compressed RLE.

Runs are resumable: each finished scan leaves ``OUT/.scans/<seriesuid>.json`` (written
last, atomically); a re-run skips scans whose record matches the inputs and options,
then assembles the JSON files again.

``data_prep/luna16_prepare.py`` runs the slice and the patch export in one pass (each scan
read and its lung mask made once; the same outputs).

Example::

    python data_prep/luna16_to_coco.py --luna-root data/LUNA16 \\
        --annotations data/LUNA16/annotations.csv --out data/luna16_coco --workers 2
"""
from __future__ import annotations

import argparse
import datetime
import logging
import re
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

if __package__ in (None, ''):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
from pycocotools import mask as mask_utils

from data_prep.common import (SPLITS, LunaInputs, RunSummary, ScanJobBase, ScanSource,
                              add_excluded_arg, add_input_args, add_lung_mask_args, add_run_args,
                              add_split_args, atomic_write_bytes, atomic_write_json, encode_png,
                              load_inputs, process_scans, read_excluded, resolve_lung_mask_mode,
                              run_cli, splits_for_inputs, write_splits_csv)
from projects.lung_nodule.ct import (NoduleAnnotation, ScanReadError, locate_nodules,
                                     nodule_masks_on_slice, select_nodule_slices, slice_to_uint8)
from projects.lung_nodule.ct.slice_image import DEFAULT_LUNG_MASK_MODE

__all__ = ['CATEGORIES', 'EXCLUDED_EFFECT', 'CocoOptions', 'ScanJob', 'add_coco_options',
           'assemble_coco', 'check_coco_options', 'coco_jobs', 'convert', 'export_scan', 'main',
           'mask_to_annotation', 'parse_args', 'write_coco']

logger = logging.getLogger('data_prep')
CATEGORIES = [{'id': 1, 'name': 'nodule'}]
EXCLUDED_EFFECT = ('those that cut an exported slice become iscrowd=1 (ignore) regions, so '
                   'that COCO AP counts a detection of one as neither a true nor a false '
                   "positive, as LUNA16's FROC does")
RECORD_VERSION = 2  # 2: lung mask with per-lung convex hull; lung-mask modes
_PNG_NAME = re.compile(r'^(?P<uid>.+)_z(?P<z>\d{4,})\.png$')
LUNG_MASK_MODE_HELP = (f'blank: pixels outside the lung mask set to 0 (the paper); filter: whole '
                       f'slices (the mask then only filters detections at inference). Written '
                       f'into info["lung_mask_mode"] of every JSON; the model must be trained and '
                       f'run in the same mode (default {DEFAULT_LUNG_MASK_MODE})')
NO_LUNG_MASK_HELP = 'old name of --lung-mask-mode filter (keeps the pixels outside the lungs)'


@dataclass(frozen=True)
class CocoOptions:
    """Options that shape every scan's output (part of the resume fingerprint)."""

    slices_per_nodule: int = 3
    min_area: int = 5
    lung_mask_mode: str = DEFAULT_LUNG_MASK_MODE


@dataclass(frozen=True)
class ScanJob(ScanJobBase):
    """One scan to export."""

    split: str
    options: CocoOptions
    excluded: tuple[NoduleAnnotation, ...] = ()  # written as ignore (crowd) regions

    def fingerprint(self) -> str:
        """Hash of everything the scan's output depends on."""
        # the excluded findings only when there are some: exports made before the
        # option existed stay valid
        extra = ({'excluded': [(n.coord_xyz, n.diameter_mm) for n in self.excluded]}
                 if self.excluded else {})
        return self.input_fingerprint(version=RECORD_VERSION, split=self.split,
                                      options=asdict(self.options), **extra)

    def outputs_exist(self, record: dict[str, Any]) -> bool:
        """Whether every PNG of a finished scan's record is still there."""
        return all((self.out_dir / 'images' / self.split / image['file_name']).is_file()
                   for image in record['images'])


def mask_to_annotation(mask: np.ndarray) -> dict[str, Any]:
    """Compressed RLE, ``area`` (pixels) and ``bbox`` ``[x, y, w, h]`` of a 2D bool mask."""
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle['counts'] = rle['counts'].decode('ascii')
    ys, xs = np.nonzero(mask)
    x0, y0 = int(xs.min()), int(ys.min())
    return {'segmentation': rle, 'area': int(mask.sum()),
            'bbox': [x0, y0, int(xs.max()) - x0 + 1, int(ys.max()) - y0 + 1]}


def _remove_scan_pngs(out_dir: Path, uid: str) -> None:
    for split in SPLITS:
        folder = out_dir / 'images' / split
        if folder.is_dir():
            for path in folder.glob(f'{uid}_z*.png'):
                match = _PNG_NAME.match(path.name)
                if match and match['uid'] == uid:
                    path.unlink()


def export_scan(job: ScanJob, source: ScanSource | None = None) -> dict[str, Any]:
    """Export one scan's nodule slices and annotations; never raises for bad input.

    Args:
        job: The scan and where its output goes.
        source: The scan as read, with its lung mask, when another export of the same
            pass shares them (see :class:`data_prep.common.ScanSource`); else read here.

    Returns:
        ``{'seriesuid', 'status': 'done' | 'failed', 'reason', 'record', 'problems'}``;
        ``record`` (also written to ``OUT/.scans/``) holds the image entries (with their
        annotations, ids not yet assigned) and the scan's counts.
    """
    written: list[Path] = []
    try:
        _remove_scan_pngs(job.out_dir, job.seriesuid)
        job.record_path.unlink(missing_ok=True)
        source = source or ScanSource(job.mhd_path)
        scan = source.scan
        geometry = scan.geometry
        located, problems = locate_nodules(geometry, job.nodules, job.mhd_path)
        located_excluded, excluded_problems = locate_nodules(
            geometry, job.excluded, job.mhd_path, source='annotations_excluded')
        problems += excluded_problems
        num_slices = geometry.shape_zyx[0]
        slices = select_nodule_slices(located, num_slices, job.options.slices_per_nodule)
        blank = job.options.lung_mask_mode == 'blank'
        lungs = source.lungs if blank and slices else None
        counts = {'nodules': len(job.nodules), 'nodules_located': len(located),
                  'nodules_outside_volume': len(job.nodules) - len(located),
                  'cross_sections_too_small': 0, 'slices_without_annotation': 0,
                  'nodule_pixels': 0, 'nodule_pixels_in_lung': 0, 'excluded_regions': 0}
        annotated_nodules: set[str] = set()
        images = []
        for z in slices:
            annotations = []
            lung_slice = lungs.slice(z) if lungs is not None else None
            for nodule, mask in nodule_masks_on_slice(located, z, geometry):
                area = int(mask.sum())
                if area < job.options.min_area:
                    counts['cross_sections_too_small'] += 1
                    continue
                counts['nodule_pixels'] += area
                if lung_slice is not None:
                    counts['nodule_pixels_in_lung'] += int((mask & lung_slice).sum())
                annotated_nodules.add(nodule.annotation.nodule_id)
                annotations.append({**mask_to_annotation(mask), 'category_id': 1, 'iscrowd': 0,
                                    'nodule_id': nodule.annotation.nodule_id,
                                    'diameter_mm': nodule.annotation.diameter_mm})
            if not annotations:
                counts['slices_without_annotation'] += 1
                continue
            for finding, mask in nodule_masks_on_slice(located_excluded, z, geometry):
                if mask.sum() >= job.options.min_area:
                    counts['excluded_regions'] += 1
                    annotations.append({**mask_to_annotation(mask), 'category_id': 1,
                                        'iscrowd': 1, 'excluded_line': finding.annotation.line,
                                        'diameter_mm': finding.annotation.diameter_mm})
            image = slice_to_uint8(scan, z, lungs, mode=job.options.lung_mask_mode)
            name = f'{job.seriesuid}_z{z:04d}.png'
            path = job.out_dir / 'images' / job.split / name
            written.append(path)
            atomic_write_bytes(path, encode_png(image))
            images.append({'file_name': name, 'height': int(image.shape[0]),
                           'width': int(image.shape[1]), 'seriesuid': job.seriesuid,
                           'z_index': int(z), **geometry.as_dict(), 'annotations': annotations})
        for nodule in located:
            if nodule.annotation.nodule_id not in annotated_nodules:
                problems.append(f'annotations line {nodule.annotation.line}: nodule '
                                f'{nodule.annotation.nodule_id} ({nodule.annotation.diameter_mm:.2f} '
                                f'mm) has no cross-section of >= {job.options.min_area} px on '
                                f'its {job.options.slices_per_nodule} slices')
        counts['nodules_without_annotation'] = len(located) - len(annotated_nodules)
        counts['slices'] = len(images)
        counts['annotations'] = sum(not ann['iscrowd'] for im in images
                                    for ann in im['annotations'])
        record = {'fingerprint': job.fingerprint(), 'seriesuid': job.seriesuid,
                  'split': job.split, 'images': images, 'counts': counts, 'problems': problems}
        atomic_write_json(job.record_path, record)
        return {'seriesuid': job.seriesuid, 'status': 'done', 'record': record,
                'problems': problems}
    except (ScanReadError, ValueError, MemoryError) as exc:
        reason = str(exc)
    except Exception as exc:  # an unexpected error on one scan must not stop the run
        reason = f'{type(exc).__name__}: {exc}'
    for path in written:
        path.unlink(missing_ok=True)
    return {'seriesuid': job.seriesuid, 'status': 'failed', 'reason': reason, 'problems': []}


def assemble_coco(records: Sequence[dict[str, Any]], split: str,
                  lung_mask_mode: str = DEFAULT_LUNG_MASK_MODE) -> dict[str, Any]:
    """One split's COCO dict from scan records (ids by seriesuid then z: deterministic).

    ``info['lung_mask_mode']`` records how the slices were masked (see
    :mod:`projects.lung_nodule.ct.slice_image`).
    """
    images, annotations = [], []
    for record in sorted(records, key=lambda r: r['seriesuid']):
        for entry in sorted(record['images'], key=lambda im: im['z_index']):
            image_id = len(images) + 1
            images.append({'id': image_id, **{k: v for k, v in entry.items() if k != 'annotations'}})
            for ann in entry['annotations']:
                annotations.append({'id': len(annotations) + 1, 'image_id': image_id, **ann})
    return {'info': {'description': f'LUNA16 nodule slices, {split} split (data_prep/luna16_to_coco.py)',
                     'date_created': datetime.date.today().isoformat(), 'version': '1.0',
                     'lung_mask_mode': lung_mask_mode},
            'licenses': [], 'images': images, 'annotations': annotations,
            'categories': CATEGORIES}


def _remove_stale_pngs(out_dir: Path, kept: set[tuple[str, str]]) -> int:
    removed = 0
    for split in SPLITS:
        folder = out_dir / 'images' / split
        if not folder.is_dir():
            continue
        for path in folder.glob('*.png'):
            if _PNG_NAME.match(path.name) and (split, path.name) not in kept:
                path.unlink()
                removed += 1
    return removed


def coco_jobs(args: argparse.Namespace, inputs: LunaInputs, splits: dict[str, str],
              out_dir: Path, excluded: dict[str, list[NoduleAnnotation]] | None = None
              ) -> list[ScanJob]:
    """One job per scan with a split (options from :func:`add_coco_options`' arguments;
    ``excluded`` from :func:`read_excluded`)."""
    options = CocoOptions(slices_per_nodule=args.slices_per_nodule, min_area=args.min_area,
                          lung_mask_mode=args.lung_mask_mode)
    excluded = excluded or {}
    return [ScanJob(seriesuid=uid, mhd_path=inputs.scans[uid], nodules=tuple(inputs.nodules[uid]),
                    out_dir=out_dir, split=splits[uid], options=options,
                    excluded=tuple(excluded.get(uid, ()))) for uid in sorted(splits)]


def write_coco(records: dict[str, dict], splits: dict[str, str], out_dir: Path,
               lung_mask_mode: str, summary: RunSummary) -> None:
    """The JSON files of every split from the scan records; stale PNGs removed."""
    summary.counts['scans_without_nodules'] = sum(not records[u]['counts']['nodules'] for u in records)
    kept = set()
    for split in SPLITS:
        coco = assemble_coco([r for r in records.values() if r['split'] == split], split,
                             lung_mask_mode)
        atomic_write_json(out_dir / 'annotations' / f'instances_{split}.json', coco)
        kept.update((split, im['file_name']) for im in coco['images'])
        summary.counts[f'images_{split}'] = len(coco['images'])
        summary.counts[f'annotations_{split}'] = sum(not a['iscrowd'] for a in coco['annotations'])
        summary.counts[f'excluded_regions_{split}'] = sum(a['iscrowd'] for a in coco['annotations'])
        summary.counts[f'scans_{split}'] = sum(1 for s in splits.values() if s == split)
    summary.counts['stale_pngs_removed'] = _remove_stale_pngs(out_dir, kept)
    if lung_mask_mode == 'blank' and summary.counts['nodule_pixels']:
        summary.counts['nodule_pixels_in_lung_permille'] = round(
            1000 * summary.counts['nodule_pixels_in_lung'] / summary.counts['nodule_pixels'])


def convert(args: argparse.Namespace, summary: RunSummary) -> bool:
    """The whole conversion (arguments of :func:`parse_args`); whether anything was done."""
    luna_root, out_dir = args.luna_root, args.out
    inputs = load_inputs(luna_root, args.annotations, summary)
    if not inputs.scans:
        summary.warn(f'no <seriesuid>.mhd found under {luna_root}')
        return False
    splits = splits_for_inputs(inputs, args, summary)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_splits_csv(out_dir / 'splits.csv', splits)
    jobs = coco_jobs(args, inputs, splits, out_dir, read_excluded(args.excluded, summary))
    records = process_scans(jobs, export_scan, args, summary, desc='scans -> COCO slices')
    write_coco(records, splits, out_dir, args.lung_mask_mode, summary)
    return bool(records)


def add_coco_options(parser: argparse.ArgumentParser) -> None:
    """The options of the slice export (besides inputs, splits and the lung mask mode)."""
    parser.add_argument('--min-area', type=int, default=CocoOptions.min_area,
                        help='drop cross-sections smaller than this many pixels')
    parser.add_argument('--slices-per-nodule', type=int, default=CocoOptions.slices_per_nodule,
                        help='slices exported around each nodule centre')


def check_coco_options(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse values of :func:`add_coco_options`' arguments that cannot work."""
    if args.min_area < 1 or args.slices_per_nodule < 1:
        parser.error('--min-area and --slices-per-nodule must be >= 1')


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line arguments."""
    parser = argparse.ArgumentParser(
        description='LUNA16 -> COCO instance segmentation: 3 slices per nodule, sphere '
                    'cross-section masks (RLE), lung-masked 8-bit PNGs, scan-level splits.',
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_input_args(parser)
    add_split_args(parser)
    add_coco_options(parser)
    add_excluded_arg(parser, EXCLUDED_EFFECT)
    add_lung_mask_args(parser, LUNG_MASK_MODE_HELP, NO_LUNG_MASK_HELP)
    add_run_args(parser)
    args = parser.parse_args(argv)
    resolve_lung_mask_mode(parser, args)
    check_coco_options(parser, args)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code (see ``--strict``)."""
    return run_cli(convert, parse_args(argv), 'luna16_to_coco')

if __name__ == '__main__':
    sys.exit(main())
