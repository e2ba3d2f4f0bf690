"""Plumbing shared by the LUNA16 converters: atomic writes, worker pools with progress
bars, logging, input discovery, scan-level splits and the end-of-run summary.

CT knowledge (geometry, lung mask, windowing, spheres) is *not* here: it is in
:mod:`projects.lung_nodule.ct`, shared with training and inference.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import logging
import math
import os
import re
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Protocol, Sequence, TypeVar

import cv2
import numpy as np
from tqdm import tqdm

from projects.lung_nodule.ct import (CTScan, LungMask, NoduleAnnotation, ScanReadError, find_scans,
                                     read_annotations, read_scan)
from projects.lung_nodule.ct.slice_image import DEFAULT_LUNG_MASK_MODE, LUNG_MASK_MODES
from projects.lung_nodule.evaluation.luna16_inputs import read_findings

__all__ = [
    'SPLITS', 'LunaInputs', 'ResumableJob', 'RunSummary', 'ScanJobBase', 'ScanSource',
    'add_excluded_arg', 'add_input_args', 'add_lung_mask_args', 'add_run_args',
    'add_scan_results', 'add_split_args', 'assign_splits', 'atomic_write_bytes',
    'atomic_write_json', 'atomic_write_text', 'cpu_seconds', 'encode_png', 'file_fingerprint',
    'fingerprint', 'fold_splits', 'load_inputs', 'load_record', 'process_scans',
    'read_excluded', 'read_patient_map', 'read_splits_csv',
    'resolve_lung_mask_mode', 'resume_scans', 'run_cli', 'run_jobs', 'scan_subset',
    'setup_logging', 'splits_for_inputs', 'write_splits_csv',
]

logger = logging.getLogger('data_prep')
_UMASK = os.umask(0)
os.umask(_UMASK)
SPLITS = ('train', 'val', 'test')
_SUBSET_FOLDER = re.compile(r'subset(\d+)')
T = TypeVar('T')
R = TypeVar('R')


# ---------------------------------------------------------------- logging / args
class _TqdmHandler(logging.Handler):
    """Logging through ``tqdm.write`` so that messages do not break progress bars."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # pragma: no cover - logging must never raise
            self.handleError(record)


def setup_logging(verbose: bool = False) -> None:
    """Send the ``data_prep`` logger to stderr through tqdm (idempotent)."""
    if not any(isinstance(h, _TqdmHandler) for h in logger.handlers):
        handler = _TqdmHandler()
        handler.setFormatter(logging.Formatter('%(levelname)s %(message)s'))
        logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f'must be >= 1, got {value}')
    return value


def add_input_args(parser: argparse.ArgumentParser, out: bool = True) -> None:
    """``--luna-root``, ``--annotations`` and (``out``) ``--out``."""
    parser.add_argument('--luna-root', type=Path, required=True,
                        help='LUNA16 root holding subset*/<seriesuid>.mhd (+ .raw)')
    parser.add_argument('--annotations', type=Path, required=True,
                        help='LUNA16 annotations.csv (seriesuid,coordX,coordY,coordZ,diameter_mm; '
                             'world mm)')
    if out:
        parser.add_argument('--out', type=Path, required=True, help='output folder')


def add_split_args(parser: argparse.ArgumentParser) -> None:
    """``--split``, ``--split-seed``, ``--patient-map``."""
    parser.add_argument('--split', type=float, nargs=3, default=(0.6, 0.2, 0.2),
                        metavar=('TRAIN', 'VAL', 'TEST'),
                        help='fractions of scans per split')
    parser.add_argument('--split-seed', type=int, default=0,
                        help='seed of the scan-level split')
    parser.add_argument('--patient-map', type=Path, default=None,
                        help='optional CSV seriesuid,patient_id: scans of one patient stay in one '
                             'split (LUNA16 itself has no patient id)')
    parser.add_argument('--fold', type=int, default=None, metavar='K',
                        help='cross-validation fold K (0-9, the protocol of published LUNA16 '
                             'figures): the scans of subsetK are the test split, the others are '
                             'split into train/val by the TRAIN:VAL ratio of --split and '
                             '--split-seed')


