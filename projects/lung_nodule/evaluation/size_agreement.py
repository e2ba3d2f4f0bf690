"""How well measured nodule sizes agree with the reference, on the nodules the tool reports.

The inference output ``DIR/<seriesuid>/nodules.csv`` holds the nodules a user reads: those
at or above ``tools/infer_scan.py``'s ``--score-thr`` (the candidates file holds every
candidate, without sizes). **Pairing rule**: every included reference nodule is paired
with the most probable row of its scan's ``nodules.csv`` that hits it by LUNA16's rule
(the row's centre strictly within the nodule's radius, :func:`.froc.hit_matrix`, the
FROC's own test). A nodule that no row hits (missed, or found only below the table's
score threshold) has no measured size and is left out; the metrics give the number of
pairs beside the FROC's count of nodules detected at any score. The candidates file plays
no part: a size belongs to the reported nodule, whatever rescoring did to its probability.

The predicted ``long_axis_mm``, ``mean_diameter_mm`` and ``equivalent_diameter_mm`` are
compared with the reference: the annotation's ``diameter_mm`` (a radiologist's long-axis
reading) for all three, or, with reference label volumes, the same three measures taken
from the true label by the project's own measurement code (like compared with like).
Nodules are grouped into size bands by the annotated ``diameter_mm`` (< 6, 6-8, 8-15,
>= 15 mm: the Fleischner and Lung-RADS cut-offs); per band and measure the mean absolute
error and the bias (mean of predicted - reference) are reported, and over all nodules
the Bland-Altman limits of agreement (bias +- 1.96 SD).

Nothing here imports torch or OpenMMLab.
"""
from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from projects.lung_nodule.ct.io import ScanReadError
from projects.lung_nodule.ct.measure import measure_label_volume, read_label_volume

from .froc import ScanMatch, hit_matrix
from .luna16_inputs import Finding

__all__ = ['MEASURES', 'SIZE_BANDS', 'SizePair', 'agreement_stats', 'pair_reported_nodules',
           'read_nodule_table', 'reference_sizes_from_labels', 'size_band']

MEASURES = ('long_axis_mm', 'mean_diameter_mm', 'equivalent_diameter_mm')
SIZE_BANDS = (('<6', 0.0, 6.0), ('6-8', 6.0, 8.0), ('8-15', 8.0, 15.0), ('>=15', 15.0, math.inf))
_TABLE_COLUMNS = ('nodule_id', 'coordX', 'coordY', 'coordZ', 'probability') + MEASURES


def size_band(diameter_mm: float) -> str:
    """The band name of a reference diameter (lower bound inclusive)."""
    for name, low, high in SIZE_BANDS:
        if low <= diameter_mm < high:
            return name
    raise ValueError(f'diameter {diameter_mm!r} mm is in no size band')


@dataclass(frozen=True)
class SizePair:
    """A reference nodule and the reported nodule it is paired with.

    Attributes:
        finding: The reference nodule (its ``annotated_diameter_mm`` sets the band).
        band: Size band name.
        reference: Reference value per measure (mm).
        predicted: Predicted value per measure (mm).
        prediction_id: ``nodule_id`` of the paired ``nodules.csv`` row.
        distance_mm: Distance between the reference centre and the paired row's.
    """

    finding: Finding
    band: str
    reference: dict[str, float]
    predicted: dict[str, float]
    prediction_id: str
    distance_mm: float


def read_nodule_table(path: str | os.PathLike) -> tuple[list[dict], list[str]]:
    """Read an inference ``nodules.csv``; rows with a non-finite value are left out.

    Returns:
        ``(rows, warnings)``: each row a dict with ``nodule_id`` (str), ``coord``
        (np.ndarray x, y, z), ``probability`` and the :data:`MEASURES` as floats,
        ``line``.

    Raises:
        ValueError: A required column is missing.
    """
    path = Path(path)
    rows, warnings = [], []
    with open(path, newline='', encoding='utf-8-sig') as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in _TABLE_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f'{path}: missing column(s) {", ".join(missing)}')
        for row in reader:
            values = {}
            for name in _TABLE_COLUMNS[1:]:
                try:
                    values[name] = float(row[name])
                except (TypeError, ValueError):
                    values[name] = math.nan
            bad = [n for n, v in values.items() if not math.isfinite(v)]
            if bad:
                warnings.append(f'{path}, line {reader.line_num}: not a finite number in '
                                f'{", ".join(bad)}; row left out')
                continue
            rows.append({'nodule_id': row['nodule_id'], 'line': reader.line_num,
                         'coord': np.array([values['coordX'], values['coordY'], values['coordZ']]),
                         'probability': values['probability'],
                         **{m: values[m] for m in MEASURES}})
    return rows, warnings


