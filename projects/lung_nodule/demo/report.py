"""``REPORT.md`` of the demo: what ran, for how long, and what the model measures.

Every figure in the report is read from a file one of the demo's tools wrote in this run
(``test_metrics.json`` of ``tools/test.py``, ``metrics.json`` of ``tools/eval_luna16.py``,
mmengine's ``scalars.json``); nothing is typed in. Missing pieces (a step whose tool is
not in the checkout) are reported as such, not left out silently.
"""
from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..evaluation.false_positives import SliceCounts, SliceMatches, match_detections
from ..evaluation.footprint_reference import FootprintReference, footprint_reference
from .figures import (pick_overlay_nodules, plot_false_positives, plot_loss_curve,
                      plot_overlays)

__all__ = ['DemoRun', 'StepRecord', 'TARGETS', 'headline_figures', 'wall_seconds',
           'write_report']

logger = logging.getLogger(__name__)

#: The demo's targets (issue 13), on the test split: (key, label, bound, higher is better).
TARGETS = (
    ('segm_ap50', 'COCO segm AP50', 0.80, True),
    ('cpm', 'CPM (LUNA16 FROC)', 0.70, True),
    ('mae_ge6', 'diameter MAE, reported nodules >= 6 mm (mm)', 1.5, False),
    ('test_nodules', 'nodules in the test split', 40, True),
)
_BANDS_GE6 = ('6-8', '8-15', '>=15')
#: ``tools/infer_scan.py``'s ``--score-thr``: what a reader is shown
REPORTED_SCORE = 0.5


@dataclass
class StepRecord:
    """One step as it ran: its command, wall and CPU seconds, status, and when it began."""

    title: str
    command: str
    seconds: float | None
    cpu_seconds: float | None
    status: str  # 'ran' | 'missing tool' | 'needs <step key>'
    #: Unix time the step began (None in records of older runs): steps that ran side by
    #: side overlap, so the demo's wall time is the union of the steps' spans, not their sum
    started: float | None = None

    @property
    def span(self) -> tuple[float, float] | None:
        """``(begin, end)`` in Unix time, or None when the record lacks one of them."""
        if self.started is None or self.seconds is None:
            return None
        return self.started, self.started + self.seconds


def wall_seconds(steps: list[StepRecord]) -> float:
    """Wall time of ``steps``: the length of the union of their spans.

    A step without a start time (a record from before the steps ran side by side) adds
    its own seconds.
    """
    spans = sorted(s.span for s in steps if s.span is not None)
    total, end = 0.0, -math.inf
    for begin, finish in spans:
        total += max(0.0, finish - max(begin, end))
        end = max(end, finish)
    return total + sum(s.seconds for s in steps if s.seconds is not None and s.started is None)


def _beside(step: StepRecord, steps: list[StepRecord], slack: float = 1.0) -> str:
    """Numbers (1-based) of the steps whose span overlaps ``step``'s by more than
    ``slack`` seconds (the records keep tenths of a second)."""
    if step.span is None:
        return ''
    begin, end = step.span
    return ', '.join(str(i) for i, other in enumerate(steps, 1)
                     if other is not step and other.span is not None
                     and min(end, other.span[1]) - max(begin, other.span[0]) > slack)


@dataclass
class DemoRun:
    """Where a demo run wrote its pieces."""

    out: Path
    data_label: str
    machine: str
    started_utc: str
    steps: list[StepRecord]
    coco_root: Path
    splits_csv: Path
    test_scans: int
    patch_metrics: Path
    det_metrics: Path
    predictions: Path
    train_dir: Path
    eval_dir: Path
    infer_dir: Path
    stage_begins: list[tuple[str, int]] = field(default_factory=list)
    argv: list[str] = field(default_factory=list)
    #: FROC of the detector's own candidates, before false-positive reduction
    detector_eval_dir: Path | None = None
    #: the synthetic data's label volumes (None for real scans): the true footprints
    labels_dir: Path | None = None


def _read_json(path: Path) -> dict | None:
    return json.loads(Path(path).read_text()) if Path(path).exists() else None


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return 'n/a'
    if isinstance(value, float):
        return f'{value:.{digits}f}'
    return str(value)


def _pooled(bands: dict, key: str) -> tuple[float | None, int]:
    """n-weighted mean of ``key`` over the >= 6 mm bands of one measure."""
    total, n = 0.0, 0
    for name in _BANDS_GE6:
        band = bands.get(name) or {}
        if band.get('n') and band.get(key) is not None:
            total += band[key] * band['n']
            n += band['n']
    return (total / n if n else None), n


