"""Rescore a whole-scan inference run's candidates with the false-positive reduction stage.

The detector sees one slice; a vessel crossing it is as round as a nodule there. This
second stage looks at three orthogonal views through each candidate
(:func:`projects.lung_nodule.ct.views.orthogonal_views`) with an mmpretrain classifier
trained by ``configs/fp_reduction/`` on views made by ``data_prep/candidates_to_views.py``
from the training scans' candidates, and gives each candidate

    probability = detector ** (1 - w) * classifier ** w        (w = --classifier-weight)

a weighted geometric mean: a candidate must convince both stages (w = 1 ranks by the
classifier alone; it throws away what the detector knows from the slice and is worse on
the demo's data: benchmarks/RESULTS.md, "False-positive reduction").

Input is the ``--out`` folder of ``tools/infer_scan.py`` (or of ``tools/dist_infer.sh``
after ``merge_candidates.py``): its ``candidates.csv``, and each scan's ``done.json``,
which says where the scan was read from (``.mhd``, NIfTI, NRRD or DICOM alike).
Writes ``--out`` (default ``RUN/candidates_rescored.csv``): LUNA16's submission columns
with the new probability, then ``detector_probability`` and ``classifier_probability``
(``tools/eval_luna16.py`` reads it as it is). A scan that cannot be read keeps its
detector probabilities and is named in a warning; the file is written atomically.

Example::

    python tools/rescore_candidates.py configs/fp_reduction/resnet20_1xb64_candidate-views.py \\
        work_dirs/fp_reduction/epoch_12.pth work_dirs/infer
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import sys
from collections import defaultdict
from pathlib import Path
from typing import Sequence

import _bootstrap  # noqa: F401  (repo on sys.path, our modules registered)
import numpy as np
from mmengine.config import Config
from tqdm import tqdm

from projects.lung_nodule.apis.outputs import atomic_write_text, read_done
from projects.lung_nodule.ct import ScanReadError, read_scan
from projects.lung_nodule.ct.views import VIEW_MM_PER_PIXEL, VIEW_SIZE, orthogonal_views
from projects.lung_nodule.evaluation.luna16_inputs import Candidate, read_candidates

logger = logging.getLogger('lung_nodule.rescore')
COLUMNS = ('seriesuid', 'coordX', 'coordY', 'coordZ', 'probability', 'detector_probability',
           'classifier_probability')


def combine(detector: np.ndarray, classifier: np.ndarray, weight: float) -> np.ndarray:
    """``detector ** (1 - weight) * classifier ** weight`` (both in [0, 1])."""
    return np.power(detector, 1.0 - weight) * np.power(classifier, weight)


def scan_sources(run_dir: Path) -> dict[str, Path]:
    """Scan id -> the file or DICOM folder it was read from, from each ``done.json``."""
    sources = {}
    for folder in sorted(p for p in run_dir.iterdir() if p.is_dir()):
        try:
            record = read_done(folder)
            if record is not None:
                sources[record['scan_id']] = Path(record['source'])
        except (OSError, ValueError, KeyError) as exc:
            logger.warning('%s: done.json unreadable (%s); its scan keeps its detector '
                           'probabilities', folder, exc)
    return sources


class ViewClassifier:
    """The trained view classifier: config + checkpoint once, then batches of views."""

    def __init__(self, config: str, checkpoint: str, device: str = 'cpu',
                 batch_size: int = 256) -> None:
        from mmengine.registry import DefaultScope
        from mmpretrain.apis import ImageClassificationInferencer
        cfg = Config.fromfile(config)
        # mmpretrain's scope even where mmdet's is the default (both used in one process:
        # its pipeline is built from the scope's registry)
        with DefaultScope.overwrite_default_scope('mmpretrain'):
            self.inferencer = ImageClassificationInferencer(model=cfg, pretrained=checkpoint,
                                                            device=device)
        classes = list(self.inferencer.classes or ())
        if 'nodule' not in classes:
            raise ValueError(f'{config}: the classifier has classes {classes}, none "nodule"')
        self.nodule_index = classes.index('nodule')
        self.batch_size = batch_size

    def __call__(self, views: np.ndarray) -> np.ndarray:
        """uint8 ``(n, h, w, 3)`` views -> the nodule probability of each."""
        if not len(views):
            return np.zeros(0)
        # The inferencer's own preprocess + forward, without its per-call progress bar
        # (the scans have one).
        scores = []
        for batch in self.inferencer.preprocess(list(views), batch_size=self.batch_size):
            scores += [float(s.pred_score[self.nodule_index])
                       for s in self.inferencer.forward(batch)]
        return np.array(scores, dtype=np.float64)


def rescore(candidates: Sequence[Candidate], sources: dict[str, Path], classifier: ViewClassifier,
            size: int, mm_per_pixel: float) -> tuple[np.ndarray, list[str]]:
    """The classifier's probability of each candidate (NaN for a scan that cannot be read)."""
    by_scan: dict[str, list[int]] = defaultdict(list)
    for i, candidate in enumerate(candidates):
        by_scan[candidate.seriesuid].append(i)
    scores = np.full(len(candidates), np.nan)
    problems = []
    for uid, rows in tqdm(sorted(by_scan.items()), desc='rescoring', unit='scan', disable=None):
        source = sources.get(uid)
        if source is None:
            problems.append(f'scan {uid}: no done.json names its source; detector probabilities '
                            'kept')
            continue
        try:
            scan = read_scan(source, series_uid=uid if source.is_dir() else None)
        except ScanReadError as exc:
            problems.append(f'scan {uid}: {exc}; detector probabilities kept')
            continue
        views = orthogonal_views(scan, [candidates[i].coord_xyz for i in rows], size, mm_per_pixel)
        scores[rows] = classifier(views)
    return scores, problems


