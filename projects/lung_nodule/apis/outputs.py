"""What whole-scan inference writes for one scan, and the run-level candidate tables.

Per scan, in ``DIR/<folder>/`` (``<folder>`` = the scan id, see ``cohort``):

- ``nodules.csv`` / ``nodules.json``: one row per nodule a person reads (probability >=
  the reading threshold), columns ``ct.measure.NODULE_COLUMNS``, ``nodule_id`` = 1 for
  the most probable;
- ``nodules.nii.gz``: label volume with the scan's exact size, origin, spacing and
  direction, voxel value = ``nodule_id`` (0 = background);
- ``nodules.seg.dcm``: for a DICOM input with at least one nodule, a DICOM SEG that
  references the source series, one segment per ``nodule_id``;
- ``nodule_<id>.png``: one picture per nodule (``nodule_png``);
- ``candidates.csv``: every candidate of the scan (down to the model's test
  ``score_thr``, at most ``MAX_CANDIDATES``) in LUNA16's submission format -- the
  run-level ``candidates.csv`` is put together from these, so a resumed run still has
  the scans it skipped;
- ``done.json``: written last, the marker that the folder is complete (with the scan's
  timings and what was used).

The folder is written under a hidden temporary name and renamed into place when
complete: a killed run leaves no half-written folder that looks done.
"""
from __future__ import annotations

import csv
import io
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import SimpleITK as sitk

from ..ct.measure import NODULE_COLUMNS, write_nodule_table
from .nodule_inferencer import ScanResult
from .nodule_png import render_nodule_png

__all__ = ['CANDIDATE_COLUMNS', 'DONE_MARKER', 'atomic_write_text', 'candidate_rows',
           'read_candidates', 'read_done', 'summarise_timings', 'write_candidates',
           'write_scan_outputs']

CANDIDATE_COLUMNS = ('seriesuid', 'coordX', 'coordY', 'coordZ', 'probability')
DONE_MARKER = 'done.json'


def atomic_write_text(path: Path, text: str) -> None:
    """Write through a temporary file in the same folder + rename (never half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f'.{path.name}.', suffix='.tmp')
    try:
        with os.fdopen(fd, 'w', encoding='utf-8', newline='') as handle:
            handle.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def candidate_rows(result: ScanResult) -> list[dict[str, Any]]:
    """LUNA16 submission rows of every candidate of a scan (most probable first)."""
    rows = []
    for nodule in result.candidates:
        row = nodule.measurement.as_row(nodule.probability)
        rows.append({'seriesuid': result.scan_id, 'coordX': row['coordX'],
                     'coordY': row['coordY'], 'coordZ': row['coordZ'],
                     'probability': nodule.probability})
    return rows


def write_candidates(rows: Iterable[dict[str, Any]], path: Path) -> int:
    """``seriesuid,coordX,coordY,coordZ,probability``, sorted by seriesuid then
    probability (descending), so that shards merge into exactly one run's file."""
    ordered = sorted(rows, key=lambda r: (str(r['seriesuid']), -float(r['probability']),
                                          float(r['coordX']), float(r['coordY']),
                                          float(r['coordZ'])))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator='\n')
    writer.writerow(CANDIDATE_COLUMNS)
    for row in ordered:
        writer.writerow([row['seriesuid']] + [repr(float(row[c])) for c in CANDIDATE_COLUMNS[1:]])
    atomic_write_text(path, buffer.getvalue())
    return len(ordered)


def read_candidates(path: Path) -> list[dict[str, Any]]:
    """Rows of a candidates file written by :func:`write_candidates`."""
    with open(path, newline='', encoding='utf-8') as handle:
        reader = csv.DictReader(handle)
        if tuple(reader.fieldnames or ()) != CANDIDATE_COLUMNS:
            raise ValueError(f'{path}: header must be {",".join(CANDIDATE_COLUMNS)}, '
                             f'got {reader.fieldnames!r}')
        return [dict(row, **{c: float(row[c]) for c in CANDIDATE_COLUMNS[1:]}) for row in reader]


def read_done(scan_dir: Path) -> dict[str, Any] | None:
    """The ``done.json`` record of a complete scan folder, or ``None``."""
    marker = Path(scan_dir) / DONE_MARKER
    if not marker.is_file():
        return None
    with open(marker, encoding='utf-8') as handle:
        return json.load(handle)