def _test_nodules(coco_root: Path) -> int:
    """Distinct nodules annotated on the test split's slices."""
    coco = _read_json(coco_root / 'annotations/instances_test.json') or {}
    images = {im['id']: im['seriesuid'] for im in coco.get('images', [])}
    return len({(images[a['image_id']], a['nodule_id']) for a in coco.get('annotations', [])
                if not a.get('iscrowd')})  # crowd: an excluded finding's ignore region


def headline_figures(run: DemoRun) -> dict[str, Any]:
    """The report's headline numbers, each from the file a tool wrote (None: not measured)."""
    det = _read_json(run.det_metrics) or {}
    patch = _read_json(run.patch_metrics) or {}
    froc = _read_json(run.eval_dir / 'metrics.json') or {}
    size = ((froc.get('size_agreement') or {}).get('measures') or {}).get('long_axis_mm', {})
    mae, n_ge6 = _pooled(size, 'mae_mm')
    bias, _ = _pooled(size, 'bias_mm')
    infer = next((s for s in run.steps if s.title.startswith('whole-scan')), None)
    rescore = next((s for s in run.steps if s.title.endswith('rescore the test candidates')),
                   None)
    detector = _read_json(run.detector_eval_dir / 'metrics.json') if run.detector_eval_dir else None
    return {
        'test_scans': run.test_scans,
        'test_nodules': _test_nodules(run.coco_root),
        'patch_accuracy': patch.get('accuracy/top1'),
        'patch_auc': patch.get('roc/auc'),
        'segm_ap': det.get('coco/segm_mAP'),
        'segm_ap50': det.get('coco/segm_mAP_50'),
        'bbox_ap50': det.get('coco/bbox_mAP_50'),
        'matterport_map50': det.get('matterport/mask_mAP_50'),
        'dice': next((v for k, v in det.items() if k.endswith('/dice')), None),
        'cpm': froc.get('cpm'),
        'cpm_ci95': froc.get('cpm_ci95'),
        'cpm_detector': (detector or {}).get('cpm'),
        'sensitivity_detector': (detector or {}).get('sensitivity'),
        'sensitivity': froc.get('sensitivity'),
        'mae_ge6': mae,
        'bias_ge6': bias,
        'n_ge6': n_ge6,
        'seconds_per_test_scan': (infer.seconds / run.test_scans
                                  if infer and infer.seconds and run.test_scans else None),
        'rescore_seconds_per_test_scan': (rescore.seconds / run.test_scans if rescore and
                                          rescore.seconds and run.test_scans else None),
        'total_seconds': wall_seconds(run.steps),
        'total_cpu_seconds': sum(s.cpu_seconds or 0 for s in run.steps),
    }


def slice_matches(run: DemoRun) -> tuple[SliceMatches, SliceMatches] | None:
    """Test-slice detections matched to the nodule masks (mask IoU >= 0.5) at any score
    and at :data:`REPORTED_SCORE`; None when the predictions were not dumped."""
    ann = run.coco_root / 'annotations/instances_test.json'
    if not (run.predictions.exists() and ann.exists()):
        return None
    every = match_detections(ann, run.predictions, score_thr=0.0)
    return every, every.above(REPORTED_SCORE)


def reference_ap50(run: DemoRun) -> FootprintReference | None:
    """AP50 of the true footprints on the test slices; None without label volumes (a
    volume that cannot be read is named in a warning: the rest of the report stands)."""
    ann = run.coco_root / 'annotations/instances_test.json'
    if run.labels_dir is None or not (Path(run.labels_dir).is_dir() and ann.exists()):
        return None
    try:
        return footprint_reference(ann, run.labels_dir)
    except (OSError, RuntimeError, ValueError) as exc:  # SimpleITK raises RuntimeError
        logger.warning('true-footprint reference left out of the report: %s', exc)
        return None


