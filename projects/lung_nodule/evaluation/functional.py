"""Per-image mask matching shared by the nodule metrics (numpy, no registry).

``matterport_mask_ap`` reproduces ``compute_matches`` + ``compute_ap`` of
Matterport's ``mrcnn/utils.py`` (the Mask_RCNN code the paper used): predictions
are sorted by score, each takes the still unmatched ground truth of its class
with the highest mask IoU if that IoU is >= the threshold, and the AP is the area
under the all-point interpolated precision/recall curve of this one image.
"""
from typing import Optional

import numpy as np
import torch


def to_bool_masks(masks, shape: Optional[tuple] = None) -> np.ndarray:
    """Masks of any mmdet form as a boolean ``(N, H, W)`` array.

    Args:
        masks: ``BitmapMasks``, ``PolygonMasks``, a tensor or an array of shape
            ``(N, H, W)``.
        shape (tuple, optional): ``(H, W)`` to use when there are no masks and
            ``masks`` carries no shape of its own.

    Returns:
        np.ndarray: Boolean masks, ``(N, H, W)``.
    """
    if hasattr(masks, 'to_ndarray'):  # BitmapMasks / PolygonMasks
        array = masks.to_ndarray()
    elif isinstance(masks, torch.Tensor):
        array = masks.detach().cpu().numpy()
    else:
        array = np.asarray(masks)
    if array.size == 0 and array.ndim != 3:
        array = np.zeros((0, *shape), dtype=bool)
    return array.astype(bool, copy=False)