def add_excluded_arg(parser: argparse.ArgumentParser, effect: str) -> None:
    """``--excluded``; ``effect`` says what the tool does with the findings."""
    parser.add_argument('--excluded', type=Path, default=None,
                        help="LUNA16's annotations_excluded.csv, the findings its scoring "
                             f'ignores (a diameter of -1 is taken as 10 mm): {effect}')


def read_excluded(path: Path | None, summary: RunSummary) -> dict[str, list[NoduleAnnotation]]:
    """``annotations_excluded.csv`` by scan (empty without ``--excluded``).

    Read as LUNA16's scoring reads it (:func:`read_findings`: a diameter of -1 means 10 mm);
    every row left out or changed is reported with its file and line.
    """
    if path is None:
        return {}
    findings, problems = read_findings(path, excluded=True)
    for problem in problems:
        summary.warn(f'excluded finding: {problem}')
    by_scan: dict[str, list[NoduleAnnotation]] = {}
    for finding in findings:
        rows = by_scan.setdefault(finding.seriesuid, [])
        rows.append(NoduleAnnotation(finding.seriesuid, finding.coord_xyz, finding.diameter_mm,
                                     finding.line, len(rows)))
    summary.counts['excluded_rows'] = len(findings)
    return by_scan


def add_lung_mask_args(parser: argparse.ArgumentParser, mode_help: str, no_mask_help: str) -> None:
    """``--lung-mask-mode`` and its old spelling ``--no-lung-mask`` (see
    :func:`resolve_lung_mask_mode`)."""
    parser.add_argument('--lung-mask-mode', choices=LUNG_MASK_MODES, default=None, help=mode_help)
    parser.add_argument('--no-lung-mask', action='store_true', help=no_mask_help)


