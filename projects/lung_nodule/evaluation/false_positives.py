"""False positives per test slice, from the predictions ``tools/test.py --out`` dumped.

COCO AP and Matterport mAP rank detections by score and never say how many wrong ones a
reader would see at the operating point. This count does, per slice of a COCO split: a
detection at ``score >= score_thr`` is a true positive when it is matched one-to-one (in
order of score, greedily, as COCO matches) to a ground-truth nodule mask of its slice at
mask IoU >= ``iou_thr`` (0.5, the AP50 criterion); one that is not, but lies on an
ignore region (``iscrowd`` 1: an excluded finding, see ``data_prep/luna16_to_coco.py``
``--excluded``) by at least ``iou_thr`` of its area, is ignored, as COCO and LUNA16 ignore
it; every other one is a false positive.
The default operating point, 0.5, is ``tools/infer_scan.py``'s ``--score-thr``.

The same count at ``score_thr=0`` says how many nodule cross-sections the detector finds
at all (mask IoU >= 0.5 at any score): no ranking can bring AP50 above that recall. It is
given by cross-section area too (:data:`AREA_BANDS_PX`), because that is where a slice
detector fails: the off-centre slices of a small nodule show a few pixels of it.

Light: numpy and pycocotools; the pickle holds torch tensors, so unpickling it needs the
environment that wrote it (this module imports no torch itself).
"""
from __future__ import annotations

import json
import pickle
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

__all__ = ['AREA_BANDS_PX', 'AreaBand', 'MatchedDetection', 'SliceCounts', 'SliceMatches',
           'count_false_positives', 'match_detections']

#: Lower edges of the ground-truth area bands (pixels of the slice), the last band open:
#: under 20 px is under ~5 px across, where a stride-4 feature map has about one cell for
#: the nodule.
AREA_BANDS_PX = (0, 20, 50, 100, 300)


@dataclass(frozen=True)
class AreaBand:
    """Ground-truth masks with ``low <= area < high`` pixels (``high`` None: no upper
    bound), and how many were matched."""

    low: float
    high: float | None
    ground_truth: int
    found: int

    @property
    def recall(self) -> float:
        return self.found / self.ground_truth if self.ground_truth else float('nan')


@dataclass(frozen=True)
class SliceCounts:
    """Detections at the operating point over one COCO split (``detections``: true plus
    false positives; those ignored on an excluded finding are not counted)."""

    slices: int
    ground_truth: int
    detections: int
    true_positives: int
    false_positives: int
    score_thr: float
    iou_thr: float
    by_area: tuple[AreaBand, ...] = ()

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


@dataclass(frozen=True)
class MatchedDetection:
    """One detection at the operating point and what the matching made of it."""

    image_id: int
    score: float
    mask: dict = field(repr=False)  # RLE
    outcome: str  # 'true' | 'false' | 'ignored' (on an excluded finding's region)
    #: index of the matched mask among its image's nodule masks (``outcome == 'true'``)
    nodule: int | None = None


@dataclass(frozen=True)
class SliceMatches:
    """Every detection of a split at ``score >= score_thr``, matched to the nodule masks."""

    images: dict[int, dict]          # COCO image entries by id
    nodule_masks: dict[int, list]    # RLE per image (``iscrowd`` regions not included)
    detections: list[MatchedDetection]
    score_thr: float
    iou_thr: float

    def above(self, score_thr: float) -> 'SliceMatches':
        """The same matching at a higher operating point, without matching again: the
        matching runs in order of score, so the detections at ``score >= score_thr`` were
        matched before any below it and their outcomes stand."""
        if score_thr < self.score_thr:
            raise ValueError(f'score_thr {score_thr} is below the matched {self.score_thr}')
        return replace(self, detections=[d for d in self.detections if d.score >= score_thr],
                       score_thr=score_thr)

    def counts(self) -> SliceCounts:
        """The counts of :func:`count_false_positives`."""
        from pycocotools import mask as mask_utils

        outcomes = [d.outcome for d in self.detections]
        true_positives, false_positives = outcomes.count('true'), outcomes.count('false')
        matched = {i: np.zeros(len(v), dtype=bool) for i, v in self.nodule_masks.items()}
        for d in self.detections:
            if d.nodule is not None:
                matched[d.image_id][d.nodule] = True
        with_masks = [i for i, v in self.nodule_masks.items() if v]
        areas = np.concatenate([np.asarray(mask_utils.area(self.nodule_masks[i]), dtype=float)
                                .reshape(-1) for i in with_masks] or [np.zeros(0)])
        found = np.concatenate([matched[i] for i in with_masks] or [np.zeros(0, bool)])
        bands = []
        for low, high in zip(AREA_BANDS_PX, (*AREA_BANDS_PX[1:], None)):
            in_band = (areas >= low) & (areas < (np.inf if high is None else high))
            bands.append(AreaBand(low, high, int(in_band.sum()), int(found[in_band].sum())))
        return SliceCounts(slices=len(self.images), ground_truth=len(areas),
                           detections=true_positives + false_positives,
                           true_positives=true_positives, false_positives=false_positives,
                           score_thr=self.score_thr, iou_thr=self.iou_thr, by_area=tuple(bands))

    def false_positives(self) -> list[MatchedDetection]:
        """The false positives, highest score first."""
        return sorted((d for d in self.detections if d.outcome == 'false'),
                      key=lambda d: -d.score)