def pair_reported_nodules(matches: Sequence[ScanMatch], nodules_dir: str | os.PathLike,
                          reference_sizes: Mapping[tuple[str, int], dict[str, float]] | None = None
                          ) -> tuple[list[SizePair], list[str]]:
    """Pair every included nodule with the most probable reported nodule that hits it.

    Args:
        matches: FROC matches, one per scan (their ``nodules``: every included nodule).
        nodules_dir: The inference output (``<seriesuid>/nodules.csv``).
        reference_sizes: ``(seriesuid, data_row) -> {measure: mm}`` measured from
            reference label volumes; ``None`` compares with ``diameter_mm``. A paired
            nodule missing from a given mapping is left out with a warning.

    Returns:
        ``(pairs, warnings)``.
    """
    nodules_dir = Path(nodules_dir)
    pairs: list[SizePair] = []
    warnings: list[str] = []
    for match in matches:
        if not match.nodules:
            continue
        table_path = nodules_dir / match.seriesuid / 'nodules.csv'
        if not table_path.is_file():
            warnings.append(f'{table_path}: not found; the {len(match.nodules)} nodule(s) of '
                            f'scan {match.seriesuid} get no size')
            continue
        try:
            rows, row_warnings = read_nodule_table(table_path)
        except ValueError as exc:
            warnings.append(f'{exc}; scan {match.seriesuid} gets no size')
            continue
        warnings.extend(row_warnings)
        if not rows:
            continue  # nothing reported on this scan
        coords = np.stack([r['coord'] for r in rows])
        probabilities = np.array([r['probability'] for r in rows])
        hits = hit_matrix([n.finding.coord_xyz for n in match.nodules],
                          [n.finding.diameter_mm for n in match.nodules], coords)
        for nodule, row_hits in zip(match.nodules, hits):
            if not row_hits.any():
                continue
            finding = nodule.finding
            where = f'{finding.path}, line {finding.line}'
            if finding.annotated_diameter_mm is None or finding.annotated_diameter_mm <= 0:
                warnings.append(f'{where}: no annotated diameter; no size band, left out of the '
                                f'size agreement')
                continue
            best = int(np.flatnonzero(row_hits)[np.argmax(probabilities[row_hits])])
            if reference_sizes is None:
                reference = {m: finding.annotated_diameter_mm for m in MEASURES}
            else:
                reference = reference_sizes.get((finding.seriesuid, finding.data_row))
                if reference is None:
                    warnings.append(f'{where}: no measured reference label (value '
                                    f'{finding.data_row}); left out of the size agreement')
                    continue
            pairs.append(SizePair(
                finding=finding, band=size_band(finding.annotated_diameter_mm),
                reference=dict(reference), predicted={m: rows[best][m] for m in MEASURES},
                prediction_id=str(rows[best]['nodule_id']),
                distance_mm=float(np.linalg.norm(coords[best] - np.asarray(finding.coord_xyz)))))
    return pairs, warnings


def reference_sizes_from_labels(labels_dir: str | os.PathLike, findings: Sequence[Finding]
                                ) -> tuple[dict[tuple[str, int], dict[str, float]], list[str]]:
    """Measure the reference nodules from their label volumes ``DIR/<seriesuid>.nii.gz``.

    Voxel value = 1-based data row of ``annotations.csv`` (the synthetic generator's
    convention); each label is measured by
    :func:`projects.lung_nodule.ct.measure.measure_label_volume`, the code that measures
    the predictions, so like is compared with like.

    Args:
        labels_dir: Folder of label volumes.
        findings: The included findings whose scans to measure.

    Returns:
        ``((seriesuid, data_row) -> {measure: mm}, warnings)``.
    """
    labels_dir = Path(labels_dir)
    sizes: dict[tuple[str, int], dict[str, float]] = {}
    warnings: list[str] = []
    for uid in sorted({f.seriesuid for f in findings if not f.excluded}):
        path = labels_dir / f'{uid}.nii.gz'
        if not path.is_file():
            warnings.append(f'{path}: no reference label volume for scan {uid}')
            continue
        try:
            labels, geometry = read_label_volume(path)
        except ScanReadError as exc:
            warnings.append(f'{exc}; scan {uid} has no measured reference')
            continue
        for measurement in measure_label_volume(labels, geometry):
            sizes[(uid, int(measurement.nodule_id))] = {m: float(getattr(measurement, m))
                                                        for m in MEASURES}
    return sizes, warnings


def agreement_stats(pairs: Sequence[SizePair]) -> dict[str, dict]:
    """Per measure: per band and over all pairs ``n``, ``mae_mm``, ``bias_mm``; over all
    pairs also ``sd_mm`` and the limits of agreement ``loa_mm`` (bias +- 1.96 SD).

    A band without pairs has ``n`` 0 and ``None`` figures.
    """
    out: dict[str, dict] = {}
    for measure in MEASURES:
        per_band: dict[str, dict] = {}
        for name, _, _ in SIZE_BANDS + (('all', 0.0, math.inf),):
            diffs = np.array([p.predicted[measure] - p.reference[measure] for p in pairs
                              if name == 'all' or p.band == name], dtype=np.float64)
            stats: dict = {'n': int(diffs.size),
                           'mae_mm': float(np.abs(diffs).mean()) if diffs.size else None,
                           'bias_mm': float(diffs.mean()) if diffs.size else None}
            if name == 'all':
                sd = float(diffs.std(ddof=1)) if diffs.size > 1 else None
                stats['sd_mm'] = sd
                stats['loa_mm'] = (None if sd is None else
                                   [stats['bias_mm'] - 1.96 * sd, stats['bias_mm'] + 1.96 * sd])
            per_band[name] = stats
        out[measure] = per_band
    return out