def resolve_lung_mask_mode(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Set ``args.lung_mask_mode`` from ``--no-lung-mask`` or the default; refuse both
    ``--no-lung-mask`` and ``--lung-mask-mode blank``."""
    if args.no_lung_mask and args.lung_mask_mode == 'blank':
        parser.error('--no-lung-mask contradicts --lung-mask-mode blank')
    if args.lung_mask_mode is None:
        args.lung_mask_mode = 'filter' if args.no_lung_mask else DEFAULT_LUNG_MASK_MODE


def add_run_args(parser: argparse.ArgumentParser) -> None:
    """``--workers``, ``--strict``, ``--overwrite``, ``--verbose``."""
    parser.add_argument('--workers', type=_positive_int, default=1,
                        help='parallel worker processes, one scan each')
    parser.add_argument('--strict', action='store_true',
                        help='exit non-zero when any input problem was met (otherwise only when '
                             'nothing could be done)')
    parser.add_argument('--overwrite', action='store_true',
                        help='redo every scan instead of resuming from finished ones')
    parser.add_argument('--verbose', action='store_true', help='debug messages')


# ---------------------------------------------------------------- atomic writes
def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder + rename.

    A reader (or a resumed run) sees either the old file or the whole new one, never a
    partial one; the temporary file is removed if anything fails.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f'.{path.name}.', suffix='.tmp')
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the usual permissions
        with os.fdopen(fd, 'wb') as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """:func:`atomic_write_bytes` for UTF-8 text."""
    atomic_write_bytes(path, text.encode('utf-8'))


def atomic_write_json(path: Path, obj: Any, indent: int | None = None) -> None:
    """:func:`atomic_write_bytes` for JSON."""
    atomic_write_text(path, json.dumps(obj, indent=indent, sort_keys=False))


def encode_png(image: np.ndarray) -> bytes:
    """Encode a 2D uint8 array as an 8-bit single-channel PNG (no resizing)."""
    if image.dtype != np.uint8 or image.ndim != 2:
        raise ValueError(f'expected a 2D uint8 image, got {image.dtype} {image.shape}')
    ok, buffer = cv2.imencode('.png', image)
    if not ok:  # pragma: no cover - cv2 fails only on invalid input
        raise RuntimeError(f'PNG encoding failed for an image of shape {image.shape}')
    return buffer.tobytes()


def fingerprint(obj: Any) -> str:
    """A short stable hash of a JSON-able object (options, inputs) for resuming."""
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def file_fingerprint(mhd_path: Path) -> list:
    """Size and mtime of a ``.mhd`` and its ``.raw``: a re-downloaded scan is redone."""
    out: list = []
    for path in (mhd_path, mhd_path.with_suffix('.raw')):
        try:
            stat = path.stat()
            out.append([path.name, stat.st_size, stat.st_mtime_ns])
        except OSError:
            out.append([path.name, None, None])
    return out


# ---------------------------------------------------------------- workers
def run_jobs(func: Callable[[T], R], jobs: Sequence[T], workers: int, desc: str) -> list[R]:
    """Run ``func`` on every job, in ``workers`` processes, with a progress bar.

    Results come back in job order. ``func`` must catch its own per-job errors (a
    failed scan is a result, not an exception) so that one bad scan never stops a run.
    """
    if not jobs:
        return []
    results: list[R] = [None] * len(jobs)  # type: ignore[list-item]
    if workers <= 1 or len(jobs) == 1:
        with tqdm(total=len(jobs), desc=desc, unit='scan', dynamic_ncols=True, disable=None) as bar:
            for i, job in enumerate(jobs):
                results[i] = func(job)
                bar.update()
        return results
    # The pool is forked before the progress bar exists (no thread in the forked parent).
    context = get_context('spawn' if sys.platform == 'win32' else 'fork')
    with context.Pool(min(workers, len(jobs)), maxtasksperchild=50) as pool:
        indexed = pool.imap_unordered(_call_indexed, [(func, i, job) for i, job in enumerate(jobs)])
        with tqdm(total=len(jobs), desc=desc, unit='scan', dynamic_ncols=True, disable=None) as bar:
            for i, result in indexed:
                results[i] = result
                bar.update()
    return results


def _call_indexed(item: tuple[Callable[[T], R], int, T]) -> tuple[int, R]:
    func, i, job = item
    return i, func(job)


# ---------------------------------------------------------------- one scan, several exports
class ScanSource:
    """A scan read once, and its lung mask made once, for every export of one pass.

    The converters take one (``export_scan(job, source)``); the one-pass command
    (``luna16_prepare.py``) hands the same one to both, so the scan is read and its
    lung mask's 3D steps and shared slices are computed once per scan instead of once
    per export. Both are made on first use, so an export that needs no lung mask
    (``filter`` mode slices) never makes one. A read error is raised again on every
    access (each export records the scan as failed).
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._scan: CTScan | None = None
        self._error: ScanReadError | None = None
        self._lungs: LungMask | None = None

    @property
    def scan(self) -> CTScan:
        """The scan, read on first use (:func:`projects.lung_nodule.ct.read_scan`)."""
        if self._error is not None:
            raise self._error
        if self._scan is None:
            try:
                self._scan = read_scan(self.path)
            except ScanReadError as exc:
                self._error = exc
                raise
        return self._scan

    @property
    def lungs(self) -> LungMask:
        """The scan's lung mask (default parameters), made on first use."""
        if self._lungs is None:
            self._lungs = LungMask(self.scan.array, self.scan.geometry.spacing_xyz)
        return self._lungs


# ---------------------------------------------------------------- summary
@dataclass
class RunSummary:
    """Counts and problems of a run, logged at the end and saved as ``summary.json``."""

    counts: Counter = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)
    skipped_scans: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    def warn(self, message: str) -> None:
        """Record and log a problem that did not stop the run."""
        self.problems.append(message)
        logger.warning(message)

    def skip_scan(self, uid: str, reason: str) -> None:
        """Record a scan that could not be processed."""
        self.skipped_scans[uid] = reason
        logger.warning('skipped scan %s: %s', uid, reason)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready view."""
        return {'counts': dict(sorted(self.counts.items())), 'problems': self.problems,
                'skipped_scans': self.skipped_scans,
                'seconds': {k: round(v, 3) for k, v in self.seconds.items()}}

    def log(self, title: str) -> None:
        """Log the summary block."""
        lines = [f'{title}:'] + [f'  {k}: {v}' for k, v in sorted(self.counts.items())]
        lines += [f'  seconds {k}: {v:.1f}' for k, v in self.seconds.items()]
        lines.append(f'  input problems: {len(self.problems)}')
        if self.skipped_scans:
            lines.append(f'  skipped scans ({len(self.skipped_scans)}):')
            lines += [f'    {uid}: {reason}' for uid, reason in sorted(self.skipped_scans.items())]
        logger.info('\n'.join(lines))

    def exit_code(self, done_anything: bool, strict: bool) -> int:
        """0, or 1 when nothing could be done or (``strict``) when any problem was met."""
        if not done_anything:
            logger.error('nothing could be done')
            return 1
        if strict and (self.problems or self.skipped_scans):
            logger.error('--strict: %d input problems, %d skipped scans',
                         len(self.problems), len(self.skipped_scans))
            return 1
        return 0


@dataclass(frozen=True)
class ScanJobBase:
    """What every converter's per-scan job holds: the scan, its nodules, the output."""

    seriesuid: str
    mhd_path: Path
    nodules: tuple[NoduleAnnotation, ...]
    out_dir: Path

    @property
    def record_path(self) -> Path:
        """The finished scan's record (written last, atomically)."""
        return self.out_dir / '.scans' / f'{self.seriesuid}.json'

    def input_fingerprint(self, **options: Any) -> str:
        """Hash of the scan files, its nodules and ``options``: a change redoes the scan."""
        return fingerprint({'nodules': [(n.coord_xyz, n.diameter_mm, n.index_in_scan)
                                        for n in self.nodules],
                            'files': file_fingerprint(self.mhd_path), **options})


