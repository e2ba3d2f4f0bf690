"""The LUNA16 layout: ``subset*/<seriesuid>.mhd`` scans and ``annotations.csv``.

``annotations.csv`` has the columns ``seriesuid,coordX,coordY,coordZ,diameter_mm``: a
nodule centre in **world** millimetres (x, y, z) and its diameter. Reading it is shared
by the converters and by evaluation, and is strict about every row: a row that cannot be
trusted is reported (with its line number and the bad value) and left out, never guessed.
"""
from __future__ import annotations

import csv
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

__all__ = ['ANNOTATION_COLUMNS', 'NoduleAnnotation', 'RowProblem', 'find_scans',
           'read_annotations', 'seriesuid_problem']

ANNOTATION_COLUMNS = ('seriesuid', 'coordX', 'coordY', 'coordZ', 'diameter_mm')
# DICOM UIDs are digits and dots; we also accept letters, '_' and '-' (renamed copies),
# but nothing that could act as a path (separators, '..', leading dot).
_SAFE_UID = re.compile(r'^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$')


@dataclass(frozen=True)
class NoduleAnnotation:
    """One row of ``annotations.csv``.

    Attributes:
        seriesuid: The scan.
        coord_xyz: Centre in world mm, ``(x, y, z)``.
        diameter_mm: Annotated diameter (the sphere's radius is half of it).
        line: 1-based line number in the CSV (the header is line 1), for messages.
        index_in_scan: 0-based rank of this nodule among its scan's rows, in file order;
            with ``seriesuid`` it gives the stable ``nodule_id``.
    """

    seriesuid: str
    coord_xyz: tuple[float, float, float]
    diameter_mm: float
    line: int
    index_in_scan: int

    @property
    def radius_mm(self) -> float:
        """Half the diameter."""
        return self.diameter_mm / 2.0

    @property
    def nodule_id(self) -> str:
        """``<seriesuid>_<index_in_scan>``: the same on every slice of the nodule."""
        return f'{self.seriesuid}_{self.index_in_scan}'


@dataclass(frozen=True)
class RowProblem:
    """A CSV row that was left out, and why."""

    path: str
    line: int
    message: str

    def __str__(self) -> str:
        return f'{self.path}, line {self.line}: {self.message}'


def seriesuid_problem(uid: str) -> str | None:
    """Why ``uid`` cannot be used as a series id / file name, or ``None`` when it can."""
    if not uid:
        return 'empty seriesuid'
    if '/' in uid or '\\' in uid or os.sep in uid or (os.altsep and os.altsep in uid):
        return f'seriesuid {uid!r} contains a path separator'
    if not _SAFE_UID.match(uid) or '..' in uid:
        return f'seriesuid {uid!r} has characters other than letters, digits, ".", "_", "-"'
    return None


def read_annotations(path: str | os.PathLike) -> tuple[list[NoduleAnnotation], list[RowProblem]]:
    """Read ``annotations.csv`` (LUNA16 format), keeping only rows that can be trusted.

    Rows are left out, with a :class:`RowProblem` naming the line and the value, when
    they have the wrong number of fields, a coordinate that is not a finite number, a
    diameter that is not a finite positive number, or an unusable seriesuid.

    Args:
        path: The CSV.

    Returns:
        ``(nodules, problems)`` in file order.

    Raises:
        FileNotFoundError: No such file.
        ValueError: The header is not LUNA16's (then no row can be interpreted).
    """
    path = Path(path)
    nodules: list[NoduleAnnotation] = []
    problems: list[RowProblem] = []
    per_scan: dict[str, int] = {}
    with open(path, newline='', encoding='utf-8-sig') as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None or tuple(h.strip() for h in header) != ANNOTATION_COLUMNS:
            raise ValueError(f'{path}: header must be {",".join(ANNOTATION_COLUMNS)}, '
                             f'got {header!r}')
        for row in reader:
            line = reader.line_num
            if not row or all(not cell.strip() for cell in row):
                continue
            if len(row) != len(ANNOTATION_COLUMNS):
                problems.append(RowProblem(str(path), line, f'expected {len(ANNOTATION_COLUMNS)} '
                                                            f'fields, got {len(row)}: {row!r}'))
                continue
            uid = row[0].strip()
            bad_uid = seriesuid_problem(uid)
            if bad_uid:
                problems.append(RowProblem(str(path), line, bad_uid))
                continue
            values = []
            for name, cell in zip(ANNOTATION_COLUMNS[1:], row[1:]):
                try:
                    value = float(cell)
                except ValueError:
                    value = math.nan
                values.append(value)
                if not math.isfinite(value):
                    problems.append(RowProblem(str(path), line, f'{name} is not a finite number: '
                                                                f'{cell.strip()!r}'))
                    break
            else:
                if values[3] <= 0:
                    problems.append(RowProblem(str(path), line,
                                               f'diameter_mm must be positive, got {values[3]!r}'))
                    continue
                index = per_scan.get(uid, 0)
                per_scan[uid] = index + 1
                nodules.append(NoduleAnnotation(uid, (values[0], values[1], values[2]),
                                                values[3], line, index))
    return nodules, problems


def find_scans(luna_root: str | os.PathLike) -> tuple[dict[str, Path], list[str]]:
    """Find ``<seriesuid>.mhd`` files under ``luna_root`` (``subset*/`` or any depth).

    Args:
        luna_root: The LUNA16 root (or one ``subsetN`` folder).

    Returns:
        ``({seriesuid: path}, problems)``; a seriesuid found twice keeps the first path
        (sorted) and is reported.

    Raises:
        FileNotFoundError: ``luna_root`` is not a directory.
    """
    root = Path(luna_root)
    if not root.is_dir():
        raise FileNotFoundError(f'LUNA16 root {root} is not a directory')
    scans: dict[str, Path] = {}
    problems: list[str] = []
    for path in sorted(root.rglob('*.mhd')):
        if any(part.startswith('.') for part in path.relative_to(root).parts):
            continue  # temporary/hidden folders (e.g. an interrupted write)
        uid = path.stem
        if uid in scans:
            problems.append(f'{path}: seriesuid {uid} also at {scans[uid]}; using the latter')
            continue
        scans[uid] = path
    return scans, problems