def _slice_recall_lines(counts: tuple[SliceCounts, SliceCounts] | None,
                        reference: FootprintReference | None, out: Path,
                        false_positives_png: Path | None, label: str) -> list[str]:
    """Why AP50 is what it is: no ranking lifts it above the recall at any score, the
    table shows which cross-sections the detector never finds, the true footprints show
    what the circle masks leave to any segmenter, and the figure what it takes for a
    nodule."""
    if counts is None:
        return []
    every, shown = counts
    lines = ['## Where the detector misses (test slices)', '',
             f'Nodule masks matched by a detection at mask IoU >= {every.iou_thr:g}, '
             f'one-to-one in order of score: at any score {every.true_positives} of '
             f'{every.ground_truth} ({every.recall:.2f}; AP50 cannot exceed it), at score '
             f'>= {shown.score_thr:g} {shown.true_positives} ({shown.recall:.2f}, with '
             f'{shown.fp_per_slice:.2f} false positives per slice).', '',
             '| cross-section area (px) | nodule masks | found at any score | '
             f'found at score >= {shown.score_thr:g} |', '|---|---|---|---|']
    for band, band_shown in zip(every.by_area, shown.by_area):
        span = f'>= {band.low:g}' if band.high is None else f'{band.low:g}-{band.high:g}'
        lines.append(f'| {span} | {band.ground_truth} | {band.found} ({_fmt(band.recall, 2)}) '
                     f'| {band_shown.found} ({_fmt(band_shown.recall, 2)}) |')
    if reference is not None:
        lines += ['', f'The nodules\' true footprints on the same slices (the label volumes of '
                  f'the synthetic data: {reference.footprints} footprints, each a detection of '
                  f'score 1) score COCO segm AP50 {_fmt(reference.ap50)} (AP '
                  f'{_fmt(reference.ap)}) against these masks: the masks are discs drawn from '
                  '`diameter_mm` (the long axis), the nodules are lobulated, spiculated or '
                  'cut off-centre, so no segmenter of what the scan shows scores much more.']
    if false_positives_png is not None:
        link = _link(out, false_positives_png,
                     f'highest-scoring false positives on the test slices ({label})')
        lines += ['', f'What the detector takes for a nodule, at score >= {shown.score_thr:g}:',
                  '', link]
    return lines + ['']


def _scalars_json(train_dir: Path) -> Path | None:
    found = sorted(Path(train_dir).glob('*/vis_data/scalars.json'), key=os.path.getmtime)
    return found[-1] if found else None


def _target_rows(fig: dict) -> list[str]:
    rows = ['| target | measured | bound | met |', '|---|---|---|---|']
    for key, label, bound, higher in TARGETS:
        value = fig.get(key)
        if value is None:
            met = 'not measured'
        else:
            met = 'yes' if (value >= bound if higher else value <= bound) else 'NO'
        rows.append(f'| {label} | {_fmt(value)} | {">=" if higher else "<="} {bound} | {met} |')
    total = fig['total_seconds']
    met = 'yes' if total <= 900 else 'NO'
    rows.append(f'| whole demo, wall time (min) | {total / 60:.1f} | <= 15 | {met} |')
    return rows


def _link(out: Path, path: Path | None, text: str) -> str:
    if path is None or not Path(path).exists():
        return f'{text}: not written (its step did not run)'
    return f'![{text}]({os.path.relpath(path, out)})'