class ResumableJob(Protocol):
    """What :func:`process_scans` needs of a converter's per-scan job."""

    seriesuid: str

    @property
    def record_path(self) -> Path: ...  # noqa: E704

    def fingerprint(self) -> str: ...  # noqa: E704

    def outputs_exist(self, record: dict[str, Any]) -> bool: ...  # noqa: E704


def load_record(job: ResumableJob) -> dict[str, Any] | None:
    """A finished scan's record when it matches the job's inputs and options, else None."""
    try:
        record = json.loads(job.record_path.read_text())
    except (OSError, ValueError):
        return None
    if record.get('fingerprint') != job.fingerprint() or not job.outputs_exist(record):
        return None
    return record


def resume_scans(jobs: Sequence[ResumableJob], overwrite: bool,
                 summary: RunSummary) -> tuple[dict[str, dict], list]:
    """The records of scans already done (unless ``overwrite``) and the jobs still to run."""
    records: dict[str, dict] = {}
    todo = []
    for job in jobs:
        record = None if overwrite else load_record(job)
        if record is not None:
            records[job.seriesuid] = record
        else:
            todo.append(job)
    summary.counts['scans_resumed'] = len(records)
    if records:
        logger.info('resuming: %d of %d scans already done', len(records), len(jobs))
    return records, todo


def add_scan_results(records: dict[str, dict], results: Iterable[dict[str, Any]],
                     summary: RunSummary) -> dict[str, dict]:
    """Add the results of ``work`` to ``records`` (failed scans to ``summary``), then the
    counts and problems of every record to ``summary``; returns ``records``."""
    for result in results:
        if result['status'] == 'done':
            records[result['seriesuid']] = result['record']
        else:
            summary.skip_scan(result['seriesuid'], result['reason'])
    for uid in sorted(records):
        for message in records[uid]['problems']:
            summary.warn(f'{uid}: {message}')
        for key, value in records[uid]['counts'].items():
            summary.counts[key] += value
    summary.counts['scans_processed'] = len(records)
    return records


def process_scans(jobs: Sequence[ResumableJob], work: Callable[[Any], dict[str, Any]],
                  args: argparse.Namespace, summary: RunSummary, desc: str) -> dict[str, dict]:
    """Resume finished scans, run ``work`` on the others (``args.workers`` processes).

    ``work(job)`` returns ``{'seriesuid', 'status': 'done' | 'failed', 'record' | 'reason'}``
    and a record holds ``counts`` and ``problems``, which are added to ``summary``.

    Returns:
        seriesuid -> record of every scan done (now or before).
    """
    records, todo = resume_scans(jobs, args.overwrite, summary)
    start, cpu = time.perf_counter(), cpu_seconds()
    results = run_jobs(work, todo, args.workers, desc=desc)
    summary.seconds['scans'] = time.perf_counter() - start
    summary.seconds['scans_cpu'] = cpu_seconds() - cpu
    return add_scan_results(records, results, summary)


