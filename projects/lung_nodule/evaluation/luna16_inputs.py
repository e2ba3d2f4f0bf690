"""Reading what LUNA16 scoring needs: findings, candidates, the scan list.

The readers follow the official ``noduleCADEvaluationLUNA16.py`` in what they accept
(columns found by header name, extra columns ignored; a finding with a missing or
negative diameter is scored as 10 mm, as the script does for ``annotations_excluded.csv``,
whose diameters are -1) and are stricter where the script would crash or score silently
wrong: a row that cannot be trusted (NaN coordinate or probability, unusable seriesuid,
wrong number of fields) is left out and reported with its file and line, and the rows
that can be scored are scored.

Nothing here imports torch or OpenMMLab.
"""
from __future__ import annotations

import csv
import math
import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from projects.lung_nodule.ct.luna16 import RowProblem, seriesuid_problem

__all__ = ['CANDIDATE_COLUMNS', 'DEFAULT_DIAMETER_MM', 'FINDING_COLUMNS', 'Candidate',
           'Finding', 'read_candidates', 'read_findings', 'read_scan_list',
           'read_split_scans', 'drop_unlisted']

FINDING_COLUMNS = ('seriesuid', 'coordX', 'coordY', 'coordZ')  # + optional diameter_mm
CANDIDATE_COLUMNS = ('seriesuid', 'coordX', 'coordY', 'coordZ', 'probability')
DEFAULT_DIAMETER_MM = 10.0  # the official script's radius for a finding without a size


@dataclass(frozen=True)
class Finding:
    """A reference finding: a row of ``annotations.csv`` or ``annotations_excluded.csv``.

    Attributes:
        seriesuid: The scan.
        coord_xyz: Centre in world mm ``(x, y, z)``.
        diameter_mm: The diameter used for the hit test (10 mm when the file gave a
            missing or negative one, as the official script does).
        excluded: True for a finding of the excluded list (hits on it are ignored).
        path: The file, for messages.
        line: 1-based line in the file (the header is line 1).
        data_row: 1-based data row (header not counted): the value of this finding in a
            reference label volume (INTERFACES section 6).
        annotated_diameter_mm: The diameter as written (``None`` when missing or not a
            number), for size agreement.
    """

    seriesuid: str
    coord_xyz: tuple[float, float, float]
    diameter_mm: float
    excluded: bool
    path: str
    line: int
    data_row: int
    annotated_diameter_mm: float | None

    @property
    def radius_mm(self) -> float:
        """Half the scored diameter."""
        return self.diameter_mm / 2.0


@dataclass(frozen=True)
class Candidate:
    """A CAD mark: one row of a LUNA16 submission file (``candidates.csv``).

    Attributes:
        seriesuid: The scan.
        coord_xyz: Position in world mm ``(x, y, z)``.
        probability: The score.
        path: The file, for messages.
        line: 1-based line in the file.
    """

    seriesuid: str
    coord_xyz: tuple[float, float, float]
    probability: float
    path: str
    line: int


def _header_index(header: Sequence[str], required: Sequence[str], path: Path) -> dict[str, int]:
    names = [h.strip() for h in header]
    missing = [c for c in required if c not in names]
    if missing:
        raise ValueError(f'{path}: missing column(s) {", ".join(missing)} in the header '
                         f'{",".join(names)!r} (need {",".join(required)})')
    return {name: i for i, name in reversed(list(enumerate(names)))}


def _float(cell: str) -> float:
    try:
        return float(cell)
    except ValueError:
        return math.nan