def match_detections(coco_json: Path, predictions_pkl: Path, score_thr: float = 0.5,
                     iou_thr: float = 0.5) -> SliceMatches:
    """Match the detections of ``predictions_pkl`` to the nodule masks of ``coco_json``.

    Args:
        coco_json: ``instances_<split>.json`` (ground-truth masks as RLE or polygons).
        predictions_pkl: ``tools/test.py CONFIG CKPT --out predictions.pkl`` on that split
            (one entry per image, ``img_id`` and ``pred_instances`` with RLE ``masks``).
        score_thr: detections below it are not shown to a reader and not counted
            (0: every detection, the recall that bounds AP50).
        iou_thr: mask IoU from which a detection matches a ground-truth nodule.

    Raises:
        ValueError: naming the file, when a prediction's image is not in the split, the
            predictions carry no masks, or an image of the split has no prediction entry.
    """
    from pycocotools import mask as mask_utils

    coco = json.loads(Path(coco_json).read_text())
    images = {im['id']: im for im in coco['images']}
    gt: dict[int, list[dict]] = {i: [] for i in images}
    ignore: dict[int, list[dict]] = {i: [] for i in images}
    for ann in coco['annotations']:
        seg = ann['segmentation']
        image = images[ann['image_id']]
        if isinstance(seg, list):  # polygons
            seg = mask_utils.merge(mask_utils.frPyObjects(seg, image['height'], image['width']))
        (ignore if ann.get('iscrowd') else gt)[ann['image_id']].append(_rle(seg))
    with open(predictions_pkl, 'rb') as handle:
        predictions = pickle.load(handle)
    seen: set[int] = set()
    found = {i: np.zeros(len(v), dtype=bool) for i, v in gt.items()}
    detections: list[MatchedDetection] = []
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
        truths, regions = gt[img_id], ignore[img_id]
        if not order:
            continue
        masks = [_rle(inst['masks'][i]) for i in order]
        # pycocotools' crowd IoU is the detection's fraction inside the region
        on_ignore = (np.asarray(mask_utils.iou(masks, regions, [1] * len(regions)),
                                dtype=float).reshape(len(masks), -1).max(axis=1) >= iou_thr
                     if regions else np.zeros(len(masks), bool))
        ious = (np.asarray(mask_utils.iou(masks, truths, [0] * len(truths)), dtype=float)
                .reshape(len(masks), len(truths)) if truths else np.zeros((len(masks), 0)))
        taken = found[img_id]
        for i, mask, row, ignored in zip(order, masks, ious, on_ignore):
            row = np.where(taken, -1.0, row)
            best = int(np.argmax(row)) if len(row) else -1
            if best >= 0 and row[best] >= iou_thr:
                taken[best] = True
                detections.append(MatchedDetection(img_id, float(scores[i]), mask, 'true', best))
            else:
                detections.append(MatchedDetection(img_id, float(scores[i]), mask,
                                                   'ignored' if ignored else 'false'))
    missing = sorted(set(images) - seen)
    if missing:
        raise ValueError(f'{predictions_pkl}: no prediction for {len(missing)} image(s) of '
                         f'{coco_json}, e.g. id {missing[0]}')
    return SliceMatches(images, gt, detections, score_thr, iou_thr)


def count_false_positives(coco_json: Path, predictions_pkl: Path, score_thr: float = 0.5,
                          iou_thr: float = 0.5) -> SliceCounts:
    """Count true and false positives of ``predictions_pkl`` on the split of ``coco_json``
    (arguments and errors as :func:`match_detections`)."""
    return match_detections(coco_json, predictions_pkl, score_thr, iou_thr).counts()
