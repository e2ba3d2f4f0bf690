#!/usr/bin/env python
"""LUNA16 FROC / CPM as the challenge's evaluation script scores them, with bootstrap
intervals, and the agreement of measured nodule sizes with the reference.

Writes ``OUT/metrics.json`` (``cpm``, ``sensitivity`` {"0.125": s, ..., "8": s},
``cpm_ci95``, ``sensitivity_ci95``, counts, size agreement, warnings), ``OUT/froc.png``,
``OUT/bland_altman.png`` (with ``--nodules-dir``) and ``OUT/metrics.md`` (also printed).
The rules are in ``projects/lung_nodule/evaluation/froc.py``.

Examples::

    # the test split of a luna16_to_coco.py run, inference output of tools/infer_scan.py
    python tools/eval_luna16.py --annotations data/LUNA16/annotations.csv \\
        --excluded data/LUNA16/annotations_excluded.csv \\
        --candidates work_dirs/infer/candidates.csv \\
        --splits data/luna16_coco/splits.csv --split test \\
        --nodules-dir work_dirs/infer --out work_dirs/eval

    # 10-fold cross-validation: every fold's test candidates pooled into one FROC
    python tools/eval_luna16.py --annotations annotations.csv --excluded annotations_excluded.csv \\
        --candidates fold*/infer/candidates.csv --splits fold*/coco/splits.csv --split test \\
        --out work_dirs/eval_cv
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Sequence

# Not tools/_bootstrap.py: that one registers the OpenMMLab modules (torch); this tool is light.
REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from projects.lung_nodule.evaluation.luna16_eval import (  # noqa: E402
    PROTOCOLS, Luna16Inputs, evaluate_luna16, metrics_markdown)
from projects.lung_nodule.evaluation.luna16_inputs import (  # noqa: E402
    read_scan_list, read_split_scans)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line arguments."""
    parser = argparse.ArgumentParser(
        description='LUNA16 FROC/CPM (the official script\'s rules, bootstrap intervals) and '
                    'size agreement of the reported nodules.',
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument('--annotations', type=Path, required=True,
                        help='annotations.csv (seriesuid,coordX,coordY,coordZ,diameter_mm)')
    parser.add_argument('--candidates', type=Path, nargs='+', required=True,
                        help='submission file(s) seriesuid,coordX,coordY,coordZ,probability; '
                             'several are pooled (cross-validation folds)')
    scans = parser.add_mutually_exclusive_group(required=True)
    scans.add_argument('--seriesuids', type=Path,
                       help='scan list: one seriesuid a line, no header (as LUNA16 ships it)')
    scans.add_argument('--splits', type=Path, nargs='+',
                       help='splits.csv (seriesuid,split) of luna16_to_coco.py; several: the '
                            'union of their --split scans (one per fold)')
    parser.add_argument('--split', default='test', choices=('train', 'val', 'test'),
                        help='which split of --splits to score')
    parser.add_argument('--excluded', type=Path, default=None,
                        help='annotations_excluded.csv: hits on these findings are ignored')
    parser.add_argument('--nodules-dir', type=Path, default=None,
                        help='inference output of tools/infer_scan.py (<seriesuid>/nodules.csv): '
                             'size agreement: each nodule against the most probable '
                             'nodules.csv row that hits it')
    parser.add_argument('--reference-labels', type=Path, default=None,
                        help='reference label volumes <seriesuid>.nii.gz (value = 1-based data '
                             'row of annotations.csv): reference sizes measured from them')
    parser.add_argument('--protocol', choices=sorted(PROTOCOLS), default=None,
                        help='how the scans were split, for the report (default: '
                             'cross-validation with several --candidates files, random-split '
                             'with --splits, scan-list with --seriesuids)')
    parser.add_argument('--data-label', default=None,
                        help='what the data are, written into the figures\' titles (e.g. '
                             '"synthetic data": a PNG seen alone is not taken for real scans)')
    parser.add_argument('--candidates-label', default=None,
                        help='what made the candidates (e.g. "detector alone", "after '
                             'false-positive reduction"), written into the FROC title and the '
                             'report')
    parser.add_argument('--bootstrap', type=int, default=1000,
                        help='bootstrap samples over scans for the 95%% intervals (0: none)')
    parser.add_argument('--seed', type=int, default=0, help='bootstrap seed')
    parser.add_argument('--out', type=Path, required=True, help='output folder')
    args = parser.parse_args(argv)
    if args.reference_labels is not None and args.nodules_dir is None:
        parser.error('--reference-labels needs --nodules-dir (the predictions to compare)')
    if args.bootstrap < 0:
        parser.error(f'--bootstrap must be >= 0, got {args.bootstrap}')
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; 0 when scored (warnings printed), 1 when nothing could be scored."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='%(levelname)s %(message)s')
    try:
        if args.seriesuids is not None:
            scans, list_warnings = read_scan_list(args.seriesuids)
            source, protocol = str(args.seriesuids), 'scan-list'
        else:
            scans, list_warnings = read_split_scans(args.splits, args.split), []
            source = f'split {args.split} of {", ".join(map(str, args.splits))}'
            protocol = 'cross-validation' if len(args.candidates) > 1 else 'random-split'
        inputs = Luna16Inputs(
            annotations=args.annotations, candidates=args.candidates, scans=scans,
            scans_source=source, excluded=args.excluded, nodules_dir=args.nodules_dir,
            reference_labels=args.reference_labels, protocol=args.protocol or protocol,
            scan_list_warnings=list_warnings, data_label=args.data_label,
            candidates_label=args.candidates_label)
        metrics = evaluate_luna16(inputs, args.out, args.bootstrap, args.seed)
    except (FileNotFoundError, ValueError) as exc:
        logging.error('%s', exc)
        return 1
    print(metrics_markdown(metrics))
    print(f'written: {args.out}/metrics.json, metrics.md, froc.png'
          + (', bland_altman.png' if args.nodules_dir else ''))
    return 0


if __name__ == '__main__':
    sys.exit(main())
