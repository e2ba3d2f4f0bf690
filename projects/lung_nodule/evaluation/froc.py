"""LUNA16 FROC and CPM, scored as the challenge's ``noduleCADEvaluationLUNA16.py`` does.

The official script (Python 2, copied and patched by most LUNA16 projects) is followed
wherever a hand computation could differ from it:

* **hit**: a candidate hits a finding when its squared distance from the finding's
  centre is *strictly* below the squared radius (diameter / 2; a missing or negative
  diameter is 10 mm, see :mod:`.luna16_inputs`);
* **excluded findings**: a candidate hitting one (and no included nodule) is neither a
  true nor a false positive: it is dropped from the analysis;
* **one entry per nodule**: a detected nodule enters the curve once, with the
  probability of its highest-scoring hit; further hits are neither TP nor FP; a
  candidate inside two nodules' radii detects both; a nodule never hit enters with the
  lowest probability and is flagged "excluded" from the ROC (it only counts in the
  sensitivity's denominator);
* **the 100-mark cap**: a scan with more than 100 candidates keeps those whose
  probability is strictly above the 101st highest (so a tie at the cut drops all tied
  marks, and fewer than 100 may remain);
* **the curve**: scikit-learn's ``roc_curve`` (tied probabilities form one step,
  collinear points dropped, a first point at (0, 0)), then ``fps = fpr * (candidates -
  detected) / scans`` with *every* scan of the list in ``scans`` (those without nodules
  too), ``sens = tpr * detected / nodules``; with no false positive at all the script
  sets every fps to 0;
* **read-off**: the sensitivities at 1/8 ... 8 FP/scan by ``numpy.interp`` on the curve
  (linear between points, flat past its last point, and at a vertical step the top of
  the step); CPM is their mean;
* **bootstrap**: scans drawn with replacement (each drawn scan brings all its curve
  entries; the FP divisor stays the number of scans), the curve recomputed; a 95%
  interval is ``sorted[floor(0.025 n)]`` .. ``sorted[floor(0.975 n)]`` as the script's
  ``compute_mean_ci`` takes it. The script draws from an unseeded global generator; here
  the generator is seeded.

scikit-learn is not a dependency: :func:`roc_curve` re-implements the part of it that
the script uses (``drop_intermediate=True``), tested against hand computations.
Nothing here imports torch or OpenMMLab.
"""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence

import numpy as np

from .luna16_inputs import Candidate, Finding

__all__ = ['FROC_POINTS', 'MAX_CANDIDATES_PER_SCAN', 'BootstrapResult', 'FrocEntries',
           'FrocResult', 'NoduleHit',
           'ScanMatch', 'bootstrap_froc', 'cap_candidates', 'compute_froc', 'evaluate_froc',
           'froc_entries', 'hit_matrix', 'match_scan', 'point_key', 'roc_curve',
           'sensitivities_at']

FROC_POINTS = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)  # false positives per scan
MAX_CANDIDATES_PER_SCAN = 100  # the script's entry point: maxNumberOfCADMarks=100
MISSED_PROBABILITY = -1e9  # the script's minProbValue for a nodule without a hit


def point_key(fp_rate: float) -> str:
    """``'0.125'``, ..., ``'1'``, ... ``'8'``: the keys of ``sensitivity`` in metrics.json."""
    return f'{fp_rate:g}'


