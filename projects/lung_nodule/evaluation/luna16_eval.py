"""LUNA16 evaluation end to end: read the inputs, score FROC/CPM, size agreement, write
``metrics.json``, ``metrics.md``, ``froc.png`` and ``bland_altman.png``.

``tools/eval_luna16.py`` is the command line around :func:`evaluate_luna16`. Input
problems never stop the run when something can still be scored: each is a warning
naming the file and line (logged, and kept in ``metrics.json``); only inputs from which
nothing can be read (a missing file, a missing column, an empty scan list) raise.
Every output is written to a temporary name and renamed.

Nothing here imports torch or OpenMMLab.
"""
from __future__ import annotations

import json
import logging
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from .froc import FROC_POINTS, FrocResult, evaluate_froc, point_key
from .luna16_inputs import drop_unlisted, read_candidates, read_findings
from .luna16_plots import bland_altman_png, froc_png
from .size_agreement import (MEASURES, SIZE_BANDS, agreement_stats, pair_reported_nodules,
                             reference_sizes_from_labels)

__all__ = ['PROTOCOLS', 'Luna16Inputs', 'evaluate_luna16', 'metrics_markdown']

logger = logging.getLogger(__name__)

PROTOCOLS = {
    'cross-validation': 'cross-validation over the LUNA16 subsets, the test candidates of all '
                        'folds pooled into one FROC (the protocol of published LUNA16 figures)',
    'random-split': 'one random scan-level split (NOT the 10-fold cross-validation of published '
                    'LUNA16 figures; not comparable with them)',
    'scan-list': 'the scans of a given list',
}
_PROTOCOL_TITLES = {
    'cross-validation': 'cross-validation, folds pooled',
    'random-split': 'one random split (not the published 10-fold protocol)',
    'scan-list': 'scan list',
}


