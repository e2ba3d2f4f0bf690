"""Validation curves of an experiment's runs, one panel per figure, one colour per arm.

Read from mmengine's ``vis_data/scalars.json`` of each training run (the rows the
validation loop writes: ``{"coco/segm_mAP_50": ..., "step": iteration}``), so the plot
shows those runs and nothing else. Thin lines: each seed; thick: the arm's mean over the
seeds at the steps they share.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

__all__ = ['load_val_curve', 'plot_val_curves']


def load_val_curve(scalars_json: Path, key: str) -> tuple[np.ndarray, np.ndarray]:
    """``(steps, values)`` of the validation rows of ``scalars_json`` that carry ``key``.

    Returns empty arrays when the run validated nothing yet.
    """
    steps, values = [], []
    for line in Path(scalars_json).read_text().splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        if key in row and 'loss' not in row:
            steps.append(int(row.get('step', row.get('iter', len(steps)))))
            values.append(float(row[key]))
    return np.asarray(steps, dtype=int), np.asarray(values, dtype=float)


def plot_val_curves(curves: Mapping[str, Sequence[Path]], keys: Sequence[tuple[str, str]],
                    out_png: Path, title: str) -> Path:
    """Plot each arm's validation curves into ``out_png`` (atomic write).

    Args:
        curves: ``{arm: [scalars.json of each seed]}``.
        keys: ``(scalar key, axis label)`` per panel.
        out_png: the figure.
        title: figure title (say what data it shows, e.g. "synthetic data").
    """
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(keys), figsize=(5.5 * len(keys), 4.2), squeeze=False)
    colours = plt.rcParams['axes.prop_cycle'].by_key()['color']
    for ax, (key, label) in zip(axes[0], keys):
        for i, (arm, files) in enumerate(curves.items()):
            colour = colours[i % len(colours)]
            series = [load_val_curve(f, key) for f in files]
            series = [(s, v) for s, v in series if len(s)]
            for steps, values in series:
                ax.plot(steps, values, color=colour, alpha=0.35, linewidth=1, marker='.')
            if series:
                common = sorted(set.intersection(*(set(s.tolist()) for s, _ in series)))
                if common:
                    mean = [np.mean([v[list(s).index(c)] for s, v in series]) for c in common]
                    ax.plot(common, mean, color=colour, linewidth=2.5,
                            label=f'{arm} (n={len(series)})')
        ax.set_xlabel('training step')
        ax.set_ylabel(label)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(loc='lower right', fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_png.with_name(f'.{out_png.stem}.tmp.png')
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    tmp.replace(out_png)
    return out_png
