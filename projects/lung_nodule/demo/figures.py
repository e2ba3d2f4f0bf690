"""Figures of the demo's report: the training loss curve, ground truth | prediction overlays,
and the highest-scoring false positives on the test slices.

Both are read from what the real tools wrote (mmengine's ``vis_data/scalars.json`` of the
training run; the COCO test annotations and the predictions ``tools/test.py --out`` dumped),
so a figure shows that run and nothing else. Every figure carries a label saying what data
it shows (``synthetic data`` in the demo), inside the image.
"""
from __future__ import annotations

import json
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

__all__ = ['LOSS_KEYS', 'Overlay', 'load_loss_log', 'pick_overlay_nodules',
           'plot_false_positives', 'plot_loss_curve', 'plot_overlays']

#: mmdet Mask R-CNN loss terms plotted beside the total.
LOSS_KEYS = ('loss', 'loss_rpn_cls', 'loss_rpn_bbox', 'loss_cls', 'loss_bbox', 'loss_mask')


def _pyplot():
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    return plt


def _atomic_savefig(fig, path: Path, dpi: int = 100) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f'.{path.stem}.tmp{path.suffix}')
    fig.savefig(tmp, dpi=dpi, bbox_inches='tight')
    tmp.replace(path)


def load_loss_log(scalars_json: Path) -> dict[str, np.ndarray]:
    """Training rows of an mmengine ``scalars.json`` (one JSON object per line).

    Returns:
        ``{'iter': ..., 'loss': ..., ...}``, one array per key, from the rows that carry a
        ``loss`` (validation rows do not).

    Raises:
        ValueError: naming the file when it holds no training row.
    """
    rows = []
    for line in Path(scalars_json).read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            if 'loss' in row and 'iter' in row:
                rows.append(row)
    if not rows:
        raise ValueError(f'{scalars_json}: no training row with "loss" and "iter"')
    keys = [k for k in ('iter', 'lr', *LOSS_KEYS) if all(k in r for r in rows)]
    return {k: np.asarray([float(r[k]) for r in rows]) for k in keys}


def plot_loss_curve(scalars_json: Path, out_png: Path, label: str,
                    stage_begins: Sequence[tuple[str, int]] = ()) -> Path:
    """Plot the total and per-term training losses against the step.

    Args:
        scalars_json: mmengine's ``<work_dir>/<timestamp>/vis_data/scalars.json``.
        out_png: where to write the figure.
        label: what data the run saw (written inside the plot, e.g. ``synthetic data``).
        stage_begins: ``(name, first step)`` of each fine-tuning stage, drawn as lines.
    """
    log = load_loss_log(scalars_json)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9.5, 4.5))
    for key in LOSS_KEYS:
        if key in log:
            ax.plot(log['iter'], log[key], label=key, lw=2.2 if key == 'loss' else 1.0)
    for name, begin in stage_begins:
        ax.axvline(begin, color='grey', ls='--', lw=0.8)
        ax.text(begin, 0.98, f' {name}', transform=ax.get_xaxis_transform(), va='top',
                fontsize=9, color='dimgrey')
    ax.set_xlabel('training step')
    ax.set_ylabel('loss')
    ax.set_yscale('log')
    ax.grid(alpha=0.3)
    # beside the axes: inside, any corner hides the start of some curve
    ax.legend(loc='upper left', bbox_to_anchor=(1.01, 1.0), fontsize=8)
    ax.set_title(f'Mask R-CNN training loss ({label})')
    ax.text(1.01, 0.0, label, transform=ax.transAxes, ha='left', va='bottom',
            fontsize=10, color='darkred')  # under the legend, off the curves
    fig.tight_layout()
    _atomic_savefig(fig, out_png)
    plt.close(fig)
    return Path(out_png)


@dataclass(frozen=True)
class Overlay:
    """One ground-truth nodule on one test slice, and the predictions on that slice."""

    image_path: Path
    image_id: int
    seriesuid: str
    z_index: int
    nodule_id: str
    diameter_mm: float
    gt_mask: np.ndarray          # bool (h, w)
    pred_masks: np.ndarray       # bool (n, h, w)
    pred_scores: np.ndarray      # (n,)

    @property
    def best(self) -> tuple[float, float]:
        """``(Dice, score)`` of the prediction overlapping the nodule most (0, 0: none)."""
        best = (0.0, 0.0)
        for mask, score in zip(self.pred_masks, self.pred_scores):
            inter = np.logical_and(mask, self.gt_mask).sum()
            dice = 2 * inter / max(mask.sum() + self.gt_mask.sum(), 1)
            if dice > best[0]:
                best = (float(dice), float(score))
        return best


def _decode(rle: dict) -> np.ndarray:
    from pycocotools import mask as mask_utils
    rle = dict(rle)
    if isinstance(rle.get('counts'), str):
        rle['counts'] = rle['counts'].encode()
    return mask_utils.decode(rle).astype(bool)


