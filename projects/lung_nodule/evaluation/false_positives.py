"""False positives per test slice, from the predictions ``tools/test.py --out`` dumped.

COCO AP and Matterport mAP rank detections by score and never say how many wrong ones a
reader would see at the operating point. This count does, per slice of a COCO split: a
detection at ``score >= score_thr`` is a true positive when it is matched one-to-one (in
order of score, greedily, as COCO matches) to a ground-truth nodule mask of its slice at
mask IoU >= ``iou_thr`` (0.5, the AP50 criterion); every other one is a false positive.
The default operating point, 0.5, is ``tools/infer_scan.py``'s ``--score-thr``.

Light: numpy and pycocotools; the pickle holds torch tensors, so unpickling it needs the
environment that wrote it (this module imports no torch itself).
"""
from __future__ import annotations

import json
import pickle
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

__all__ = ['SliceCounts', 'count_false_positives']


@dataclass(frozen=True)
class SliceCounts:
    """Detections at the operating point over one COCO split."""

    slices: int
    ground_truth: int
    detections: int
    true_positives: int
    false_positives: int
    score_thr: float
    iou_thr: float

    @property
    def fp_per_slice(self) -> float:
        return self.false_positives / self.slices if self.slices else float('nan')

    @property
    def recall(self) -> float:
        return self.true_positives / self.ground_truth if self.ground_truth else float('nan')

    def as_dict(self) -> dict:
        return {**asdict(self), 'fp_per_slice': self.fp_per_slice, 'recall': self.recall}


def _rle(mask: dict) -> dict:
    rle = dict(mask)
    if isinstance(rle.get('counts'), str):
        rle['counts'] = rle['counts'].encode()
    return rle


def _numpy(value) -> np.ndarray:
    return value.numpy() if hasattr(value, 'numpy') else np.asarray(value)


def count_false_positives(coco_json: Path, predictions_pkl: Path, score_thr: float = 0.5,
                          iou_thr: float = 0.5) -> SliceCounts:
    """Count true and false positives of ``predictions_pkl`` on the split of ``coco_json``.

    Args:
        coco_json: ``instances_<split>.json`` (ground-truth masks as RLE or polygons).
        predictions_pkl: ``tools/test.py CONFIG CKPT --out predictions.pkl`` on that split
            (one entry per image, ``img_id`` and ``pred_instances`` with RLE ``masks``).
        score_thr: detections below it are not shown to a reader and not counted.
        iou_thr: mask IoU from which a detection matches a ground-truth nodule.

    Raises:
        ValueError: naming the file, when a prediction's image is not in the split, the
            predictions carry no masks, or an image of the split has no prediction entry.
    """
    from pycocotools import mask as mask_utils

    coco = json.loads(Path(coco_json).read_text())
    images = {im['id']: im for im in coco['images']}
    gt: dict[int, list[dict]] = {i: [] for i in images}
    for ann in coco['annotations']:
        seg = ann['segmentation']
        image = images[ann['image_id']]
        if isinstance(seg, list):  # polygons
            seg = mask_utils.merge(mask_utils.frPyObjects(seg, image['height'], image['width']))
        gt[ann['image_id']].append(_rle(seg))
    with open(predictions_pkl, 'rb') as handle:
        predictions = pickle.load(handle)
    seen: set[int] = set()
    detections = true_positives = 0
    for pred in predictions:
        img_id = int(pred['img_id'])
        if img_id not in images:
            raise ValueError(f'{predictions_pkl}: image id {img_id} is not in {coco_json}')
        seen.add(img_id)
        inst = pred['pred_instances']
        if 'masks' not in inst:
            raise ValueError(f'{predictions_pkl}: image {img_id} has no predicted masks '
                             f'(dump with tools/test.py --eval segm --out)')
        scores = _numpy(inst['scores']).astype(float)
        order = [i for i in np.argsort(-scores, kind='stable') if scores[i] >= score_thr]
        detections += len(order)
        truths = gt[img_id]
        if not order or not truths:
            continue
        masks = [_rle(inst['masks'][i]) for i in order]
        ious = np.asarray(mask_utils.iou(masks, truths, [0] * len(truths)), dtype=float)
        taken = np.zeros(len(truths), dtype=bool)
        for row in ious.reshape(len(masks), len(truths)):
            row = np.where(taken, -1.0, row)
            best = int(np.argmax(row))
            if row[best] >= iou_thr:
                taken[best] = True
                true_positives += 1
    missing = sorted(set(images) - seen)
    if missing:
        raise ValueError(f'{predictions_pkl}: no prediction for {len(missing)} image(s) of '
                         f'{coco_json}, e.g. id {missing[0]}')
    return SliceCounts(slices=len(images), ground_truth=sum(len(v) for v in gt.values()),
                       detections=detections, true_positives=true_positives,
                       false_positives=detections - true_positives, score_thr=score_thr,
                       iou_thr=iou_thr)