def _label_image(labels: np.ndarray, result: ScanResult) -> sitk.Image:
    image = sitk.GetImageFromArray(labels)
    geometry = result.geometry
    image.SetSpacing(geometry.spacing_xyz)
    image.SetOrigin(geometry.origin_xyz)
    image.SetDirection(geometry.direction)
    return image


def write_scan_outputs(result: ScanResult, scan_dir: Path, score_thr: float,
                       source: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write every per-scan output of ``result`` into ``scan_dir`` (see module docstring).

    Args:
        result: The inferencer's result.
        scan_dir: The scan's folder (replaced if it exists without a ``done.json``).
        score_thr: Reading threshold: what goes into nodules.*, the label volume, the
            PNGs and the SEG.
        source: The input as given (recorded in ``done.json``).
        extra: More fields for ``done.json``.

    Returns:
        The ``done.json`` record.
    """
    start = time.perf_counter()
    scan_dir = Path(scan_dir)
    scan_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=scan_dir.parent, prefix=f'.{scan_dir.name}.partial-'))
    try:
        readable = result.readable(score_thr)
        lut = np.zeros(len(result.candidates) + 2 + max((n.label for n in result.candidates),
                                                        default=0), dtype=np.uint8)
        rows = []
        for new_id, nodule in enumerate(readable, start=1):
            lut[nodule.label] = new_id
            row = nodule.measurement.as_row(nodule.probability)
            row['nodule_id'] = new_id
            rows.append({c: row[c] for c in NODULE_COLUMNS})
        write_nodule_table(rows, tmp / 'nodules.csv', tmp / 'nodules.json')
        labels = lut[result.labels]
        sitk.WriteImage(_label_image(labels, result), str(tmp / 'nodules.nii.gz'),
                        useCompression=True)
        files = ['nodules.csv', 'nodules.json', 'nodules.nii.gz']
        # DICOM: the series' files (a folder, or one file of the series, was given)
        is_dicom = tuple(result.scan.source_files) != (Path(result.scan.path),)
        if is_dicom and readable:
            from .dicom_seg import write_dicom_seg  # highdicom only for DICOM inputs
            write_dicom_seg(labels, result.scan.source_files, tmp / 'nodules.seg.dcm')
            files.append('nodules.seg.dcm')
        spacing_xy = result.geometry.spacing_xyz[:2]
        for new_id, nodule in enumerate(readable, start=1):
            m = nodule.measurement
            z = int(m.long_axis_slice)
            png = render_nodule_png(
                result.scan.array[z], labels[z] == new_id, spacing_xy,
                long_axis=m.long_axis_rc, short_axis=m.short_axis_rc,
                long_axis_mm=m.long_axis_mm, short_axis_mm=m.short_axis_mm,
                probability=nodule.probability, nodule_id=new_id, z_index=z,
                slice_range=(int(m.slice_first), int(m.slice_last)))
            (tmp / f'nodule_{new_id}.png').write_bytes(png)
            files.append(f'nodule_{new_id}.png')
        write_candidates(candidate_rows(result), tmp / 'candidates.csv')
        files.append('candidates.csv')
        timings = dict(result.timings)
        timings['write'] = time.perf_counter() - start
        record = {
            'scan_id': result.scan_id, 'source': source, 'folder': scan_dir.name,
            'nodules': len(readable), 'candidates': len(result.candidates),
            'score_thr': score_thr, 'model_score_thr': result.model_score_thr,
            'lung_mask_mode': result.lung_mask_mode,
            'slices_used': {'count': len(result.slices_used),
                            'first': min(result.slices_used, default=None),
                            'last': max(result.slices_used, default=None)},
            'resampling': None if result.resampling is None else result.resampling.as_dict(),
            'seconds': sum(timings.values()), 'timings': timings, 'files': files,
            **(extra or {})}
        atomic_write_text(tmp / DONE_MARKER, json.dumps(record, indent=1) + '\n')
        os.chmod(tmp, 0o755)  # mkdtemp makes it 0700
        if scan_dir.exists():  # an incomplete folder (no marker) from a killed run
            shutil.rmtree(scan_dir)
        os.rename(tmp, scan_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return record


def summarise_timings(records: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Mean seconds per stage over scan records (``done.json``)."""
    if not records:
        return {}
    stages = sorted({s for r in records for s in r['timings']})
    return {s: float(np.mean([r['timings'].get(s, 0.0) for r in records])) for s in stages}