def _as_numpy(value) -> np.ndarray:
    return value.numpy() if hasattr(value, 'numpy') else np.asarray(value)


def pick_overlay_nodules(coco_json: Path, images_dir: Path, predictions_pkl: Path,
                         count: int = 6, score_thr: float = 0.5) -> list[Overlay]:
    """Choose ``count`` test nodules spanning the diameters, on their central slice.

    The nodules are sorted by diameter and taken at evenly spaced ranks (small to large),
    so the figure is not a selection of the easiest ones.

    Args:
        coco_json: the split's ``instances_<split>.json``.
        images_dir: the folder of its PNGs.
        predictions_pkl: ``tools/test.py --out`` on the same split.
        count: nodules to return (fewer if the split has fewer).
        score_thr: predictions below it are not drawn.
    """
    coco = json.loads(Path(coco_json).read_text())
    images = {im['id']: im for im in coco['images']}
    with open(predictions_pkl, 'rb') as handle:
        predictions = pickle.load(handle)
    by_path = {Path(p['img_path']).name: p for p in predictions}
    # the central slice of each nodule: the one with its largest cross-section
    central: dict[str, dict] = {}
    for ann in coco['annotations']:
        if ann.get('iscrowd'):  # an excluded finding's ignore region, not a nodule
            continue
        key = f"{images[ann['image_id']]['seriesuid']}:{ann['nodule_id']}"
        if key not in central or ann['area'] > central[key]['area']:
            central[key] = ann
    chosen = sorted(central.values(), key=lambda a: (a['diameter_mm'], a['id']))
    if len(chosen) > count:
        ranks = np.linspace(0, len(chosen) - 1, count).round().astype(int)
        chosen = [chosen[i] for i in ranks]
    overlays = []
    for ann in chosen:
        image = images[ann['image_id']]
        pred = by_path.get(Path(image['file_name']).name)
        if pred is None:
            raise ValueError(f'{predictions_pkl} has no prediction for {image["file_name"]}')
        inst = pred['pred_instances']
        scores = _as_numpy(inst['scores']).astype(float)
        keep = scores >= score_thr
        masks = [_decode(m) for m, k in zip(inst.get('masks', []), keep) if k]
        shape = (image['height'], image['width'])
        overlays.append(Overlay(
            image_path=Path(images_dir) / image['file_name'], image_id=image['id'],
            seriesuid=image['seriesuid'], z_index=int(image['z_index']),
            nodule_id=str(ann['nodule_id']), diameter_mm=float(ann['diameter_mm']),
            gt_mask=_decode(ann['segmentation']),
            pred_masks=np.asarray(masks, dtype=bool).reshape(-1, *shape),
            pred_scores=scores[keep]))
    return overlays