def mask_iou(masks1: np.ndarray, masks2: np.ndarray) -> np.ndarray:
    """IoU of every pair of boolean masks (``compute_overlaps_masks``).

    Args:
        masks1 (np.ndarray): ``(N, H, W)`` boolean masks.
        masks2 (np.ndarray): ``(M, H, W)`` boolean masks of the same ``H, W``.

    Returns:
        np.ndarray: ``(N, M)`` IoUs; 0 where both masks are empty.
    """
    if len(masks1) == 0 or len(masks2) == 0:
        return np.zeros((len(masks1), len(masks2)))
    if masks1.shape[1:] != masks2.shape[1:]:
        raise ValueError(f'mask sizes differ: {masks1.shape[1:]} vs {masks2.shape[1:]}; '
                         'predictions and ground truth must be in the same image frame')
    flat1 = masks1.reshape(len(masks1), -1).astype(np.float64)
    flat2 = masks2.reshape(len(masks2), -1).astype(np.float64)
    inter = flat1 @ flat2.T
    union = flat1.sum(1)[:, None] + flat2.sum(1)[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def matterport_mask_ap(gt_masks: np.ndarray, gt_labels: np.ndarray, pred_masks: np.ndarray,
                       pred_labels: np.ndarray, pred_scores: np.ndarray,
                       iou_thr: float = 0.5) -> float:
    """Mask AP of one image at one IoU threshold, as Matterport's ``compute_ap``.

    Args:
        gt_masks (np.ndarray): ``(G, H, W)`` boolean ground-truth masks, G >= 1.
        gt_labels (np.ndarray): ``(G,)`` class ids.
        pred_masks (np.ndarray): ``(P, H, W)`` boolean predicted masks.
        pred_labels (np.ndarray): ``(P,)`` class ids.
        pred_scores (np.ndarray): ``(P,)`` scores.
        iou_thr (float): Mask IoU a match needs. Defaults to 0.5.

    Returns:
        float: The image's AP in [0, 1].
    """
    if len(gt_masks) == 0:
        raise ValueError('Matterport AP is undefined for an image without ground truth')
    order = np.argsort(-np.asarray(pred_scores), kind='stable')
    overlaps = mask_iou(pred_masks[order], gt_masks)
    pred_labels = np.asarray(pred_labels)[order]
    gt_match = -np.ones(len(gt_masks), dtype=int)
    pred_match = -np.ones(len(order), dtype=int)
    for i in range(len(order)):
        for j in np.argsort(-overlaps[i], kind='stable'):
            if gt_match[j] > -1:
                continue
            if overlaps[i, j] < iou_thr:
                break
            if pred_labels[i] == gt_labels[j]:
                gt_match[j], pred_match[i] = i, j
                break
    hits = np.cumsum(pred_match > -1)
    precisions = np.concatenate([[0], hits / (np.arange(len(order)) + 1), [0]])
    recalls = np.concatenate([[0], hits / len(gt_masks), [1]])
    precisions = np.maximum.accumulate(precisions[::-1])[::-1]
    steps = np.where(recalls[:-1] != recalls[1:])[0] + 1
    return float(np.sum((recalls[steps] - recalls[steps - 1]) * precisions[steps]))


def best_match_dice(gt_masks: np.ndarray, pred_masks: np.ndarray) -> np.ndarray:
    """Per ground-truth mask, the Dice of the prediction that overlaps it most.

    Args:
        gt_masks (np.ndarray): ``(G, H, W)`` boolean ground-truth masks.
        pred_masks (np.ndarray): ``(P, H, W)`` boolean predicted masks.

    Returns:
        np.ndarray: ``(G,)`` Dice coefficients; 0 for a nodule no prediction touches.
    """
    if len(gt_masks) == 0 or len(pred_masks) == 0:
        return np.zeros(len(gt_masks))
    flat_gt = gt_masks.reshape(len(gt_masks), -1).astype(np.float64)
    flat_pred = pred_masks.reshape(len(pred_masks), -1).astype(np.float64)
    inter = flat_gt @ flat_pred.T
    total = flat_gt.sum(1)[:, None] + flat_pred.sum(1)[None, :]
    dice = np.divide(2 * inter, total, out=np.zeros_like(inter), where=total > 0)
    return dice.max(axis=1)


def sample_masks(data_sample: dict, score_thr: float = 0.0) -> dict:
    """Ground truth and predictions of one evaluated ``DetDataSample`` (as dict).

    The ground truth is ``gt_instances`` of the test pipeline (``LoadAnnotations``
    with ``with_mask=True`` placed after ``Resize``, as in mmdet's test pipelines,
    so it stays in the original image frame, where ``rescale=True`` puts the
    predicted masks).

    Args:
        data_sample (dict): One item of ``data_samples`` in ``Metric.process``.
        score_thr (float): Drop predictions scoring below this.

    Returns:
        dict: ``gt_masks``, ``gt_labels``, ``pred_masks``, ``pred_labels``,
        ``pred_scores``, ``ignore_masks`` (``ignored_instances``: the ``iscrowd``
        regions of excluded findings; none when the sample has no such field) as numpy
        arrays.
    """
    if 'gt_instances' not in data_sample or 'masks' not in data_sample['gt_instances']:
        raise KeyError('the nodule metrics need gt_instances.masks: keep '
                       "dict(type='LoadAnnotations', with_bbox=True, with_mask=True) in "
                       'the test pipeline')
    shape = tuple(data_sample['ori_shape'])
    gt = data_sample['gt_instances']
    pred = data_sample['pred_instances']
    scores = pred['scores'].detach().cpu().numpy()
    keep = scores >= score_thr
    pred_masks = to_bool_masks(pred['masks'], shape)[keep] if 'masks' in pred else \
        np.zeros((0, *shape), dtype=bool)
    ignored = data_sample.get('ignored_instances', {})
    return dict(
        gt_masks=to_bool_masks(gt['masks'], shape),
        gt_labels=gt['labels'].detach().cpu().numpy(),
        pred_masks=pred_masks,
        pred_labels=pred['labels'].detach().cpu().numpy()[keep],
        pred_scores=scores[keep],
        ignore_masks=to_bool_masks(ignored['masks'], shape) if 'masks' in ignored else
        np.zeros((0, *shape), dtype=bool))


def on_ignore_regions(pred_masks: np.ndarray, gt_masks: np.ndarray, ignore_masks: np.ndarray,
                      iou_thr: float = 0.5) -> np.ndarray:
    """Which predictions COCO would ignore: no ground truth at ``iou_thr``, but at least
    ``iou_thr`` of their area inside an ignore (``iscrowd``) region.

    Returns:
        np.ndarray: ``(P,)`` booleans.
    """
    if len(pred_masks) == 0 or len(ignore_masks) == 0:
        return np.zeros(len(pred_masks), dtype=bool)
    flat_pred = pred_masks.reshape(len(pred_masks), -1).astype(np.float64)
    inside = flat_pred @ ignore_masks.reshape(len(ignore_masks), -1).astype(np.float64).T
    area = flat_pred.sum(1)[:, None]
    fraction = np.divide(inside, area, out=np.zeros_like(inside), where=area > 0).max(axis=1)
    matched = (mask_iou(pred_masks, gt_masks).max(axis=1) >= iou_thr if len(gt_masks)
               else np.zeros(len(pred_masks), dtype=bool))
    return (fraction >= iou_thr) & ~matched