def cpu_seconds() -> float:
    """CPU time (user + system) of this process and of its finished worker processes."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def run_cli(convert: Callable[[argparse.Namespace, RunSummary], bool], args: argparse.Namespace,
            title: str) -> int:
    """Run a converter: logging, timing, ``OUT/summary.json``, the summary, the exit code."""
    setup_logging(args.verbose)
    summary = RunSummary()
    start = time.perf_counter()
    try:
        done = convert(args, summary)
    except (FileNotFoundError, ValueError) as exc:
        logger.error('%s', exc)
        return 1
    summary.seconds['total'] = time.perf_counter() - start
    atomic_write_json(args.out / 'summary.json', summary.as_dict(), indent=1)
    summary.log(f'{title} -> {args.out}')
    return summary.exit_code(done, args.strict)


# ---------------------------------------------------------------- inputs
@dataclass
class LunaInputs:
    """Scans found on disk and the valid nodules of each (missing scans left out)."""

    scans: dict[str, Path]
    nodules: dict[str, list[NoduleAnnotation]]
    num_nodule_rows: int


def load_inputs(luna_root: Path, annotations: Path, summary: RunSummary) -> LunaInputs:
    """Find scans, read the CSV; every problem goes to ``summary`` with file/row named.

    Raises:
        FileNotFoundError / ValueError: The root or the CSV cannot be used at all.
    """
    scans, scan_problems = find_scans(luna_root)
    for message in scan_problems:
        summary.warn(message)
    nodules, row_problems = read_annotations(annotations)
    for problem in row_problems:
        summary.warn(f'bad annotation row, left out: {problem}')
    by_scan: dict[str, list[NoduleAnnotation]] = defaultdict(list)
    for nodule in nodules:
        by_scan[nodule.seriesuid].append(nodule)
    missing = sorted(set(by_scan) - set(scans))
    for uid in missing:
        rows = ', '.join(str(n.line) for n in by_scan[uid])
        summary.warn(f'{annotations}: seriesuid {uid} (line {rows}) has no scan under '
                     f'{luna_root} (subset not downloaded?); its nodules are left out')
    summary.counts['scans_found'] = len(scans)
    summary.counts['nodule_rows_valid'] = len(nodules)
    summary.counts['nodule_rows_bad'] = len(row_problems)
    summary.counts['nodules_without_scan'] = sum(len(by_scan[u]) for u in missing)
    return LunaInputs(scans=scans, nodules={u: by_scan.get(u, []) for u in scans},
                      num_nodule_rows=len(nodules))


# ---------------------------------------------------------------- splits
def read_patient_map(path: Path) -> dict[str, str]:
    """``seriesuid,patient_id`` CSV -> mapping (header required)."""
    mapping: dict[str, str] = {}
    with open(path, newline='', encoding='utf-8-sig') as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or not {'seriesuid', 'patient_id'} <= set(reader.fieldnames):
            raise ValueError(f'{path}: header must contain seriesuid,patient_id, '
                             f'got {reader.fieldnames!r}')
        for row in reader:
            uid, patient = (row['seriesuid'] or '').strip(), (row['patient_id'] or '').strip()
            if not uid or not patient:
                raise ValueError(f'{path}, line {reader.line_num}: empty seriesuid or patient_id')
            mapping[uid] = patient
    return mapping


def _apportion(n: int, fractions: Sequence[float]) -> list[int]:
    """Largest-remainder split of ``n`` items by ``fractions`` (which sum to 1)."""
    raw = [n * f for f in fractions]
    counts = [int(math.floor(r)) for r in raw]
    order = sorted(range(len(raw)), key=lambda i: (-(raw[i] - counts[i]), i))
    for i in order[:n - sum(counts)]:
        counts[i] += 1
    return counts


def assign_splits(uids: Iterable[str], fractions: Sequence[float], seed: int,
                  positive: Iterable[str] = (),
                  patient_map: Mapping[str, str] | None = None) -> dict[str, str]:
    """Scan-level split, deterministic from ``seed`` and the set of scans.

    Scans are grouped by patient (``patient_map``; a scan not in it is its own patient),
    groups with and without nodules (``positive``) are shuffled and apportioned
    separately, so that val/test get nodule scans even on small sets. Every scan gets a
    split and all scans of a patient get the same one.

    Args:
        uids: All scans (with and without nodules).
        fractions: ``(train, val, test)``, non-negative, summing to 1.
        seed: Shuffling seed.
        positive: The scans with at least one nodule.
        patient_map: Optional seriesuid -> patient id.

    Returns:
        seriesuid -> ``'train' | 'val' | 'test'``.
    """
    fractions = [float(f) for f in fractions]
    if len(fractions) != 3 or min(fractions) < 0 or not math.isclose(sum(fractions), 1.0,
                                                                      abs_tol=1e-6):
        raise ValueError(f'split fractions must be 3 non-negative numbers summing to 1, '
                         f'got {fractions}')
    patient_map = patient_map or {}
    groups: dict[str, list[str]] = defaultdict(list)
    for uid in sorted(set(uids)):
        groups[patient_map.get(uid, f'scan:{uid}')].append(uid)
    positive = set(positive)
    rng = np.random.default_rng(seed)
    with_nodules = sorted(g for g, members in groups.items() if any(m in positive for m in members))
    without = sorted(set(groups) - set(with_nodules))
    # Stratified: nodule groups by the fractions, then the others so that the totals
    # follow the fractions too (a 5-scan set still gets a test scan).
    pos_counts = _apportion(len(with_nodules), fractions)
    totals = _apportion(len(groups), fractions)
    neg_counts = [max(0, t - p) for t, p in zip(totals, pos_counts)]
    while sum(neg_counts) > len(without):
        neg_counts[int(np.argmax(neg_counts))] -= 1
    while sum(neg_counts) < len(without):
        neg_counts[int(np.argmax(fractions))] += 1
    out: dict[str, str] = {}
    for names, counts in ((with_nodules, pos_counts), (without, neg_counts)):
        names = [names[i] for i in rng.permutation(len(names))]
        start = 0
        for split, count in zip(SPLITS, counts):
            for name in names[start:start + count]:
                for uid in groups[name]:
                    out[uid] = split
            start += count
    return out


def write_splits_csv(path: Path, splits: Mapping[str, str]) -> None:
    """``seriesuid,split`` for every scan, sorted by seriesuid (atomic)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator='\n')
    writer.writerow(['seriesuid', 'split'])
    for uid in sorted(splits):
        writer.writerow([uid, splits[uid]])
    atomic_write_text(path, buffer.getvalue())


