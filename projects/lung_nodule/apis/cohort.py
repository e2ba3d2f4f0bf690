"""Many scans: output folders, shards, resume, the run's ``candidates.csv`` and
``summary.json``.

- **Folder names.** Each input gets ``DIR/<scan id>/``; when two inputs of one run have
  the same scan id (the same series exported twice, two ``scan.nii.gz`` in different
  folders), the second gets ``<scan id>__2``, the third ``__3``, ... in input order.
  Names are assigned over the whole input list before sharding, so every shard agrees.
  A folder that is complete (``done.json``) from a *different* input is never
  overwritten: that input is skipped with a reason.
- **Shards.** ``shard=(K, N)`` takes inputs ``K, K+N, K+2N, ...`` and writes
  ``candidates.K-of-N.csv`` and ``summary.K-of-N.json``; :func:`merge_shards` joins
  them into ``candidates.csv`` and ``summary.json`` (the same files one run writes).
- **Resume.** A scan whose folder has ``done.json`` for the same input *and the same
  model* (:func:`model_fingerprint`: config, checkpoint bytes, reading settings) is not
  run again; its candidates and timings come from the folder. Outputs of another model
  (a checkpoint retrained at the same path) are run again, never mixed into the run.
- **Bad scans** (unreadable, not CT, no lungs, ...) are listed in ``summary.json`` with
  the reason and the run goes on.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
import traceback
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from tqdm import tqdm

from ..ct.io import ScanReadError, find_dicom_series, scan_id_from_path
from .nodule_inferencer import NoduleInferencer, PreparedScan
from .outputs import (atomic_write_text, read_candidates, read_done, summarise_timings,
                      write_candidates, write_scan_outputs)

__all__ = ['RunReport', 'ScanInput', 'merge_shards', 'model_fingerprint', 'plan_inputs',
           'run_scans', 'shard_suffix']

logger = logging.getLogger('lung_nodule.infer')
DUPLICATE_SEPARATOR = '__'


@dataclass(frozen=True)
class ScanInput:
    """One scan to run.

    Attributes:
        path: File or DICOM folder as given.
        series_uid: The DICOM series to read from a folder with several (``--series``).
        folder: Name of its output folder (unique in the run).
    """

    path: Path
    series_uid: str | None
    folder: str


def _expected_scan_id(path: Path, series_uid: str | None) -> str:
    """The scan id ``read_scan`` will give, from names/headers only (no pixel data)."""
    if series_uid:
        return series_uid
    if path.is_dir():
        try:
            series = find_dicom_series(path)
        except ScanReadError:
            series = []
        if len(series) == 1:
            return series[0].uid
    return scan_id_from_path(path)


def plan_inputs(paths: Sequence[str | os.PathLike], series_uid: str | None = None) -> list[ScanInput]:
    """Output folder names for every input, unique over the run (see module docstring)."""
    seen: dict[str, int] = {}
    planned = []
    for raw in paths:
        path = Path(raw)
        scan_id = _expected_scan_id(path, series_uid)
        safe = re.sub(r'[^A-Za-z0-9._-]', '_', scan_id) or 'scan'
        count = seen.get(safe, 0) + 1
        seen[safe] = count
        folder = safe if count == 1 else f'{safe}{DUPLICATE_SEPARATOR}{count}'
        planned.append(ScanInput(path, series_uid, folder))
    return planned


def shard_suffix(shard: tuple[int, int] | None) -> str:
    """``''`` or ``'.K-of-N'`` for the run-level file names of a shard."""
    return '' if shard is None else f'.{shard[0]}-of-{shard[1]}'


@dataclass
class RunReport:
    """What a run did (the content of ``summary.json``)."""

    done: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)

    def as_dict(self, settings: dict[str, Any]) -> dict[str, Any]:
        fresh = [r for r in self.done if not r.get('resumed')]
        return {
            **settings,
            'scans': len(self.done), 'scans_resumed': len(self.done) - len(fresh),
            'scans_skipped': len(self.skipped),
            'nodules': sum(r['nodules'] for r in self.done),
            'candidates': sum(r['candidates'] for r in self.done),
            'seconds_per_scan': (sum(r['seconds'] for r in self.done) / len(self.done)
                                 if self.done else None),
            'seconds_per_stage': summarise_timings(self.done),
            'done': self.done, 'skipped': self.skipped}


def model_fingerprint(files: Sequence[str | os.PathLike], settings: dict[str, Any]) -> str:
    """SHA-256 of the files' bytes (config, checkpoint) and of ``settings`` (JSON).

    The bytes, not paths or times: a checkpoint retrained at the same path is another
    model, and a copied one is the same.
    """
    digest = hashlib.sha256()
    for path in files:
        with open(path, 'rb') as handle:
            for block in iter(lambda: handle.read(1 << 20), b''):
                digest.update(block)
        digest.update(b'\0')
    digest.update(json.dumps(settings, sort_keys=True, default=str).encode())
    return digest.hexdigest()


def _describe(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    known = (ScanReadError, ValueError, FileNotFoundError)
    return text if isinstance(exc, known) else f'{type(exc).__name__}: {text}'


def run_scans(inferencer: NoduleInferencer, inputs: Sequence[ScanInput], out_dir: str | os.PathLike,
              shard: tuple[int, int] | None = None, workers: int = 1, progress: bool = True,
              settings: dict[str, Any] | None = None,
              extra_skipped: Sequence[dict[str, str]] = (),
              model_id: str | None = None) -> RunReport:
    """Run the inferencer on ``inputs`` (this shard's part), write everything, resume.

    Args:
        inferencer: Built once for the run.
        inputs: All inputs of the run, from :func:`plan_inputs` (the shard is taken here).
        out_dir: ``DIR``.
        shard: ``(K, N)``: every N-th input from K; ``None`` = all.
        workers: Threads that read scans and compute lung masks ahead of the network
            (0: all in this thread).
        progress: Progress bars over scans and slices.
        settings: Recorded at the top of ``summary.json`` (config, checkpoint, ...).
        extra_skipped: Inputs the caller could not even find (``{'input', 'reason'}``);
            reported by the first shard only, so that merged shards list them once.
        model_id: :func:`model_fingerprint` of what makes the outputs, kept in each
            ``done.json``; a finished folder with another one is run again.

    Returns:
        The report; ``candidates[.K-of-N].csv`` and ``summary[.K-of-N].json`` are written.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if shard is not None:
        k, n = shard
        if not (n >= 1 and 0 <= k < n):
            raise ValueError(f'shard must be K/N with 0 <= K < N, got {k}/{n}')
        inputs = list(inputs)[k::n]
    report = RunReport()
    if shard is None or shard[0] == 0:
        report.skipped += [dict(item) for item in extra_skipped]
    todo: list[ScanInput] = []
    for item in inputs:
        record = read_done(out_dir / item.folder)
        if record is None:
            todo.append(item)
        elif record.get('source') != str(item.path):
            report.skipped.append({'input': str(item.path), 'reason': (
                f'{out_dir / item.folder} already holds the outputs of {record.get("source")}; '
                'not overwritten (use another --out)')})
        elif model_id is not None and record.get('model_id') != model_id:
            logger.info('%s: made by another model or settings; run again',
                        out_dir / item.folder)
            todo.append(item)
        else:
            report.done.append(dict(record, resumed=True))
    logger.info('%d scans to run, %d already done', len(todo), len(report.done))
    pool = ThreadPoolExecutor(max_workers=workers) if workers > 0 else None
    pending: dict[int, Future] = {}  # scans being prepared ahead of the network
    bar = tqdm(total=len(todo), desc='scans', unit='scan', disable=not progress)
    try:
        for index, item in enumerate(todo):
            if pool is not None:
                for j in range(index, min(len(todo), index + workers + 1)):
                    if j not in pending:
                        pending[j] = pool.submit(inferencer.prepare, todo[j].path,
                                                 todo[j].series_uid)
            try:
                prepared: PreparedScan = (
                    pending.pop(index).result() if pool is not None
                    else inferencer.prepare(item.path, item.series_uid))
                result = inferencer.run(prepared, progress=progress)
                record = write_scan_outputs(
                    result, out_dir / item.folder, inferencer.score_thr, str(item.path),
                    extra=None if model_id is None else {'model_id': model_id})
                report.done.append(record)
                logger.info('%s: %d nodules, %d candidates, %.1f s', item.path,
                            record['nodules'], record['candidates'], record['seconds'])
            except Exception as exc:  # noqa: BLE001  one bad scan does not stop the others
                logger.error('%s: skipped: %s', item.path, _describe(exc))
                logger.debug('%s', traceback.format_exc())
                report.skipped.append({'input': str(item.path), 'reason': _describe(exc)})
            bar.update(1)
    finally:
        bar.close()
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
    suffix = shard_suffix(shard)
    rows = []
    for record in report.done:
        rows += read_candidates(out_dir / record['folder'] / 'candidates.csv')
    write_candidates(rows, out_dir / f'candidates{suffix}.csv')
    summary = report.as_dict({**(settings or {}), 'shard': None if shard is None else list(shard),
                              'finished': time.strftime('%Y-%m-%dT%H:%M:%S%z')})
    atomic_write_text(out_dir / f'summary{suffix}.json', json.dumps(summary, indent=1) + '\n')
    return report


_SHARD_FILE = re.compile(r'^candidates\.(\d+)-of-(\d+)\.csv$')


def merge_shards(out_dir: str | os.PathLike) -> tuple[Path, int]:
    """Join ``candidates.K-of-N.csv`` and ``summary.K-of-N.json`` of all N shards into
    ``candidates.csv`` and ``summary.json``.

    Returns:
        ``(path of candidates.csv, number of rows)``.

    Raises:
        FileNotFoundError: No shard files, or a shard of the N is missing (named).
        ValueError: Shard files of different N in one folder.
    """
    out_dir = Path(out_dir)
    found = {}
    for path in out_dir.iterdir():
        match = _SHARD_FILE.match(path.name)
        if match:
            found[(int(match.group(1)), int(match.group(2)))] = path
    if not found:
        raise FileNotFoundError(f'{out_dir}: no candidates.K-of-N.csv shard files')
    totals = {n for _, n in found}
    if len(totals) != 1:
        raise ValueError(f'{out_dir}: shard files of different N: {sorted(totals)}')
    n = totals.pop()
    missing = [k for k in range(n) if (k, n) not in found]
    if missing:
        raise FileNotFoundError(f'{out_dir}: shards {missing} of {n} have no '
                                f'candidates.K-of-{n}.csv (not finished?)')
    rows = []
    summaries = []
    for k in range(n):
        rows += read_candidates(found[(k, n)])
        summary_path = out_dir / f'summary.{k}-of-{n}.json'
        if not summary_path.is_file():
            raise FileNotFoundError(f'{summary_path}: missing (shard {k} not finished?)')
        with open(summary_path, encoding='utf-8') as handle:
            summaries.append(json.load(handle))
    target = out_dir / 'candidates.csv'
    count = write_candidates(rows, target)
    report = RunReport(done=[r for s in summaries for r in s['done']],
                       skipped=[r for s in summaries for r in s['skipped']])
    settings = {k: v for k, v in summaries[0].items()
                if k not in RunReport().as_dict({}) and k not in ('shard', 'finished')}
    merged = report.as_dict({**settings, 'shard': None, 'merged_from': n,
                             'finished': time.strftime('%Y-%m-%dT%H:%M:%S%z')})
    atomic_write_text(out_dir / 'summary.json', json.dumps(merged, indent=1) + '\n')
    return target, count
