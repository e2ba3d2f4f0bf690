"""Tables of a multi-seed experiment: mean, standard deviation and every seed, per arm.

Each run of an experiment writes ``RUN/metrics.json`` (see ``tools/experiments/_runner.py``):
``{"arm", "seed", "run_dir", "figures": {key: value | null}, "missing": {key: reason}}``.
The tables here are made from those files only, so every figure in them can be traced to
the run directory listed beside it; a figure a run could not measure is shown as "n/a" and
its reason given under the table, never left out silently.
"""
from __future__ import annotations

import json
import math
import os
import re
import statistics
from pathlib import Path
from typing import Mapping, Sequence

__all__ = ['FIGURE_DIGITS', 'format_figure', 'load_runs', 'per_run_table', 'replace_section',
           'summary_table']

#: Decimals of every figure in the tables (the per-run table's values are the files'
#: values rounded to this, which the test checks).
FIGURE_DIGITS = 4


def format_figure(value: float | None) -> str:
    """A figure as the tables print it ('n/a' for an unmeasured one)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return 'n/a'
    return f'{value:.{FIGURE_DIGITS}f}'


def load_runs(run_dirs: Sequence[Path]) -> list[dict]:
    """The ``metrics.json`` of each run directory that has one (unfinished runs are left out).

    Raises:
        ValueError: naming the file, when one lacks ``arm``, ``seed`` or ``figures``.
    """
    runs = []
    for run_dir in run_dirs:
        path = Path(run_dir) / 'metrics.json'
        if not path.exists():
            continue
        data = json.loads(path.read_text())
        for key in ('arm', 'seed', 'figures'):
            if key not in data:
                raise ValueError(f'{path}: no "{key}" (not written by tools/experiments)')
        data.setdefault('missing', {})
        data['metrics_file'] = str(path)
        runs.append(data)
    return runs


def _values(runs: Sequence[dict], arm: str, key: str) -> list[tuple[int, float | None]]:
    return sorted((int(r['seed']), r['figures'].get(key)) for r in runs if r['arm'] == arm)


def summary_table(runs: Sequence[dict], arms: Sequence[str],
                  figures: Sequence[tuple[str, str]]) -> str:
    """Markdown: one row per figure, one column per arm, ``mean ± sd (seed values)``.

    The standard deviation is the sample one (n - 1); with one seed there is none ('-').
    Unmeasured seeds are 'n/a' in the list and left out of mean and sd.

    Args:
        runs: from :func:`load_runs`.
        arms: column order (an arm without finished runs shows 'no run').
        figures: ``(key in figures, label)`` in row order.
    """
    lines = ['| figure | ' + ' | '.join(arms) + ' |', '|---|' + '---|' * len(arms)]
    for key, label in figures:
        cells = []
        for arm in arms:
            values = _values(runs, arm, key)
            if not values:
                cells.append('no run')
                continue
            measured = [v for _, v in values if v is not None and not math.isnan(v)]
            seeds = ', '.join(f's{s}: {format_figure(v)}' for s, v in values)
            if not measured:
                cells.append(f'n/a ({seeds})')
                continue
            mean = format_figure(statistics.fmean(measured))
            sd = format_figure(statistics.stdev(measured)) if len(measured) > 1 else '-'
            cells.append(f'**{mean}** ± {sd} ({seeds})')
        lines.append(f'| {label} | ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def per_run_table(runs: Sequence[dict], figures: Sequence[tuple[str, str]],
                  relative_to: Path | None = None) -> str:
    """Markdown: one row per run (arm, seed, its directory) with every figure, then the
    reasons of the unmeasured ones as a list."""
    lines = ['| arm | seed | ' + ' | '.join(label for _, label in figures) + ' | run dir |',
             '|---|---|' + '---|' * (len(figures) + 1)]
    notes = []
    for run in sorted(runs, key=lambda r: (r['arm'], int(r['seed']))):
        run_dir = Path(run['run_dir'])
        if relative_to is not None:
            try:
                run_dir = Path(os.path.relpath(run_dir, relative_to))
            except ValueError:
                pass
        cells = [format_figure(run['figures'].get(key)) for key, _ in figures]
        lines.append(f"| {run['arm']} | {run['seed']} | " + ' | '.join(cells)
                     + f' | `{run_dir}` |')
        for key, reason in sorted(run['missing'].items()):
            notes.append(f"- {run['arm']} seed {run['seed']}: {key} not measured: {reason}")
    return '\n'.join(lines + ([''] + notes if notes else []))


def replace_section(path: Path, marker: str, body: str) -> None:
    """Put ``body`` between ``<!-- marker:begin -->`` and ``<!-- marker:end -->`` in ``path``.

    A re-run replaces its own section and nothing else; the first run appends it (and
    creates the file). Written to a temporary name and renamed.

    Raises:
        ValueError: when the file has one marker without the other, or either twice.
    """
    if not re.fullmatch(r'[\w.-]+', marker):
        raise ValueError(f'marker {marker!r}: use letters, digits, "_", "-" or "."')
    path = Path(path)
    begin, end = f'<!-- {marker}:begin -->', f'<!-- {marker}:end -->'
    text = path.read_text() if path.exists() else ''
    section = f'{begin}\n{body.rstrip()}\n{end}'
    counts = (text.count(begin), text.count(end))
    if counts == (0, 0):
        text = (text.rstrip('\n') + '\n\n' if text.strip() else '') + section + '\n'
    elif counts == (1, 1) and text.index(begin) < text.index(end):
        head, rest = text.split(begin, 1)
        text = head + section + rest.split(end, 1)[1]
    else:
        raise ValueError(f'{path}: markers of section "{marker}" are broken '
                         f'({counts[0]} begin, {counts[1]} end); fix the file by hand')
    tmp = path.with_name(f'.{path.name}.tmp')
    tmp.write_text(text)
    tmp.replace(path)