def read_splits_csv(path: Path) -> dict[str, str]:
    """Read a ``splits.csv`` written by :func:`write_splits_csv`."""
    out: dict[str, str] = {}
    with open(path, newline='', encoding='utf-8') as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or not {'seriesuid', 'split'} <= set(reader.fieldnames):
            raise ValueError(f'{path}: header must be seriesuid,split, got {reader.fieldnames!r}')
        for row in reader:
            if row['split'] not in SPLITS:
                raise ValueError(f'{path}, line {reader.line_num}: split must be one of '
                                 f'{SPLITS}, got {row["split"]!r}')
            out[row['seriesuid']] = row['split']
    return out


def splits_for_inputs(inputs: LunaInputs, args: argparse.Namespace, summary: RunSummary,
                      splits_csv: Path | None = None) -> dict[str, str]:
    """The split of every found scan: from ``splits_csv`` when given, else computed.

    Scans found on disk but absent from a given ``splits_csv`` are left out with a
    warning (they were not part of the run that made the file).
    """
    if splits_csv is not None:
        given = read_splits_csv(splits_csv)
        for uid in sorted(set(inputs.scans) - set(given)):
            summary.warn(f'{splits_csv}: scan {uid} has no split; left out')
        for uid in sorted(set(given) - set(inputs.scans)):
            summary.warn(f'{splits_csv}: scan {uid} listed but not found under the LUNA16 root')
        return {uid: split for uid, split in given.items() if uid in inputs.scans}
    patient_map = read_patient_map(args.patient_map) if args.patient_map else None
    if patient_map is not None:
        unmapped = sorted(set(inputs.scans) - set(patient_map))
        if unmapped:
            summary.warn(f'{args.patient_map}: {len(unmapped)} scans have no patient id and are '
                         f'their own patient (first: {unmapped[0]})')
    positive = [uid for uid, nodules in inputs.nodules.items() if nodules]
    if getattr(args, 'fold', None) is not None:
        return fold_splits(inputs.scans, args.fold, args.split, args.split_seed, positive,
                           patient_map, summary)
    return assign_splits(inputs.scans, args.split, args.split_seed, positive, patient_map)