def write_report(run: DemoRun) -> Path:
    """Make the figures and write ``OUT/REPORT.md`` and ``OUT/HEADLINE.md``; return the report."""
    out = Path(run.out)
    fig = headline_figures(run)
    figures = out / 'figures'
    scalars = _scalars_json(run.train_dir)
    loss_png = (plot_loss_curve(scalars, figures / 'loss_curve.png', run.data_label,
                                run.stage_begins) if scalars else None)
    overlays = []
    if run.predictions.exists():
        chosen = pick_overlay_nodules(run.coco_root / 'annotations/instances_test.json',
                                      run.coco_root / 'images/test', run.predictions, count=6)
        overlays = plot_overlays(chosen, figures, run.data_label)
    label = run.data_label
    matches = slice_matches(run)
    matched = (matches[0].counts(), matches[1].counts()) if matches else None
    false_positives_png = (plot_false_positives(matches[1], run.coco_root / 'images/test',
                                                figures / 'false_positives.png', label)
                           if matches else None)
    reference = reference_ap50(run)
    ci = fig['cpm_ci95']
    cpm_text = _fmt(fig['cpm']) + (f' (95% CI {_fmt(ci[0])}-{_fmt(ci[1])})' if ci else '')
    if fig['cpm_detector'] is not None:
        cpm_text += (f' after false-positive reduction (detector alone: '
                     f'{_fmt(fig["cpm_detector"])})')
    per_scan = f'{_fmt(fig["seconds_per_test_scan"], 1)} s per scan'
    if fig['rescore_seconds_per_test_scan'] is not None:
        per_scan += f' + {_fmt(fig["rescore_seconds_per_test_scan"], 1)} s rescoring'
    headline = [
        f'Headline figures ({label}, test split: {fig["test_scans"]} scans, '
        f'{fig["test_nodules"]} nodules):', '',
        f'- patch classifier (ResNet-18, 50x50): accuracy {_fmt(fig["patch_accuracy"], 1)}%, '
        f'AUC {_fmt(fig["patch_auc"], 1)}%',
        f'- Mask R-CNN R18-FPN, test slices: COCO segm AP {_fmt(fig["segm_ap"])}, '
        f'AP50 {_fmt(fig["segm_ap50"])}; Matterport mAP@0.5 {_fmt(fig["matterport_map50"])}; '
        f'nodule Dice {_fmt(fig["dice"])}'
        + (f'; nodule masks found at any score {_fmt(matched[0].recall, 2)} (the bound of '
           'AP50)' if matched else '')
        + (f'; the true footprints: AP50 {_fmt(reference.ap50)} against these masks'
           if reference else ''),
        f'- whole scans: CPM {cpm_text}; diameter (long axis vs. annotated) for '
        f'{fig["n_ge6"]} reported nodules >= 6 mm: MAE {_fmt(fig["mae_ge6"], 2)} mm, bias '
        f'{_fmt(fig["bias_ge6"], 2)} mm; {per_scan}',
        f'- whole demo: {fig["total_seconds"] / 60:.1f} min wall, '
        f'{fig["total_cpu_seconds"] / 60:.1f} min CPU',
    ]
    lines = [f'# Demo report ({label})', '',
             f'Started {run.started_utc}. Machine: {run.machine}.', '',
             f'Command: `python tools/run_demo.py {" ".join(run.argv)}`', '',
             *headline, '', '## Targets (issue 13)', '', *_target_rows(fig), '',
             *_slice_recall_lines(matched, reference, out, false_positives_png, label),
             '## Steps', '', '| # | step | wall (s) | CPU (s) | ran beside | status | command |',
             '|---|---|---|---|---|---|---|']
    for i, s in enumerate(run.steps, 1):
        lines.append(f'| {i} | {s.title} | {_fmt(s.seconds, 1)} | {_fmt(s.cpu_seconds, 1)} | '
                     f'{_beside(s, run.steps)} | {s.status} | `{s.command}` |')
    lines += ['', 'CPU seconds are user + system time of the step\'s processes (2 cores: up '
              'to 2 s per wall second). Steps that ran beside each other each had a core of '
              'their own; the whole demo\'s wall time counts their overlap once.', '',
              '## Figures', '',
              _link(out, loss_png, f'training loss ({label})'), '']
    lines += [_link(out, p, f'ground truth | prediction ({label})') for p in overlays]
    lines += ['', _link(out, run.eval_dir / 'froc.png', f'FROC ({label}, after false-positive '
                                                       'reduction)'), '']
    if run.detector_eval_dir is not None:
        lines += [_link(out, run.detector_eval_dir / 'froc.png',
                        f'FROC of the detector alone ({label})'), '']
    lines += [_link(out, run.eval_dir / 'bland_altman.png', f'Bland-Altman ({label})'), '']
    sens = fig['sensitivity'] or {}
    if sens:
        rows = [('sensitivity', sens, fig['cpm'])]
        if fig['sensitivity_detector']:
            rows = [('detector alone', fig['sensitivity_detector'], fig['cpm_detector']),
                    ('after false-positive reduction', sens, fig['cpm'])]
        lines += ['## FROC points', '', '| FP per scan | ' + ' | '.join(sens) + ' | CPM |',
                  '|---|' + '---|' * (len(sens) + 1)]
        lines += [f'| {name} | ' + ' | '.join(_fmt(values.get(k)) for k in sens) +
                  f' | {_fmt(cpm)} |' for name, values, cpm in rows]
        lines.append('')
    metrics_md = run.eval_dir / 'metrics.md'
    if metrics_md.exists():
        body = metrics_md.read_text().replace('\n# ', '\n### ')
        lines += ['## LUNA16 evaluation (tools/eval_luna16.py)', '',
                  body.replace('# ', '### ', 1) if body.startswith('# ') else body, '']
    missing = [s.title for s in run.steps if s.status != 'ran']
    if missing:
        lines += ['## Not run', '', *[f'- {t}' for t in missing], '']
    _write(out / 'HEADLINE.md', '\n'.join(headline) + '\n')
    return _write(out / 'REPORT.md', '\n'.join(lines) + '\n')


def _write(path: Path, text: str) -> Path:
    tmp = path.with_name(f'.{path.name}.tmp')
    tmp.write_text(text)
    tmp.replace(path)
    return path