@dataclass
class Luna16Inputs:
    """What to score.

    Attributes:
        annotations: ``annotations.csv``.
        candidates: One or more submission files (pooled).
        scans: The scan list (every scan counts in the FP divisor).
        scans_source: Where the list came from (for the report).
        excluded: ``annotations_excluded.csv`` or None.
        nodules_dir: Inference output (``<seriesuid>/nodules.csv``) for size agreement.
        reference_labels: Reference label volumes (``<seriesuid>.nii.gz``).
        protocol: A key of :data:`PROTOCOLS`.
        scan_list_warnings: Problems met while reading the list.
        data_label: What the data are (e.g. "synthetic data"), written into every
            figure so that a PNG seen on its own is not taken for a real-scan result.
        candidates_label: What made the candidates (e.g. "detector alone"), written into
            the FROC figure and the report, so that two FROCs of one run are told apart.
    """

    annotations: Path
    candidates: Sequence[Path]
    scans: Sequence[str]
    scans_source: str
    excluded: Path | None = None
    nodules_dir: Path | None = None
    reference_labels: Path | None = None
    protocol: str = 'random-split'
    scan_list_warnings: list[str] = field(default_factory=list)
    data_label: str | None = None
    candidates_label: str | None = None


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f'.{path.name}.', suffix='.tmp')
    try:
        with os.fdopen(fd, 'wb') as handle:
            handle.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _finite_or_none(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def evaluate_luna16(inputs: Luna16Inputs, out_dir: str | os.PathLike,
                    bootstrap_samples: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Score, write the four outputs (``bland_altman.png`` only with ``nodules_dir``).

    Args:
        inputs: What to score.
        out_dir: Output folder.
        bootstrap_samples: Bootstrap samples for the intervals (0: none).
        seed: Bootstrap seed.

    Returns:
        The ``metrics.json`` content.

    Raises:
        FileNotFoundError, ValueError: An input from which nothing can be read.
    """
    if inputs.protocol not in PROTOCOLS:
        raise ValueError(f'protocol must be one of {sorted(PROTOCOLS)}, got {inputs.protocol!r}')
    out_dir = Path(out_dir)
    warnings = list(inputs.scan_list_warnings)
    findings, problems = read_findings(inputs.annotations)
    warnings += [str(p) for p in problems]
    if inputs.excluded is not None:
        excluded, problems = read_findings(inputs.excluded, excluded=True)
        warnings += [str(p) for p in problems]
        findings += excluded
    findings, dropped = drop_unlisted(findings, inputs.scans, 'finding')
    warnings += dropped
    candidates, problems = read_candidates(inputs.candidates)
    warnings += problems
    candidates, dropped = drop_unlisted(candidates, inputs.scans, 'candidate')
    warnings += dropped
    result = evaluate_froc(inputs.scans, findings, candidates, bootstrap_samples, seed)
    warnings += result.warnings
    metrics = _froc_metrics(result, inputs, bootstrap_samples, seed)

    pairs = None
    if inputs.nodules_dir is not None:
        reference_sizes = None
        if inputs.reference_labels is not None:
            reference_sizes, problems = reference_sizes_from_labels(inputs.reference_labels,
                                                                    findings)
            warnings += problems
        pairs, problems = pair_reported_nodules(result.matches, inputs.nodules_dir,
                                                reference_sizes)
        warnings += problems
        metrics['size_agreement'] = {
            'reference': ('measured from the label volumes in '
                          f'{inputs.reference_labels}' if reference_sizes is not None
                          else 'annotated diameter_mm'),
            'bands_by': 'annotated diameter_mm',
            'pairs': len(pairs),
            'detected_nodules': result.counts['nodules_detected'],
            'measures': agreement_stats(pairs),
        }
    else:
        metrics['size_agreement'] = None
    metrics['warnings'] = warnings
    for message in warnings:
        logger.warning(message)

    prefix = f'{inputs.data_label}: ' if inputs.data_label else ''
    what = f' of {inputs.candidates_label}' if inputs.candidates_label else ''
    # the protocol on a line of its own: with both labels one line overflows the figure
    sep = '\n' if inputs.candidates_label else ' - '
    title = f'{prefix}LUNA16 FROC{what}{sep}{_PROTOCOL_TITLES[inputs.protocol]}'
    _atomic_write(out_dir / 'froc.png', froc_png(result, title))
    if pairs is not None:
        _atomic_write(out_dir / 'bland_altman.png', bland_altman_png(
            pairs, f'{prefix}size agreement on reported nodules ({len(pairs)} paired)',
            metrics['size_agreement']['reference']))
    _atomic_write(out_dir / 'metrics.json', (json.dumps(metrics, indent=1) + '\n').encode())
    _atomic_write(out_dir / 'metrics.md', metrics_markdown(metrics).encode())
    return metrics


def _froc_metrics(result: FrocResult, inputs: Luna16Inputs, bootstrap_samples: int,
                  seed: int) -> dict[str, Any]:
    metrics: dict[str, Any] = {
        'protocol': inputs.protocol,
        'protocol_note': PROTOCOLS[inputs.protocol],
        'data_label': inputs.data_label,
        'candidates_label': inputs.candidates_label,
        'cpm': _finite_or_none(result.cpm),
        'sensitivity': {k: _finite_or_none(v) for k, v in result.sensitivity.items()},
    }
    boot = result.bootstrap
    if boot is not None:
        metrics['cpm_ci95'] = [_finite_or_none(v) for v in boot.cpm_ci]
        metrics['sensitivity_ci95'] = {point_key(p): [_finite_or_none(v) for v in ci]
                                       for p, ci in zip(FROC_POINTS, boot.sensitivity_ci)}
        metrics['bootstrap'] = {
            'samples': boot.samples, 'seed': boot.seed, 'confidence': boot.confidence,
            'resampled': 'scans, with replacement',
            'interval': 'sorted[floor(0.025 n)] .. sorted[floor(0.975 n)] (the official '
                        "script's compute_mean_ci)",
            'samples_without_nodules': boot.samples_without_nodules}
    else:
        metrics['cpm_ci95'] = None
        metrics['sensitivity_ci95'] = None
        metrics['bootstrap'] = None
    detected, nodules = result.counts['nodules_detected'], result.counts['nodules']
    metrics['detection_sensitivity'] = detected / nodules if nodules else None
    metrics['false_positives_per_scan'] = result.counts['false_positives'] / result.counts['scans']
    metrics['counts'] = result.counts
    metrics['inputs'] = {
        'annotations': str(inputs.annotations), 'excluded': str(inputs.excluded)
        if inputs.excluded else None, 'candidates': [str(p) for p in inputs.candidates],
        'scans': inputs.scans_source,
        'nodules_dir': str(inputs.nodules_dir) if inputs.nodules_dir else None,
        'reference_labels': str(inputs.reference_labels) if inputs.reference_labels else None}
    return metrics


def _fmt(value: float | None, digits: int = 3) -> str:
    return 'n/a' if value is None else f'{round(value, digits) + 0.0:.{digits}f}'  # no '-0.00'


def metrics_markdown(metrics: dict[str, Any]) -> str:
    """The Markdown report of ``metrics.json`` (printed by the CLI, saved as metrics.md)."""
    labels = ['1/8', '1/4', '1/2', '1', '2', '4', '8']
    keys = [point_key(p) for p in FROC_POINTS]
    counts = metrics['counts']
    data = ''.join(f'{metrics[k]}, ' for k in ('data_label', 'candidates_label')
                   if metrics.get(k))
    lines = [f'# LUNA16 FROC ({data}{metrics["protocol"]})', '',
             f'Protocol: {metrics["protocol_note"]}.', '',
             '| FP per scan | ' + ' | '.join(labels) + ' | CPM |',
             '|---|' + '---|' * (len(labels) + 1),
             '| sensitivity | ' + ' | '.join(_fmt(metrics['sensitivity'][k]) for k in keys)
             + f' | **{_fmt(metrics["cpm"])}** |']
    if metrics['sensitivity_ci95'] is not None:
        ci = metrics['sensitivity_ci95']
        lines.append('| 95% CI | ' + ' | '.join(f'{_fmt(ci[k][0])}-{_fmt(ci[k][1])}' for k in keys)
                     + f' | {_fmt(metrics["cpm_ci95"][0])}-{_fmt(metrics["cpm_ci95"][1])} |')
    lines += ['', f'{counts["nodules"]} nodules ({counts["nodules_detected"]} detected at any '
                  f'threshold) in {counts["scans_with_nodules"]} of {counts["scans"]} scans; '
                  f'{counts["candidates"]} candidates read, {counts["candidates_kept"]} kept '
                  f'(at most 100 per scan), {counts["false_positives"]} false positives, '
                  f'{counts["candidates_on_excluded"]} on excluded findings (ignored), '
                  f'{counts["double_hits"]} further hits on detected nodules (ignored).']
    if metrics['bootstrap'] is not None:
        boot = metrics['bootstrap']
        lines.append(f'Intervals: {boot["samples"]} bootstrap samples over scans (seed '
                     f'{boot["seed"]}).')
    size = metrics.get('size_agreement')
    if size is not None:
        lines += ['', f'## Size agreement ({size["pairs"]} nodules paired with a reported nodule of '
                      f'nodules.csv, {size["detected_nodules"]} detected at any score; '
                      f'reference: {size["reference"]}; bands by '
                      f'{size["bands_by"]})', '',
                  '| measure | band | n | MAE (mm) | bias (mm) |', '|---|---|---|---|---|']
        for measure in MEASURES:
            for band in [b for b, _, _ in SIZE_BANDS] + ['all']:
                s = size['measures'][measure][band]
                lines.append(f'| {measure} | {band} | {s["n"]} | {_fmt(s["mae_mm"], 2)} | '
                             f'{_fmt(s["bias_mm"], 2)} |')
    if metrics['warnings']:
        lines += ['', f'{len(metrics["warnings"])} input warning(s): see metrics.json.']
    return '\n'.join(lines) + '\n'