def scan_subset(path: Path) -> int | None:
    """The LUNA16 subset number of a scan file (its ``subsetN`` folder), or None."""
    for part in reversed(Path(path).parent.parts):
        match = _SUBSET_FOLDER.fullmatch(part)
        if match:
            return int(match.group(1))
    return None


def fold_splits(scans: Mapping[str, Path], fold: int, fractions: Sequence[float], seed: int,
                positive: Iterable[str] = (), patient_map: Mapping[str, str] | None = None,
                summary: RunSummary | None = None) -> dict[str, str]:
    """Cross-validation fold ``fold``: the scans of ``subset<fold>`` are the test split.

    LUNA16 results (MONAI, nnDetection, DeepLung) are 10-fold cross-validation over
    ``subset0``-``subset9``, one subset the test set of each fold, and the test
    candidates of all folds pooled into one FROC (``tools/eval_luna16.py`` pools several
    candidate files). The other scans are split into train and val by the train:val
    ratio of ``fractions`` (:func:`assign_splits`, same seed and stratification). Scans
    in no ``subsetN`` folder are left out with a warning.

    Args:
        scans: seriesuid -> ``.mhd`` path (:func:`find_scans`).
        fold: The test subset number.
        fractions: ``(train, val, test)``; only train:val is used.
        seed: Seed of the train/val shuffle.
        positive: Scans with nodules.
        patient_map: Optional seriesuid -> patient id (a patient with scans in the test
            subset and elsewhere is reported: LUNA16 subsets are not split by patient).
        summary: Where warnings go (logged only when None).

    Raises:
        ValueError: No scan in ``subset<fold>``, no scan outside it, or a train:val ratio
            that is 0:0.
    """
    warn = summary.warn if summary is not None else logger.warning
    subset_of = {uid: scan_subset(path) for uid, path in scans.items()}
    unplaced = sorted(uid for uid, subset in subset_of.items() if subset is None)
    if unplaced:
        warn(f'--fold {fold}: {len(unplaced)} scans are in no subsetN folder and are left out '
             f'(first: {scans[unplaced[0]]})')
    test = sorted(uid for uid, subset in subset_of.items() if subset == fold)
    rest = sorted(uid for uid, subset in subset_of.items() if subset is not None and subset != fold)
    if not test:
        found = sorted({s for s in subset_of.values() if s is not None})
        raise ValueError(f'--fold {fold}: no scan under a subset{fold} folder (subsets found: '
                         f'{found or "none"})')
    if not rest:
        raise ValueError(f'--fold {fold}: every scan is in subset{fold}; nothing left to train on')
    train, val = float(fractions[0]), float(fractions[1])
    if train < 0 or val < 0 or train + val <= 0:
        raise ValueError(f'--fold needs a positive TRAIN+VAL in --split, got {list(fractions)}')
    if patient_map:
        test_patients = {patient_map[u] for u in test if u in patient_map}
        shared = sorted(u for u in rest if patient_map.get(u) in test_patients)
        if shared:
            warn(f'--fold {fold}: {len(shared)} scans outside subset{fold} belong to patients '
                 f'with a scan in it (first: {shared[0]})')
    rest_set = set(rest)
    out = assign_splits(rest, (train / (train + val), val / (train + val), 0.0), seed,
                        [u for u in positive if u in rest_set], patient_map)
    out.update({uid: 'test' for uid in test})
    return out
