"""How far a perfect segmenter would get against the circle masks: the true footprints.

The paper's ground truth, which ``data_prep/luna16_to_coco.py`` follows, is a disc drawn
from ``diameter_mm``: on each exported slice the cross-section of a sphere of that
diameter. Real nodules are not spheres. They are lobulated or spiculated, and the long
axis that ``diameter_mm`` gives is larger than their mean width. A model that segments
exactly what the scan shows therefore still misses some of these discs at mask IoU 0.5,
above all the small off-centre sections.

The synthetic scans know every nodule's true voxels: ``labels/<seriesuid>.nii.gz`` of
``data_prep/make_synthetic_luna16.py``. Each test slice's label footprints are scored
with pycocotools as detections of score 1. That COCO segm AP50 is the reference against
which the detector's AP50 is read: no segmenter of what the scan shows gets much more.
"""
from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ['FootprintReference', 'footprint_reference']


@dataclass(frozen=True)
class FootprintReference:
    """COCO segm AP50 and AP of the true footprints on one split's slices."""

    ap50: float
    ap: float
    #: footprints scored: every labelled nodule on every slice of the split
    footprints: int
    #: ground-truth masks (the circles) of the split
    masks: int


def footprint_reference(coco_json: str | Path, labels_dir: str | Path) -> FootprintReference:
    """Score the label footprints on the slices of ``coco_json`` against its masks.

    Args:
        coco_json: ``instances_<split>.json`` of ``luna16_to_coco.py``; its images carry
            ``seriesuid`` and ``z_index``, and are the scan's array slices as they are.
        labels_dir: the ``labels/`` folder of the synthetic data (uint16 volumes, one
            value per nodule, on the scan's grid).

    Raises:
        FileNotFoundError: naming the label volume of a scan that has none.
        ValueError: naming the volume, when its slice grid is not the image's.
    """
    import SimpleITK as sitk
    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    coco_json, labels_dir = Path(coco_json), Path(labels_dir)
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints as it loads
        gt = COCO(str(coco_json))
    volumes: dict[str, np.ndarray] = {}
    detections = []
    for image in gt.dataset['images']:
        uid = image['seriesuid']
        if uid not in volumes:
            path = labels_dir / f'{uid}.nii.gz'
            if not path.exists():
                raise FileNotFoundError(f'{path}: no label volume for scan {uid} of {coco_json}')
            volumes[uid] = sitk.GetArrayFromImage(sitk.ReadImage(str(path)))
            if volumes[uid].shape[1:] != (image['height'], image['width']):
                raise ValueError(f'{path}: slices of {volumes[uid].shape[1:]} voxels, but the '
                                 f'images of {coco_json} are {image["height"]}x{image["width"]}')
        labels = volumes[uid][image['z_index']]
        for value in np.unique(labels[labels > 0]):
            rle = mask_utils.encode(np.asfortranarray((labels == value).astype(np.uint8)))
            rle['counts'] = rle['counts'].decode()
            detections.append(dict(image_id=image['id'], category_id=1, segmentation=rle,
                                   score=1.0))
    masks = sum(not ann.get('iscrowd') for ann in gt.dataset['annotations'])
    if not detections or not masks:
        return FootprintReference(float('nan'), float('nan'), len(detections), masks)
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator = COCOeval(gt, gt.loadRes(detections), 'segm')
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return FootprintReference(float(evaluator.stats[1]), float(evaluator.stats[0]),
                              len(detections), masks)
