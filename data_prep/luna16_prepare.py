#!/usr/bin/env python
"""LUNA16 -> COCO slices and 50x50 patches in one pass over the scans.

Runs ``luna16_to_coco.py`` and ``luna16_to_patches.py`` together: each scan is read
once and its lung mask made once (the 3D steps, and the 2D masks of the nodule slices,
which both exports use), instead of once per command. The outputs are byte for byte
those of the two commands run one after the other with the same options (the patches
with ``--splits COCO_OUT/splits.csv``), in the same folders; each folder keeps its own
``summary.json`` and resume records, so either command can later resume or redo its
part alone, and a re-run of this one does only the scans that either export lacks.

Why: per scan, reading the volume and the lung mask's 3D steps cost about as much as
everything else of an export (``benchmarks/RESULTS.md``, issue 9).

Options are those of the two commands (see their ``--help``); ``--slices-per-nodule``
and ``--min-area`` are the slice export's, ``--lung-mask-mode`` applies to both.

Example::

    python data_prep/luna16_prepare.py --luna-root data/LUNA16 \\
        --annotations data/LUNA16/annotations.csv \\
        --coco-out data/luna16_coco --patches-out data/luna16_patches --workers 2
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Any, Sequence

if __package__ in (None, ''):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from data_prep.common import (RunSummary, ScanSource, add_excluded_arg, add_input_args,
                              add_lung_mask_args, add_run_args, add_scan_results, add_split_args,
                              atomic_write_json, cpu_seconds, load_inputs, read_excluded,
                              resolve_lung_mask_mode, resume_scans, run_jobs, setup_logging,
                              splits_for_inputs, write_splits_csv)
from data_prep.luna16_to_coco import EXCLUDED_EFFECT as COCO_EXCLUDED_EFFECT
from data_prep.luna16_to_coco import (LUNG_MASK_MODE_HELP, NO_LUNG_MASK_HELP, ScanJob,
                                      add_coco_options, check_coco_options, coco_jobs,
                                      export_scan, write_coco)
from data_prep.luna16_to_patches import EXCLUDED_EFFECT as PATCH_EXCLUDED_EFFECT
from data_prep.luna16_to_patches import (PatchScanJob, add_patch_options, check_patch_options,
                                         collect_scan_patches, patch_jobs, start_patch_output,
                                         write_patches)

__all__ = ['main', 'parse_args', 'prepare', 'prepare_scan']

logger = logging.getLogger('data_prep')


def prepare_scan(jobs: tuple[ScanJob | None, PatchScanJob | None]) -> dict[str, Any]:
    """Both exports of one scan (``None``: that export is already done), sharing one
    :class:`~data_prep.common.ScanSource`; never raises for bad input.

    Returns:
        ``{'coco': result | None, 'patches': result | None}`` with each converter's result.
    """
    coco_job, patch_job = jobs
    source = ScanSource((coco_job or patch_job).mhd_path)
    return {'coco': export_scan(coco_job, source) if coco_job is not None else None,
            'patches': collect_scan_patches(patch_job, source) if patch_job is not None else None}


def prepare(args: argparse.Namespace, coco_summary: RunSummary,
            patch_summary: RunSummary) -> bool:
    """Both exports (arguments of :func:`parse_args`); whether anything was done."""
    inputs = load_inputs(args.luna_root, args.annotations, coco_summary)
    load_inputs(args.luna_root, args.annotations, patch_summary)  # same input problems in both
    if not inputs.scans:
        for summary in (coco_summary, patch_summary):
            summary.warn(f'no <seriesuid>.mhd found under {args.luna_root}')
        return False
    splits = splits_for_inputs(inputs, args, coco_summary)
    args.coco_out.mkdir(parents=True, exist_ok=True)
    write_splits_csv(args.coco_out / 'splits.csv', splits)
    start_patch_output(args.patches_out, args.lung_mask_mode, splits)
    coco_all = coco_jobs(args, inputs, splits, args.coco_out,
                         read_excluded(args.excluded, coco_summary))
    patch_all = patch_jobs(args, inputs, splits, args.patches_out,
                           read_excluded(args.excluded, patch_summary))
    coco_records, coco_todo = resume_scans(coco_all, args.overwrite, coco_summary)
    patch_records, patch_todo = resume_scans(patch_all, args.overwrite, patch_summary)
    coco_by_uid = {job.seriesuid: job for job in coco_todo}
    patch_by_uid = {job.seriesuid: job for job in patch_todo}
    pairs = [(coco_by_uid.get(uid), patch_by_uid.get(uid))
             for uid in sorted(set(coco_by_uid) | set(patch_by_uid))]
    start, cpu = time.perf_counter(), cpu_seconds()
    results = run_jobs(prepare_scan, pairs, args.workers,
                       desc='scans -> COCO slices + patch candidates')
    for summary in (coco_summary, patch_summary):  # one pass: the same seconds serve both
        summary.seconds['scans'] = time.perf_counter() - start
        summary.seconds['scans_cpu'] = cpu_seconds() - cpu
    add_scan_results(coco_records, [r['coco'] for r in results if r['coco'] is not None],
                     coco_summary)
    add_scan_results(patch_records, [r['patches'] for r in results if r['patches'] is not None],
                     patch_summary)
    write_coco(coco_records, splits, args.coco_out, args.lung_mask_mode, coco_summary)
    write_patches(args, patch_records, splits, args.patches_out, patch_summary)
    return bool(coco_records) or bool(patch_records)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line arguments."""
    parser = argparse.ArgumentParser(
        description='LUNA16 -> COCO slices (luna16_to_coco.py) and patches '
                    '(luna16_to_patches.py) in one pass: each scan read and its lung mask '
                    'made once.', formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_input_args(parser, out=False)
    parser.add_argument('--coco-out', type=Path, required=True,
                        help="the slice export's folder (luna16_to_coco.py --out)")
    parser.add_argument('--patches-out', type=Path, required=True,
                        help="the patch export's folder (luna16_to_patches.py --out)")
    add_split_args(parser)
    add_coco_options(parser)
    add_patch_options(parser)
    add_excluded_arg(parser, f'{COCO_EXCLUDED_EFFECT}; and {PATCH_EXCLUDED_EFFECT}')
    add_lung_mask_args(parser, LUNG_MASK_MODE_HELP, NO_LUNG_MASK_HELP)
    add_run_args(parser)
    args = parser.parse_args(argv)
    resolve_lung_mask_mode(parser, args)
    check_coco_options(parser, args)
    check_patch_options(parser, args)
    if args.coco_out.resolve() == args.patches_out.resolve():
        parser.error('--coco-out and --patches-out must be different folders')
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code (``--strict``: non-zero on any input problem)."""
    args = parse_args(argv)
    setup_logging(args.verbose)
    summaries = {'coco': RunSummary(), 'patches': RunSummary()}
    start = time.perf_counter()
    try:
        done = prepare(args, summaries['coco'], summaries['patches'])
    except (FileNotFoundError, ValueError) as exc:
        logger.error('%s', exc)
        return 1
    total = time.perf_counter() - start
    codes = []
    for name, out in (('coco', args.coco_out), ('patches', args.patches_out)):
        summary = summaries[name]
        summary.seconds['total'] = total
        atomic_write_json(out / 'summary.json', summary.as_dict(), indent=1)
        summary.log(f'luna16_prepare ({name}) -> {out}')
        codes.append(summary.exit_code(done, args.strict))
    return max(codes)


if __name__ == '__main__':
    sys.exit(main())
