"""The LUNA16 evaluation's pictures: the FROC curve and the Bland-Altman plot.

Drawn on matplotlib's Agg canvas directly (no pyplot, no display, no global state) and
returned as PNG bytes, so the caller writes them atomically.
"""
from __future__ import annotations

import io
from typing import Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .froc import FROC_POINTS, FrocResult
from .size_agreement import MEASURES, SIZE_BANDS, SizePair

__all__ = ['bland_altman_png', 'froc_png']

_BAND_COLOURS = {'<6': '#1b9e77', '6-8': '#d95f02', '8-15': '#7570b3', '>=15': '#e7298a'}


def _png(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format='png', dpi=120)
    return buffer.getvalue()


def froc_png(result: FrocResult, title: str) -> bytes:
    """The FROC curve (log2 FP axis, 1/8 .. 8), its bootstrap band, the seven points.

    Args:
        result: The evaluation.
        title: Figure title (says which protocol the figures come from).
    """
    fig = Figure(figsize=(7.0, 5.2))
    ax = fig.add_subplot(1, 1, 1)
    grid = np.geomspace(FROC_POINTS[0], FROC_POINTS[-1], 400)
    ax.plot(grid, np.interp(grid, result.fps, result.sens), color='tab:blue', lw=2,
            label=f'FROC (CPM {result.cpm:.3f})')
    boot = result.bootstrap
    if boot is not None:
        ax.fill_between(boot.band_fps, boot.band_low, boot.band_high, color='tab:blue',
                        alpha=0.18, lw=0,
                        label=f'{boot.confidence:.0%} bootstrap band ({boot.samples} samples)')
    sens = [result.sensitivity[k] for k in result.sensitivity]
    ax.plot(FROC_POINTS, sens, 'o', color='tab:red', ms=6, zorder=3, label='1/8 .. 8 FP/scan')
    for x, y in zip(FROC_POINTS, sens):
        ax.annotate(f'{y:.3f}', (x, y), textcoords='offset points', xytext=(0, 8), ha='center',
                    fontsize=8, color='tab:red', zorder=4,
                    bbox=dict(boxstyle='round,pad=0.1', fc='white', ec='none', alpha=0.8))
    ax.set_xscale('log', base=2)
    ax.set_xticks(FROC_POINTS)
    ax.set_xticklabels(['1/8', '1/4', '1/2', '1', '2', '4', '8'])
    ax.set_xlim(FROC_POINTS[0] / 1.15, FROC_POINTS[-1] * 1.15)
    ax.set_ylim(0.0, 1.05)
    ax.set_yticks(np.arange(0.0, 1.01, 0.1))
    ax.grid(True, which='both', alpha=0.3)
    ax.set_xlabel('Average number of false positives per scan')
    ax.set_ylabel('Sensitivity')
    counts = result.counts
    ax.set_title(f'{title}\n{counts["nodules"]} nodules, {counts["scans"]} scans, '
                 f'{counts["candidates_kept"]} candidates', fontsize=10)
    ax.legend(loc='lower right', fontsize=8)
    fig.tight_layout()
    return _png(fig)


def bland_altman_png(pairs: Sequence[SizePair], title: str, reference_label: str) -> bytes:
    """One Bland-Altman panel per measure: difference vs mean, coloured by size band.

    Args:
        pairs: The paired nodules (an empty list draws empty panels saying so).
        title: Figure title.
        reference_label: What the reference is (e.g. ``'annotated diameter_mm'``).
    """
    fig = Figure(figsize=(13.5, 4.6))
    axes = [fig.add_subplot(1, len(MEASURES), i + 1) for i in range(len(MEASURES))]
    for ax, measure in zip(axes, MEASURES):
        pred = np.array([p.predicted[measure] for p in pairs], dtype=np.float64)
        ref = np.array([p.reference[measure] for p in pairs], dtype=np.float64)
        mean, diff = (pred + ref) / 2.0, pred - ref
        for band, _, _ in SIZE_BANDS:
            sel = np.array([p.band == band for p in pairs], dtype=bool)
            if sel.any():
                ax.scatter(mean[sel], diff[sel], s=22, color=_BAND_COLOURS[band], alpha=0.85,
                           label=f'{band} mm (n={int(sel.sum())})')
        if diff.size:
            bias = float(diff.mean())
            lines = [(bias, f'bias {bias:+.2f} mm', '-')]
            if diff.size > 1:
                sd = float(diff.std(ddof=1))
                lines += [(bias + 1.96 * sd, f'+1.96 SD {bias + 1.96 * sd:+.2f}', '--'),
                          (bias - 1.96 * sd, f'-1.96 SD {bias - 1.96 * sd:+.2f}', '--')]
            for y, text, style in lines:
                ax.axhline(y, color='k', lw=1, ls=style)
                # the line's label at its right end, on a white box so that no line crosses it
                ax.annotate(text, (1.0, y), xycoords=('axes fraction', 'data'), xytext=(-3, 2),
                            textcoords='offset points', ha='right', va='bottom', fontsize=7,
                            bbox=dict(boxstyle='round,pad=0.15', fc='white', ec='none',
                                      alpha=0.85))
            low = min(float(diff.min()), *(y for y, _, _ in lines))
            high = max(float(diff.max()), *(y for y, _, _ in lines))
            margin = 0.12 * max(high - low, 1.0)
            ax.set_ylim(low - margin, high + 1.5 * margin)
        else:
            ax.text(0.5, 0.5, 'no reported nodule paired', transform=ax.transAxes, ha='center',
                    va='center')
        ax.axhline(0.0, color='grey', lw=0.8, ls=':')
        ax.grid(True, alpha=0.3)
        ax.set_xlabel(f'mean of predicted {measure} and reference (mm)', fontsize=8)
        ax.set_ylabel('predicted - reference (mm)', fontsize=8)
        ax.set_title(measure, fontsize=9)
    fig.suptitle(f'{title}\nreference: {reference_label}', fontsize=10)
    # The bands are the same nodules in every panel: one legend, below the panels,
    # where it cannot hide a point (a legend inside a panel did).
    handles, labels = axes[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc='lower center', ncol=len(handles), fontsize=8,
                   frameon=False)
    fig.tight_layout(rect=(0, 0.06 if handles else 0, 1, 1))
    return _png(fig)