def _crop_box(mask: np.ndarray, size: int) -> tuple[slice, slice]:
    rows, cols = np.nonzero(mask)
    cy, cx = int(rows.mean()), int(cols.mean())
    h, w = mask.shape
    size = min(size, h, w)
    y0 = int(np.clip(cy - size // 2, 0, h - size))
    x0 = int(np.clip(cx - size // 2, 0, w - size))
    return slice(y0, y0 + size), slice(x0, x0 + size)


def _label_position(left: int, top: int, bottom: int, placed: list[tuple[float, float]],
                    shape: tuple[int, int], width: float = 10.0, height: float = 5.0
                    ) -> tuple[float, float]:
    """Where a score label goes (data pixels; the text's bottom left): just above its
    contour, else further up, else below it, else one label width to the right (and so
    on), the first place that overlaps no label already ``placed``, always inside the
    window. Appends the position to ``placed``."""
    rows, cols = shape
    first_x = min(max(left, 0), cols - width)
    steps = range(int(cols // width))
    xs = [first_x + k * width for k in steps if first_x + k * width <= cols - width]
    xs += [first_x - k * width for k in steps[1:] if first_x - k * width >= 0]
    above = np.arange(max(top - 2, height), height - 1e-9, -height)
    below = np.arange(min(bottom + height + 2, rows - 1), rows - 1 + 1e-9, height)
    candidates = [(float(x), float(y)) for x in xs for y in (*above, *below)]
    spot = next((c for c in candidates
                 if not any(abs(c[0] - px) < width and abs(c[1] - py) < height
                            for px, py in placed)), candidates[0])
    placed.append(spot)
    return spot


def plot_overlays(overlays: Sequence[Overlay], out_dir: Path, label: str,
                  crop: int = 96) -> list[Path]:
    """One PNG per nodule: ground truth (left) beside the prediction (right), like Fig. 4.

    Each panel is a ``crop``-pixel window around the nodule, upscaled (bilinear image,
    contours drawn at the upscaled resolution, not filled), with the slice's place in the
    scan, the nodule's diameter, and each prediction's score and Dice written inside.
    """
    from PIL import Image
    plt = _pyplot()
    paths = []
    for i, ov in enumerate(overlays):
        image = np.asarray(Image.open(ov.image_path).convert('L'))
        window = _crop_box(ov.gt_mask, crop)
        fig, axes = plt.subplots(1, 2, figsize=(8.4, 4.6))
        dice, score = ov.best
        titles = (f'ground truth: {ov.diameter_mm:.1f} mm nodule\n'
                  f'scan ...{ov.seriesuid[-6:]}, slice z={ov.z_index}',
                  (f'prediction on it: score {score:.2f}, Dice {dice:.2f}' if score
                   else 'prediction on it: none (score >= 0.5)') + '\n(dotted: ground truth)')
        for ax, title in zip(axes, titles):
            ax.imshow(image[window], cmap='gray', vmin=0, vmax=255, interpolation='bilinear')
            ax.set_title(title, fontsize=10)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[0].contour(ov.gt_mask[window], levels=[0.5], colors=['lime'], linewidths=1.8)
        colours = ['red', 'orange', 'cyan', 'magenta', 'yellow']
        placed: list[tuple[float, float]] = []
        for k, (mask, s) in enumerate(zip(ov.pred_masks, ov.pred_scores)):
            sub = mask[window]
            if not sub.any():
                continue
            colour = colours[k % len(colours)]
            axes[1].contour(sub, levels=[0.5], colors=[colour], linewidths=1.8)
            rows, cols = np.nonzero(sub)
            x, y = _label_position(cols.min(), rows.min(), rows.max(), placed, sub.shape)
            axes[1].text(x, y, f'{s:.2f}', color=colour, fontsize=9, va='bottom')
        axes[1].contour(ov.gt_mask[window], levels=[0.5], colors=['lime'], linewidths=0.8,
                        linestyles='dotted')
        for ax in axes:
            ax.text(0.02, 0.02, f'{label}; {crop}x{crop} px window, upscaled',
                    transform=ax.transAxes, color='yellow', fontsize=9,
                    va='bottom', bbox=dict(facecolor='black', alpha=0.5, lw=0))
        fig.tight_layout()
        path = Path(out_dir) / f'overlay_{i}.png'
        _atomic_savefig(fig, path, dpi=90)
        plt.close(fig)
        paths.append(path)
    return paths


def plot_false_positives(matches, images_dir: Path, out_png: Path, label: str,
                         count: int = 12, crop: int = 48, columns: int = 6) -> Path | None:
    """The ``count`` highest-scoring false positives of a split, side by side.

    What the detector takes for a nodule, in the order AP50 pays for it: each panel is a
    ``crop``-pixel window around one false positive (upscaled, bilinear), its contour in
    red with its score, the slice's nodule masks dotted green where the window holds one.

    Args:
        matches: :class:`~projects.lung_nodule.evaluation.false_positives.SliceMatches`
            of the split (at the report's operating point).
        images_dir: the folder of the split's PNGs.
        out_png: where the figure goes.
        label: what data it shows (written inside the figure).

    Returns:
        ``out_png``, or None when the split has no false positive.
    """
    from PIL import Image
    from pycocotools import mask as mask_utils
    chosen = matches.false_positives()[:count]
    if not chosen:
        return None
    plt = _pyplot()
    columns = min(columns, len(chosen))
    rows = -(-len(chosen) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(2.1 * columns, 2.3 * rows + 0.5),
                             squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for ax, det in zip(axes.flat, chosen):
        entry = matches.images[det.image_id]
        image = np.asarray(Image.open(Path(images_dir) / entry['file_name']).convert('L'))
        mask = _decode(det.mask)
        window = _crop_box(mask, crop)
        ax.imshow(image[window], cmap='gray', vmin=0, vmax=255, interpolation='bilinear')
        ax.contour(mask[window], levels=[0.5], colors=['red'], linewidths=1.5)
        for nodule in matches.nodule_masks[det.image_id]:
            sub = mask_utils.decode(nodule).astype(bool)[window]
            if sub.any():
                ax.contour(sub, levels=[0.5], colors=['lime'], linewidths=1.0,
                           linestyles='dotted')
        ax.text(0.03, 0.97, f'{det.score:.2f}', transform=ax.transAxes, color='red',
                fontsize=10, va='top', bbox=dict(facecolor='black', alpha=0.6, lw=0))
        ax.text(0.03, 0.03, f'...{entry["seriesuid"][-6:]} z={entry["z_index"]}',
                transform=ax.transAxes, color='yellow', fontsize=7, va='bottom',
                bbox=dict(facecolor='black', alpha=0.5, lw=0))
    fig.suptitle(f'The {len(chosen)} highest-scoring false positives on the test slices '
                 f'({label}; score >= {matches.score_thr:g}, mask IoU < {matches.iou_thr:g} '
                 f'with every nodule)\nred: the detection and its score; dotted green: nodule '
                 f'masks; {crop}x{crop} px windows, upscaled', fontsize=10)
    fig.tight_layout()
    _atomic_savefig(fig, out_png, dpi=90)
    plt.close(fig)
    return Path(out_png)