def read_findings(path: str | os.PathLike, excluded: bool = False
                  ) -> tuple[list[Finding], list[RowProblem]]:
    """Read ``annotations.csv`` or ``annotations_excluded.csv`` (LUNA16 columns).

    A missing ``diameter_mm`` column, an empty cell or a negative value means 10 mm (the
    official script's rule; LUNA16's excluded list writes -1); a cell that is not a
    number also gets 10 mm, with a problem reported; 0 is kept (the script then never
    counts a hit: a distance is never below 0) and reported.

    Args:
        path: The CSV.
        excluded: Mark the findings as excluded ones.

    Returns:
        ``(findings, problems)`` in file order; rows in ``problems`` that say "left out"
        are not in ``findings``.

    Raises:
        FileNotFoundError: No such file.
        ValueError: Empty file or a required column missing.
    """
    path = Path(path)
    findings: list[Finding] = []
    problems: list[RowProblem] = []
    with open(path, newline='', encoding='utf-8-sig') as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None:
            raise ValueError(f'{path}: empty file (expected the header '
                             f'{",".join(FINDING_COLUMNS)},diameter_mm)')
        col = _header_index(header, FINDING_COLUMNS, path)
        diameter_col = col.get('diameter_mm')
        for data_row, row in enumerate(reader, start=1):
            line = reader.line_num
            if not row or all(not cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                problems.append(RowProblem(str(path), line, f'expected {len(header)} fields, got '
                                                            f'{len(row)}: {row!r}; left out'))
                continue
            uid = row[col['seriesuid']].strip()
            bad_uid = seriesuid_problem(uid)
            if bad_uid:
                problems.append(RowProblem(str(path), line, f'{bad_uid}; left out'))
                continue
            cells = [row[col[c]] for c in FINDING_COLUMNS[1:]]
            coords = tuple(_float(cell) for cell in cells)
            if not all(math.isfinite(v) for v in coords):
                problems.append(RowProblem(str(path), line, f'coordinates are not finite '
                                                            f'numbers: {cells!r}; left out'))
                continue
            cell = row[diameter_col].strip() if diameter_col is not None else ''
            annotated = _float(cell) if cell else math.nan
            diameter = annotated
            if cell and not math.isfinite(annotated):
                problems.append(RowProblem(str(path), line, f'diameter_mm {cell!r} is not a '
                                                            f'number; scored as '
                                                            f'{DEFAULT_DIAMETER_MM:g} mm'))
            if not math.isfinite(diameter) or diameter < 0:
                diameter = DEFAULT_DIAMETER_MM
            elif diameter == 0:
                problems.append(RowProblem(str(path), line, 'diameter_mm is 0: no candidate can '
                                                            'hit this finding (as in the official '
                                                            'script)'))
            findings.append(Finding(uid, coords, diameter, excluded, str(path), line, data_row,
                                    annotated if math.isfinite(annotated) else None))
    return findings, problems


def read_candidates(paths: Iterable[str | os.PathLike]
                    ) -> tuple[list[Candidate], list[str]]:
    """Read and pool one or more LUNA16 submission files (``candidates.csv``).

    Several files are pooled into one list (the cross-validation protocol: each fold's
    test candidates, one FROC over their union). A file with only a header, or with no
    bytes at all, gives no candidates and a warning (a model that finds nothing writes
    such a file); rows with a NaN/unparseable coordinate or probability, an unusable
    seriesuid or a wrong number of fields are left out with a warning naming file and
    line. A scan found in more than one file is reported (folds should not overlap),
    and its candidates are pooled all the same.

    Args:
        paths: The files.

    Returns:
        ``(candidates, warnings)``, candidates in file order.

    Raises:
        FileNotFoundError: A file does not exist.
        ValueError: A file's header lacks a required column (nothing in it can be read).
    """
    candidates: list[Candidate] = []
    warnings: list[str] = []
    files_of_scan: dict[str, list[str]] = defaultdict(list)
    for path in map(Path, paths):
        with open(path, newline='', encoding='utf-8-sig') as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if header is None:
                warnings.append(f'{path}: empty file (no header, no rows): no candidates read')
                continue
            col = _header_index(header, CANDIDATE_COLUMNS, path)
            count = 0
            for row in reader:
                line = reader.line_num
                if not row or all(not cell.strip() for cell in row):
                    continue
                if len(row) != len(header):
                    warnings.append(f'{path}, line {line}: expected {len(header)} fields, got '
                                    f'{len(row)}: {row!r}; left out')
                    continue
                uid = row[col['seriesuid']].strip()
                bad_uid = seriesuid_problem(uid)
                if bad_uid:
                    warnings.append(f'{path}, line {line}: {bad_uid}; left out')
                    continue
                values = [_float(row[col[c]]) for c in CANDIDATE_COLUMNS[1:]]
                bad = [f'{c}={row[col[c]].strip()!r}' for c, v in zip(CANDIDATE_COLUMNS[1:], values)
                       if not math.isfinite(v)]
                if bad:
                    warnings.append(f'{path}, line {line}: not a finite number: {", ".join(bad)}; '
                                    f'left out')
                    continue
                candidates.append(Candidate(uid, (values[0], values[1], values[2]), values[3],
                                            str(path), line))
                if not files_of_scan[uid] or files_of_scan[uid][-1] != str(path):
                    files_of_scan[uid].append(str(path))
                count += 1
            if count == 0:
                warnings.append(f'{path}: no candidate rows (header only or every row left out)')
    for uid, files in sorted(files_of_scan.items()):
        if len(files) > 1:
            warnings.append(f'scan {uid} has candidates in {len(files)} files '
                            f'({", ".join(files)}); pooled (cross-validation folds should not '
                            f'share a scan)')
    return candidates, warnings


def read_scan_list(path: str | os.PathLike) -> tuple[list[str], list[str]]:
    """A LUNA16 scan list: one seriesuid a line, no header (the first field of a CSV row).

    Returns:
        ``(seriesuids in file order without repeats, warnings)``.

    Raises:
        ValueError: No usable seriesuid in the file.
    """
    path = Path(path)
    uids: list[str] = []
    seen: set[str] = set()
    warnings: list[str] = []
    with open(path, newline='', encoding='utf-8-sig') as handle:
        reader = csv.reader(handle)
        for row in reader:
            line = reader.line_num
            if not row or not row[0].strip():
                continue
            uid = row[0].strip()
            if line == 1 and uid == 'seriesuid':
                continue  # a header although LUNA16's lists have none
            problem = seriesuid_problem(uid)
            if problem:
                warnings.append(f'{path}, line {line}: {problem}; left out')
            elif uid in seen:
                warnings.append(f'{path}, line {line}: seriesuid {uid} listed again; counted once')
            else:
                seen.add(uid)
                uids.append(uid)
    if not uids:
        raise ValueError(f'{path}: no seriesuid in the scan list')
    return uids, warnings


def read_split_scans(paths: Iterable[str | os.PathLike], split: str) -> list[str]:
    """The scans of ``split`` in one or more ``splits.csv`` (``seriesuid,split``).

    Several files are the folds of a cross-validation (each fold's ``splits.csv`` from
    ``luna16_to_coco.py --fold K``): the list is the union of their ``split`` scans.

    Raises:
        ValueError: Bad header, an unknown split value, or no scan in ``split``.
    """
    uids: dict[str, None] = {}
    for path in map(Path, paths):
        with open(path, newline='', encoding='utf-8-sig') as handle:
            reader = csv.DictReader(handle)
            if reader.fieldnames is None or not {'seriesuid', 'split'} <= set(reader.fieldnames):
                raise ValueError(f'{path}: header must be seriesuid,split, got '
                                 f'{reader.fieldnames!r}')
            for row in reader:
                value = (row['split'] or '').strip()
                if value not in ('train', 'val', 'test'):
                    raise ValueError(f'{path}, line {reader.line_num}: split must be train, val '
                                     f'or test, got {value!r}')
                if value == split:
                    uids[(row['seriesuid'] or '').strip()] = None
    if not uids:
        raise ValueError(f'no scan of split {split!r} in {", ".join(map(str, paths))}')
    return list(uids)


def drop_unlisted(rows: Sequence[Finding] | Sequence[Candidate], scans: Iterable[str],
                  what: str) -> tuple[list, list[str]]:
    """Keep the rows whose scan is in ``scans``; one warning per (file, scan) left out.

    The official script reads only the listed scans; a row of another scan is most often
    a wrong list or a wrong file, so it is reported (file, lines) instead of dropped
    silently.
    """
    listed = set(scans)
    kept = []
    dropped: dict[tuple[str, str], list[int]] = defaultdict(list)
    for row in rows:
        if row.seriesuid in listed:
            kept.append(row)
        else:
            dropped[(row.path, row.seriesuid)].append(row.line)
    warnings = []
    for (path, uid), lines in sorted(dropped.items()):
        shown = ', '.join(map(str, lines[:5])) + (f', ... ({len(lines)} rows)' if len(lines) > 5
                                                    else '')
        warnings.append(f'{path}, line {shown}: {what} of scan {uid}, which is not in the scan '
                        f'list; ignored')
    return kept, warnings