def candidates_csv(candidates: Sequence[Candidate], probability: np.ndarray,
                   classifier: np.ndarray) -> str:
    """The rescored candidates as CSV text (classifier column empty where not rescored)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator='\n')
    writer.writerow(COLUMNS)
    for candidate, p, c in zip(candidates, probability, classifier):
        writer.writerow([candidate.seriesuid, *(f'{v:.3f}' for v in candidate.coord_xyz),
                         f'{p:.6f}', f'{candidate.probability:.6f}',
                         '' if np.isnan(c) else f'{c:.6f}'])
    return buffer.getvalue()


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0] + ' About 1 s per scan of 100 candidates on a CPU.',
        epilog='Details: python -m pydoc tools/rescore_candidates.py')
    parser.add_argument('config', help='view classifier config (configs/fp_reduction/...)')
    parser.add_argument('checkpoint', help='its trained weights (.pth)')
    parser.add_argument('run', type=Path, help='the --out folder of tools/infer_scan.py')
    parser.add_argument('--candidates', type=Path, default=None,
                        help='candidates to rescore (default: RUN/candidates.csv)')
    parser.add_argument('--views', type=Path, default=None,
                        help="info.json of the classifier's training views (view size and mm per "
                             'pixel; default: the defaults of data_prep/candidates_to_views.py)')
    parser.add_argument('--classifier-weight', type=float, default=0.5,
                        help="w in detector ** (1 - w) * classifier ** w")
    parser.add_argument('--out', type=Path, default=None,
                        help='output CSV (default: RUN/candidates_rescored.csv)')
    parser.add_argument('--device', default='cpu', help='cpu, cuda or cuda:N')
    args = parser.parse_args(argv)
    if not 0.0 <= args.classifier_weight <= 1.0:
        parser.error(f'--classifier-weight must be in [0, 1], got {args.classifier_weight}')
    args.candidates = args.candidates or args.run / 'candidates.csv'
    args.out = args.out or args.run / 'candidates_rescored.csv'
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='%(levelname)s %(message)s')
    size, mm_per_pixel = VIEW_SIZE, VIEW_MM_PER_PIXEL
    try:
        if args.views is not None:
            info = json.loads(args.views.read_text())
            size, mm_per_pixel = int(info['view_size']), float(info['mm_per_pixel'])
        candidates, warnings = read_candidates([args.candidates])
        sources = scan_sources(args.run)
        classifier = ViewClassifier(args.config, args.checkpoint, device=args.device)
    except (OSError, ValueError, KeyError) as exc:
        logger.error('%s', exc)
        return 2
    for message in warnings:
        logger.warning('%s', message)
    scores, problems = rescore(candidates, sources, classifier, size, mm_per_pixel)
    for message in problems:
        logger.warning('%s', message)
    detector = np.array([c.probability for c in candidates], dtype=np.float64)
    combined = np.where(np.isnan(scores), detector,
                        combine(detector, np.nan_to_num(scores), args.classifier_weight))
    atomic_write_text(args.out, candidates_csv(candidates, combined, scores))
    logger.info('%s: %d candidates of %d scans rescored (%d kept their detector probability)',
                args.out, int(np.isfinite(scores).sum()), len({c.seriesuid for c in candidates}),
                int(np.isnan(scores).sum()))
    return 0 if np.isfinite(scores).any() or not candidates else 1


if __name__ == '__main__':
    sys.exit(main())
