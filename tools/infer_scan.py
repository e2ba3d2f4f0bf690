"""Find, segment and measure the nodules of CT scans with a trained Mask R-CNN.

Each INPUT is a ``.mhd``, ``.nii``/``.nii.gz``, ``.nrrd`` or a folder holding one DICOM
series (``--series UID`` picks one where a study folder holds several); with
``--splits splits.csv --split test`` each INPUT is a LUNA16 root and the scans of that
split are run (those without nodules too: they are FROC's negatives).

Writes, per scan, ``OUT/<scan id>/`` (``nodules.csv``/``.json``, ``nodules.nii.gz``,
``nodules.seg.dcm`` for DICOM input, ``nodule_<id>.png``, ``candidates.csv``,
``done.json``) and for the run ``OUT/candidates.csv`` (LUNA16 submission format) and
``OUT/summary.json``. ``--score-thr`` filters what a person reads; ``candidates.csv``
keeps every nodule down to the model's own test ``score_thr`` (at most 100 per scan).
Re-running skips scans whose folder is complete. Two inputs with the same scan id get
``<scan id>`` and ``<scan id>__2``.

Cohorts: ``--shard K/N`` runs every N-th scan from K and writes
``candidates.K-of-N.csv``; ``tools/merge_candidates.py OUT`` joins the shards (under
torchrun, ``tools/dist_infer.sh``, each rank takes its own shard).

Exit status: 0 when at least one scan was done (with ``--strict``: and none failed);
1 otherwise; 2 for bad arguments, a config/checkpoint that cannot be used.

Example::

    python tools/infer_scan.py configs/lung/mask_rcnn_r101_fpn_all.py work_dirs/all/epoch_24.pth \
        data/luna16/subset0/1.3.6.1.4.1.14519.5.2.1.6279.6001.105756658031515062000744821260.mhd \
        --out work_dirs/infer
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Sequence

import _bootstrap  # noqa: F401  (repo on sys.path, our modules registered)
from mmengine.config import Config, DictAction
from tqdm.contrib.logging import logging_redirect_tqdm

from data_prep.common import read_splits_csv
from projects.lung_nodule.apis.cohort import (ScanInput, model_fingerprint, plan_inputs,
                                              run_scans)
from projects.lung_nodule.apis.mmdet_predictor import CheckpointMismatchError
from projects.lung_nodule.apis.nodule_inferencer import NoduleInferencer
from projects.lung_nodule.ct.luna16 import find_scans

logger = logging.getLogger('lung_nodule.infer')


def _shard(text: str) -> tuple[int, int]:
    try:
        k, n = (int(v) for v in text.split('/'))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f'expected K/N (e.g. 0/4), got {text!r}') from exc
    if not (n >= 1 and 0 <= k < n):
        raise argparse.ArgumentTypeError(f'need 0 <= K < N, got {text!r}')
    return k, n


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f'must be >= 0, got {value}')
    return value


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0],
        epilog='Outputs and exit status: see the module docstring (python -m pydoc tools/infer_scan.py).')
    parser.add_argument('config', help='model config (the one it was trained with)')
    parser.add_argument('checkpoint', help='trained weights (.pth)')
    parser.add_argument('inputs', nargs='+', metavar='INPUT',
                        help='.mhd / .nii / .nii.gz / .nrrd file, DICOM series folder, or a '
                             'LUNA16 root with --splits/--split')
    parser.add_argument('--out', type=Path, required=True, help='output folder')
    parser.add_argument('--device', default='cpu', help='cpu, cuda or cuda:N (default: cpu)')
    parser.add_argument('--batch-size', type=int, default=4, help='slices per forward (default: 4)')
    parser.add_argument('--score-thr', type=float, default=None,
                        help='probability from which a nodule goes into nodules.csv, the label '
                             'volume, PNGs and SEG (default: 0.5); candidates.csv is not filtered')
    parser.add_argument('--amp', action='store_true', help='mixed precision forward (CUDA only)')
    parser.add_argument('--workers', type=_non_negative, default=1,
                        help='threads reading scans and computing lung masks ahead of the network '
                             '(0: none; default: 1)')
    parser.add_argument('--series', metavar='UID', default=None,
                        help='SeriesInstanceUID to read from DICOM folders holding several series')
    parser.add_argument('--splits', type=Path, default=None,
                        help='splits.csv (seriesuid,split) of data_prep/luna16_to_coco.py; INPUTs are '
                             'LUNA16 roots')
    parser.add_argument('--split', choices=('train', 'val', 'test'), default=None,
                        help='with --splits: which split to run')
    parser.add_argument('--shard', type=_shard, default=None, metavar='K/N',
                        help='run every N-th scan from K (default under torchrun: RANK/WORLD_SIZE)')
    parser.add_argument('--strict', action='store_true',
                        help='exit non-zero when any scan could not be done')
    parser.add_argument('--no-progress', action='store_true', help='no progress bars')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, key=value pairs')
    args = parser.parse_args(argv)
    if (args.splits is None) != (args.split is None):
        parser.error('--splits and --split go together')
    if args.batch_size < 1:
        parser.error(f'--batch-size must be >= 1, got {args.batch_size}')
    if args.score_thr is not None and not 0.0 <= args.score_thr <= 1.0:
        parser.error(f'--score-thr must be in [0, 1], got {args.score_thr}')
    return args


def collect_inputs(args: argparse.Namespace) -> tuple[list[Path], list[dict[str, str]]]:
    """The scan paths to run (and problems found on the way, as skipped entries)."""
    if args.splits is None:
        return [Path(p) for p in args.inputs], []
    wanted = sorted(uid for uid, split in read_splits_csv(args.splits).items()
                    if split == args.split)
    found: dict[str, Path] = {}
    for root in args.inputs:
        scans, problems = find_scans(root)
        for problem in problems:
            logger.warning('%s', problem)
        for uid, path in scans.items():
            found.setdefault(uid, path)
    skipped = [{'input': uid, 'reason': f'{args.splits}: listed in split {args.split!r} but no '
                                        f'{uid}.mhd under {", ".join(args.inputs)}'}
               for uid in wanted if uid not in found]
    return [found[uid] for uid in wanted if uid in found], skipped


def resolve_shard_and_device(args: argparse.Namespace) -> tuple[tuple[int, int] | None, str]:
    """Under torchrun (WORLD_SIZE > 1) each rank takes its shard and its GPU."""
    shard, device = args.shard, args.device
    world = int(os.environ.get('WORLD_SIZE', '1'))
    if shard is None and world > 1:
        shard = (int(os.environ['RANK']), world)
    if device == 'cuda' and 'LOCAL_RANK' in os.environ:
        device = f'cuda:{int(os.environ["LOCAL_RANK"])}'
    return shard, device


def build_inferencer(args: argparse.Namespace, device: str) -> NoduleInferencer:
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    return NoduleInferencer(cfg, args.checkpoint, device=device, batch_size=args.batch_size,
                            amp=args.amp, score_thr=args.score_thr)


def setup_logging() -> None:
    """INFO messages of the run on stderr (routed through tqdm while bars run)."""
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter('%(levelname)s %(message)s'))
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging()
    shard, device = resolve_shard_and_device(args)
    for path in (args.config, args.checkpoint):
        if not Path(path).is_file():
            logger.error('%s: no such file', path)
            return 2
    try:
        paths, missing = collect_inputs(args)
    except (OSError, ValueError) as exc:
        logger.error('%s', exc)
        return 2
    try:
        inferencer = build_inferencer(args, device)
    except (CheckpointMismatchError, FileNotFoundError, ValueError) as exc:
        logger.error('%s', exc)
        return 2
    inputs: list[ScanInput] = plan_inputs(paths, args.series)
    settings = {'config': str(args.config), 'checkpoint': str(args.checkpoint), 'device': device,
                'batch_size': args.batch_size, 'amp': args.amp,
                'score_thr': inferencer.score_thr,
                'model_score_thr': float(inferencer.predictor.score_thr),
                'lung_mask_mode': inferencer.lung_mask_mode,
                'infer_pixel_spacing_mm': inferencer.infer_pixel_spacing_mm}
    # what makes the outputs (not where or how fast): resume only what this model made
    made_by = {k: v for k, v in settings.items()
               if k not in ('config', 'checkpoint', 'device', 'batch_size')}
    made_by['cfg_options'] = args.cfg_options
    model_id = model_fingerprint([args.config, args.checkpoint], made_by)
    with logging_redirect_tqdm(loggers=[logger]):
        report = run_scans(inferencer, inputs, args.out, shard=shard, workers=args.workers,
                           progress=not args.no_progress, settings=settings,
                           extra_skipped=missing, model_id=model_id)
    logger.info('%d scans done (%d resumed), %d skipped, %d nodules; outputs in %s',
                len(report.done), sum(bool(r.get('resumed')) for r in report.done),
                len(report.skipped), sum(r['nodules'] for r in report.done), args.out)
    for item in report.skipped:
        logger.warning('skipped %s: %s', item['input'], item['reason'])
    if not report.done and not report.skipped:
        if not paths:
            logger.error('no scans to run')
            return 1
        return 0  # an empty shard (more shards than scans)
    if not report.done or (args.strict and report.skipped):
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