# ---------------------------------------------------------------- the ROC curve
def roc_curve(y_true: np.ndarray, y_score: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """scikit-learn's ``roc_curve(y_true, y_score)`` (defaults) for binary 0/1 labels.

    Scores sorted from high to low; every distinct score is one threshold (tied scores
    move the curve in one step); points collinear with their neighbours are dropped
    (``drop_intermediate``); a first point (0, 0) at threshold +inf is prepended. A rate
    whose total is 0 (no negatives / no positives) is NaN, as scikit-learn returns it
    (with a warning there).

    Args:
        y_true: 0/1 labels, shape (n,), n >= 1.
        y_score: Scores, shape (n,).

    Returns:
        ``(fpr, tpr, thresholds)``.
    """
    y_true = np.asarray(y_true, dtype=np.float64)
    y_score = np.asarray(y_score, dtype=np.float64)
    if y_true.shape != y_score.shape or y_true.ndim != 1 or y_true.size == 0:
        raise ValueError(f'roc_curve needs two 1D arrays of one length >= 1, got '
                         f'{y_true.shape} and {y_score.shape}')
    order = np.argsort(y_score, kind='mergesort')[::-1]
    y_score, y_true = y_score[order], y_true[order]
    distinct = np.where(np.diff(y_score))[0]
    threshold_idxs = np.r_[distinct, y_true.size - 1]
    tps = np.cumsum(y_true)[threshold_idxs]
    fps = 1 + threshold_idxs - tps
    thresholds = y_score[threshold_idxs]
    if len(fps) > 2:
        keep = np.where(np.r_[True, np.logical_or(np.diff(fps, 2), np.diff(tps, 2)), True])[0]
        fps, tps, thresholds = fps[keep], tps[keep], thresholds[keep]
    tps, fps = np.r_[0, tps], np.r_[0, fps]
    thresholds = np.r_[np.inf, thresholds]
    with np.errstate(invalid='ignore', divide='ignore'):
        fpr = fps / fps[-1] if fps[-1] > 0 else np.full(fps.shape, np.nan)
        tpr = tps / tps[-1] if tps[-1] > 0 else np.full(tps.shape, np.nan)
    return fpr, tpr, thresholds


# ---------------------------------------------------------------- matching
def cap_candidates(probabilities: np.ndarray, max_marks: int = MAX_CANDIDATES_PER_SCAN
                   ) -> np.ndarray:
    """Boolean mask of the marks a scan keeps under the script's cap.

    With more than ``max_marks`` marks, only those strictly above the
    ``(max_marks + 1)``-th highest probability stay (ties at the cut all go).
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if probabilities.size <= max_marks:
        return np.ones(probabilities.shape, dtype=bool)
    threshold = np.sort(probabilities)[::-1][max_marks]
    return probabilities > threshold


@dataclass(frozen=True)
class NoduleHit:
    """An included nodule and its highest-scoring hit (``candidate`` None when missed)."""

    finding: Finding
    candidate: Candidate | None
    num_hits: int

    @property
    def probability(self) -> float | None:
        """The probability the nodule enters the curve with (None when missed)."""
        return None if self.candidate is None else self.candidate.probability


@dataclass
class ScanMatch:
    """The matching of one scan.

    Attributes:
        seriesuid: The scan.
        nodules: Every included nodule, in file order, with its best hit.
        false_positives: Marks that hit no finding.
        num_candidates: Marks read for this scan (before the cap).
        num_kept: Marks kept by the cap.
        num_on_excluded: Kept marks ignored because they hit only excluded findings.
        num_double_hits: Hits beyond the first on a nodule (neither TP nor FP).
    """

    seriesuid: str
    nodules: list[NoduleHit]
    false_positives: list[Candidate]
    num_candidates: int
    num_kept: int
    num_on_excluded: int
    num_double_hits: int


def hit_matrix(centres_xyz: Sequence[Sequence[float]], diameters_mm: Sequence[float],
               marks_xyz: Sequence[Sequence[float]]) -> np.ndarray:
    """LUNA16's hit rule: ``[i, j]`` is whether mark ``j`` lies strictly within the
    radius (``diameter / 2``) of finding ``i``; bool ``(findings, marks)``."""
    if not len(centres_xyz) or not len(marks_xyz):
        return np.zeros((len(centres_xyz), len(marks_xyz)), dtype=bool)
    centres = np.asarray(centres_xyz, dtype=np.float64).reshape(-1, 3)
    marks = np.asarray(marks_xyz, dtype=np.float64).reshape(-1, 3)
    dist2 = ((centres[:, None, :] - marks[None, :, :]) ** 2).sum(axis=2)
    radius2 = (np.asarray(diameters_mm, dtype=np.float64) / 2.0) ** 2
    return dist2 < radius2[:, None]


def match_scan(seriesuid: str, findings: Sequence[Finding], candidates: Sequence[Candidate],
               max_marks: int = MAX_CANDIDATES_PER_SCAN) -> ScanMatch:
    """Match one scan's marks to its findings by the script's rules (see the module doc).

    Args:
        seriesuid: The scan.
        findings: Its included and excluded findings.
        candidates: Its marks, in file order (the order decides which of two equally
            scored hits is reported, as in the script).
        max_marks: The per-scan cap.
    """
    probs = np.array([c.probability for c in candidates], dtype=np.float64)
    keep = cap_candidates(probs, max_marks)
    kept = [c for c, k in zip(candidates, keep) if k]
    included = [f for f in findings if not f.excluded]
    excluded = [f for f in findings if f.excluded]

    def hits(group: Sequence[Finding]) -> np.ndarray:
        return hit_matrix([f.coord_xyz for f in group], [f.diameter_mm for f in group],
                          [c.coord_xyz for c in kept])

    on_included, on_excluded = hits(included), hits(excluded)
    nodules = []
    for finding, row in zip(included, on_included):
        idx = np.flatnonzero(row)
        best = None
        for i in idx:  # first of the highest, as the script's strict '>' picks it
            if best is None or kept[i].probability > kept[best].probability:
                best = i
        nodules.append(NoduleHit(finding, None if best is None else kept[best], len(idx)))
    any_included = on_included.any(axis=0)
    any_excluded = on_excluded.any(axis=0)
    false_positives = [c for c, a, b in zip(kept, any_included, any_excluded) if not (a or b)]
    return ScanMatch(
        seriesuid=seriesuid, nodules=nodules, false_positives=false_positives,
        num_candidates=len(candidates), num_kept=len(kept),
        num_on_excluded=int((any_excluded & ~any_included).sum()),
        num_double_hits=int(sum(max(0, n.num_hits - 1) for n in nodules)))


# ---------------------------------------------------------------- the curve
@dataclass
class FrocEntries:
    """The script's FROC vectors (FROCGTList, FROCProbList, excludeList, FPDivisorList).

    Attributes:
        labels: 1 for a nodule entry, 0 for a false positive.
        probabilities: The entry's probability (:data:`MISSED_PROBABILITY` when missed).
        missed: True for a nodule without a hit (counted in the denominator only).
        scan_index: Index of the entry's scan in the scan list.
        num_scans: Scans in the list (the FP divisor).
    """

    labels: np.ndarray
    probabilities: np.ndarray
    missed: np.ndarray
    scan_index: np.ndarray
    num_scans: int

    def subset(self, index: np.ndarray) -> 'FrocEntries':
        """The entries at ``index`` (repeats allowed), same scan count."""
        return FrocEntries(self.labels[index], self.probabilities[index], self.missed[index],
                           self.scan_index[index], self.num_scans)


def froc_entries(matches: Sequence[ScanMatch]) -> FrocEntries:
    """The curve's entries of every scan, ``matches`` being one per scan of the list."""
    labels, probs, missed, scans = [], [], [], []
    for i, match in enumerate(matches):
        for nodule in match.nodules:
            labels.append(1.0)
            probs.append(MISSED_PROBABILITY if nodule.candidate is None else nodule.probability)
            missed.append(nodule.candidate is None)
            scans.append(i)
        for mark in match.false_positives:
            labels.append(0.0)
            probs.append(mark.probability)
            missed.append(False)
            scans.append(i)
    return FrocEntries(np.array(labels, dtype=np.float64), np.array(probs, dtype=np.float64),
                       np.array(missed, dtype=bool), np.array(scans, dtype=np.int64),
                       len(matches))


def compute_froc(entries: FrocEntries) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The script's ``computeFROC``: ``(fps, sens, thresholds)``.

    Differences, only where the script returns NaN: no nodule detected gives a
    sensitivity of 0 everywhere; no nodule at all gives NaN (no sensitivity exists).
    """
    keep = ~entries.missed
    y, s = entries.labels[keep], entries.probabilities[keep]
    num_nodules = float(entries.labels.sum())
    num_detected = float(y.sum())
    if y.size == 0:
        return np.zeros(1), np.full(1, 0.0 if num_nodules else np.nan), np.array([np.inf])
    fpr, tpr, thresholds = roc_curve(y, s)
    if num_nodules == entries.labels.size:  # no false positive at all (the script's case)
        fps = np.zeros(len(fpr))
    else:
        fps = fpr * (y.size - num_detected) / entries.num_scans
    if num_nodules == 0:
        sens = np.full(len(tpr), np.nan)
    elif num_detected == 0:
        sens = np.zeros(len(tpr))
    else:
        sens = tpr * num_detected / num_nodules
    return fps, sens, thresholds


def sensitivities_at(fps: np.ndarray, sens: np.ndarray,
                     points: Sequence[float] = FROC_POINTS) -> np.ndarray:
    """Sensitivity at each FP rate: linear on the curve, flat past its ends."""
    return np.interp(np.asarray(points, dtype=np.float64), fps, sens)


def _interval(samples: np.ndarray, confidence: float) -> tuple[float, float]:
    """The script's ``compute_mean_ci`` bounds of one column (NaN samples left out)."""
    vec = np.sort(samples[np.isfinite(samples)])
    if vec.size == 0:
        return math.nan, math.nan
    pz = (1.0 - confidence) / 2.0
    return (float(vec[int(math.floor(pz * len(vec)))]),
            float(vec[min(len(vec) - 1, int(math.floor((1.0 - pz) * len(vec))))]))


@dataclass
class BootstrapResult:
    """Intervals from resampling scans.

    Attributes:
        samples: Number of bootstrap samples.
        seed: The generator's seed.
        confidence: e.g. 0.95.
        cpm_ci: ``(low, high)``.
        sensitivity_ci: ``(low, high)`` per point of :data:`FROC_POINTS`.
        band_fps: FP rates of the band (log-spaced 1/8 .. 8).
        band_low, band_high: The band's bounds at ``band_fps``.
        samples_without_nodules: Samples that drew no nodule (left out of the bounds).
    """

    samples: int
    seed: int
    confidence: float
    cpm_ci: tuple[float, float]
    sensitivity_ci: list[tuple[float, float]]
    band_fps: np.ndarray
    band_low: np.ndarray
    band_high: np.ndarray
    samples_without_nodules: int


class _WeightedCurve:
    """:func:`compute_froc` of a bootstrap sample without re-sorting its entries.

    A sample repeats each scan's entries as often as the scan was drawn; the curve of
    those repeated entries is the curve of the original entries weighted by that count
    (sorted once, cumulative weighted sums at the ends of tie groups). It has the same
    vertices as the script's curve of the repeated list, plus vertices that repeat a
    neighbour (entries of undrawn scans), which change no interpolated value.
    ``tests/test_froc.py`` checks it against :func:`compute_froc` on explicit samples.
    """

    def __init__(self, entries: FrocEntries) -> None:
        self.entries = entries
        scored = np.flatnonzero(~entries.missed)
        order = scored[np.argsort(entries.probabilities[scored], kind='mergesort')[::-1]]
        self.order = order
        self.labels = entries.labels[order]
        probs = entries.probabilities[order]
        self.group_ends = np.r_[np.where(np.diff(probs))[0], probs.size - 1] if probs.size \
            else np.zeros(0, dtype=np.int64)

    def __call__(self, scan_weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(fps, sens)`` with every entry of scan ``i`` counted ``scan_weights[i]`` times."""
        weights = scan_weights[self.entries.scan_index].astype(np.float64)
        num_nodules = float((self.entries.labels * weights).sum())
        w = weights[self.order]
        tps = np.r_[0.0, np.cumsum(self.labels * w)[self.group_ends]]
        fps = np.r_[0.0, np.cumsum((1.0 - self.labels) * w)[self.group_ends]]
        if num_nodules == 0:
            return fps / self.entries.num_scans, np.full(fps.shape, np.nan)
        return fps / self.entries.num_scans, tps / num_nodules


def bootstrap_froc(entries: FrocEntries, samples: int = 1000, seed: int = 0,
                   confidence: float = 0.95, band_points: int = 200) -> BootstrapResult:
    """Confidence intervals of the seven sensitivities and the CPM, resampling scans.

    Args:
        entries: The curve's entries (with their scans).
        samples: Bootstrap samples (the script's default, 1000).
        seed: Seed of ``numpy.random.default_rng``.
        confidence: Two-sided coverage.
        band_points: FP rates at which the band for the plot is computed.
    """
    if samples < 1:
        raise ValueError(f'bootstrap samples must be >= 1, got {samples}')
    rng = np.random.default_rng(seed)
    curve = _WeightedCurve(entries)
    band_fps = np.geomspace(FROC_POINTS[0], FROC_POINTS[-1], band_points)
    points = np.zeros((samples, len(FROC_POINTS)))
    band = np.zeros((samples, band_points))
    for b in range(samples):
        drawn = np.bincount(rng.integers(entries.num_scans, size=entries.num_scans),
                            minlength=entries.num_scans)
        fps, sens = curve(drawn)
        points[b] = sensitivities_at(fps, sens)
        band[b] = sensitivities_at(fps, sens, band_fps)
    cpm = points.mean(axis=1)
    band_bounds = [_interval(band[:, j], confidence) for j in range(band_points)]
    return BootstrapResult(
        samples=samples, seed=seed, confidence=confidence,
        cpm_ci=_interval(cpm, confidence),
        sensitivity_ci=[_interval(points[:, j], confidence) for j in range(len(FROC_POINTS))],
        band_fps=band_fps, band_low=np.array([lo for lo, _ in band_bounds]),
        band_high=np.array([hi for _, hi in band_bounds]),
        samples_without_nodules=int(np.isnan(cpm).sum()))


# ---------------------------------------------------------------- everything
@dataclass
class FrocResult:
    """FROC of a scan list: the curve, the seven points, the CPM, counts, the matches."""

    fps: np.ndarray
    sens: np.ndarray
    thresholds: np.ndarray
    sensitivity: dict[str, float]
    cpm: float
    counts: dict[str, int]
    matches: list[ScanMatch]
    bootstrap: BootstrapResult | None = None
    warnings: list[str] = field(default_factory=list)


def evaluate_froc(scans: Sequence[str], findings: Iterable[Finding],
                  candidates: Iterable[Candidate], bootstrap_samples: int = 1000,
                  seed: int = 0, confidence: float = 0.95,
                  max_marks: int = MAX_CANDIDATES_PER_SCAN) -> FrocResult:
    """Score ``candidates`` against ``findings`` over the scan list ``scans``.

    Findings and candidates of scans not in ``scans`` must have been dropped (see
    :func:`.luna16_inputs.drop_unlisted`); they raise here.

    Args:
        scans: The scan list (every scan counts in the FP divisor).
        findings: Included and excluded findings.
        candidates: The marks (pooled from any number of files).
        bootstrap_samples: 0 for no intervals.
        seed: Bootstrap seed.
        confidence: Interval coverage.
        max_marks: Per-scan cap.

    Raises:
        ValueError: Empty scan list, a repeated scan, or a row of an unlisted scan.
    """
    scans = list(scans)
    if not scans:
        raise ValueError('the scan list is empty')
    if len(set(scans)) != len(scans):
        raise ValueError('the scan list repeats a seriesuid')
    listed = set(scans)
    findings_of: Mapping[str, list[Finding]] = defaultdict(list)
    marks_of: Mapping[str, list[Candidate]] = defaultdict(list)
    for finding in findings:
        if finding.seriesuid not in listed:
            raise ValueError(f'{finding.path}, line {finding.line}: scan {finding.seriesuid} '
                             f'is not in the scan list')
        findings_of[finding.seriesuid].append(finding)
    for mark in candidates:
        if mark.seriesuid not in listed:
            raise ValueError(f'{mark.path}, line {mark.line}: scan {mark.seriesuid} is not in '
                             f'the scan list')
        marks_of[mark.seriesuid].append(mark)
    matches = [match_scan(uid, findings_of.get(uid, []), marks_of.get(uid, []), max_marks)
               for uid in scans]
    entries = froc_entries(matches)
    fps, sens, thresholds = compute_froc(entries)
    points = sensitivities_at(fps, sens)
    num_nodules = sum(len(m.nodules) for m in matches)
    counts = {
        'scans': len(scans),
        'scans_with_nodules': sum(1 for m in matches if m.nodules),
        'nodules': num_nodules,
        'nodules_detected': sum(1 for m in matches for n in m.nodules if n.candidate is not None),
        'excluded_findings': sum(f.excluded for v in findings_of.values() for f in v),
        'candidates': sum(m.num_candidates for m in matches),
        'candidates_kept': sum(m.num_kept for m in matches),
        'candidates_dropped_by_cap': sum(m.num_candidates - m.num_kept for m in matches),
        'false_positives': sum(len(m.false_positives) for m in matches),
        'candidates_on_excluded': sum(m.num_on_excluded for m in matches),
        'double_hits': sum(m.num_double_hits for m in matches),
    }
    result = FrocResult(
        fps=fps, sens=sens, thresholds=thresholds,
        sensitivity={point_key(p): float(s) for p, s in zip(FROC_POINTS, points)},
        cpm=float(np.mean(points)), counts=counts, matches=matches)
    if num_nodules == 0:
        result.warnings.append('no reference nodule in the listed scans: sensitivity and CPM '
                               'are undefined (NaN)')
    if bootstrap_samples:
        result.bootstrap = bootstrap_froc(entries, bootstrap_samples, seed, confidence)
    return result
