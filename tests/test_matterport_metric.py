"""Matterport-style mask mAP and per-nodule Dice on a case computed by hand."""
import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.evaluator import Evaluator
from mmengine.structures import InstanceData

from mmdet.registry import METRICS
from mmdet.structures import DetDataSample
from mmdet.structures.mask import BitmapMasks
from projects.lung_nodule.evaluation.functional import matterport_mask_ap
from projects.lung_nodule.evaluation.metrics import MatterportMaskAP, NoduleDiceMetric

SIZE = 64


def box_mask(y0: int, x0: int, h: int = 10, w: int = 10) -> np.ndarray:
    mask = np.zeros((SIZE, SIZE), dtype=bool)
    mask[y0:y0 + h, x0:x0 + w] = True
    return mask


def sample(gts, preds) -> dict:
    """A predicted DetDataSample as the evaluator sees it; preds: (mask, score)."""
    ds = DetDataSample(metainfo=dict(img_id=0, ori_shape=(SIZE, SIZE)))
    ds.gt_instances = InstanceData(
        masks=BitmapMasks(np.array(gts, dtype=np.uint8).reshape(-1, SIZE, SIZE), SIZE, SIZE),
        labels=torch.zeros(len(gts), dtype=torch.long))
    ds.pred_instances = InstanceData(
        masks=torch.from_numpy(np.array([m for m, _ in preds]).reshape(-1, SIZE, SIZE)),
        scores=torch.tensor([s for _, s in preds], dtype=torch.float32),
        labels=torch.zeros(len(preds), dtype=torch.long))
    return ds.to_dict()


# Image 1: nodules A and B.
#   p1 (0.9): A shifted 1 px -> IoU 90/110 = 0.82, Dice 180/200 = 0.9   true positive
#   p2 (0.8): A shifted 2 px -> IoU 80/120 = 0.67                       double detection: FP
#   p5 (0.3): B exactly, but below Matterport's score threshold 0.7     B is missed
# Image 2: nodule C.
#   p3 (0.95): nowhere near C                                            false positive
#   p4 (0.85): C exactly                                                 true positive
# Image 3: no nodule, one prediction (0.9): left out of the mean, counted as empty FP.
A, B, C = box_mask(10, 10), box_mask(40, 40), box_mask(30, 5)
IMAGE1 = sample([A, B], [(box_mask(10, 11), 0.9), (box_mask(10, 12), 0.8), (B, 0.3)])
IMAGE2 = sample([C], [(box_mask(5, 40), 0.95), (C, 0.85)])
IMAGE3 = sample([], [(box_mask(20, 20), 0.9)])

# By hand, score_thr 0.7 (Matterport's compute_ap):
#   image 1: [TP, FP], recall [.5, .5], precision [1, .5]; B never found
#            AP = 0.5 * 1 + 0.5 * 0 = 0.5
#   image 2: [FP, TP], recall [0, 1], precision [0, .5]; interpolated 0.5 up to recall 1
#            AP = 1 * 0.5 = 0.5
#   mean over the two images with nodules = 0.5
# With score_thr 0, p5 finds B in image 1: [TP, FP, TP], precision [1, .5, 2/3]:
#   AP = 0.5 * 1 + 0.5 * 2/3 = 5/6; mean (5/6 + 1/2) / 2 = 2/3
# Dice, score_thr 0.7: A 0.9 (p1), B 0 (missed), C 1.0 -> mean 1.9 / 3, touched 0.95


def evaluate(metric, samples) -> dict:
    metric.process({}, samples)
    return metric.evaluate(len(samples))


def test_matterport_map_hand_computed():
    metrics = evaluate(MatterportMaskAP(), [IMAGE1, IMAGE2, IMAGE3])
    assert metrics['matterport/mask_mAP_50'] == pytest.approx(0.5)
    assert metrics['matterport/num_images'] == 2
    assert metrics['matterport/fp_per_empty_image'] == 1

    metrics = evaluate(MatterportMaskAP(score_thr=0.0), [IMAGE1, IMAGE2, IMAGE3])
    assert metrics['matterport/mask_mAP_50'] == pytest.approx(2 / 3)

    # IoU 0.85 rejects p1 (0.82): image 1 has no hit, image 2 stays 0.5
    metrics = evaluate(MatterportMaskAP(iou_thr=0.85), [IMAGE1, IMAGE2])
    assert metrics['matterport/mask_mAP_85'] == pytest.approx(0.25)


def test_matterport_ap_is_not_pooled_coco_ap50():
    # one image found perfectly, one missed entirely: Matterport averages 1 and 0
    perfect = sample([A], [(A, 0.9)])
    missed = sample([B], [])
    metrics = evaluate(MatterportMaskAP(), [perfect, missed])
    assert metrics['matterport/mask_mAP_50'] == pytest.approx(0.5)


def test_class_must_match():
    gt = np.array([A])
    ap = matterport_mask_ap(gt, np.array([0]), gt, np.array([1]), np.array([0.9]))
    assert ap == 0.0


def test_nodule_dice_hand_computed():
    metrics = evaluate(NoduleDiceMetric(), [IMAGE1, IMAGE2, IMAGE3])
    assert metrics['nodule/dice'] == pytest.approx(1.9 / 3)
    assert metrics['nodule/dice_detected'] == pytest.approx(0.95)
    assert metrics['nodule/recall'] == pytest.approx(2 / 3)
    assert metrics['nodule/num_nodules'] == 3

    metrics = evaluate(NoduleDiceMetric(score_thr=0.0), [IMAGE1, IMAGE2])
    assert metrics['nodule/dice'] == pytest.approx(2.9 / 3)


def test_registered_and_in_the_lung_configs(repo_root):
    assert METRICS.get('MatterportMaskAP') is MatterportMaskAP
    assert METRICS.get('NoduleDiceMetric') is NoduleDiceMetric
    assert 'MatterportMaskAP(iou_thr=0.5' in repr(MatterportMaskAP())
    for name in ('all', 'staged'):
        cfg = Config.fromfile(str(repo_root / f'configs/lung/mask_rcnn_r101_fpn_{name}.py'))
        for evaluator in (cfg.val_evaluator, cfg.test_evaluator):
            types = [e['type'] for e in evaluator]
            assert types == ['CocoMetric', 'MatterportMaskAP', 'NoduleDiceMetric']
        Evaluator([METRICS.build(e) for e in cfg.test_evaluator[1:]])


def test_missing_gt_masks_is_explained():
    ds = DetDataSample(metainfo=dict(img_id=0, ori_shape=(SIZE, SIZE)))
    ds.gt_instances = InstanceData(labels=torch.zeros(0, dtype=torch.long))
    ds.pred_instances = InstanceData(scores=torch.zeros(0), labels=torch.zeros(0).long())
    with pytest.raises(KeyError, match='with_mask=True'):
        MatterportMaskAP().process({}, [ds.to_dict()])


def _packed(gts, ignored, preds) -> dict:
    """A sample as mmdet's test pipeline packs it: crowd masks (ignore flag 1) go to
    ``ignored_instances``; preds: (mask, score)."""
    from mmdet.datasets.transforms import PackDetInputs
    from mmdet.structures.bbox import HorizontalBoxes
    masks = np.array([*gts, *ignored], dtype=np.uint8).reshape(-1, SIZE, SIZE)
    packed = PackDetInputs(meta_keys=('img_id', 'ori_shape'))(dict(
        img=np.zeros((SIZE, SIZE, 3), np.uint8), img_id=0, ori_shape=(SIZE, SIZE),
        gt_masks=BitmapMasks(masks, SIZE, SIZE),
        gt_bboxes=HorizontalBoxes(torch.zeros(len(masks), 4)),
        gt_bboxes_labels=np.zeros(len(masks), dtype=np.int64),
        gt_ignore_flags=np.array([False] * len(gts) + [True] * len(ignored))))
    ds = packed['data_samples']
    ds.pred_instances = InstanceData(
        masks=torch.from_numpy(np.array([m for m, _ in preds]).reshape(-1, SIZE, SIZE)),
        scores=torch.tensor([s for _, s in preds], dtype=torch.float32),
        labels=torch.zeros(len(preds), dtype=torch.long))
    return ds.to_dict()


def test_predictions_on_ignore_regions_are_left_out():
    """An excluded finding (``iscrowd``): a detection on it is neither TP nor FP, as in
    COCO and LUNA16; a detection of a nodule is a TP even inside such a region."""
    region = box_mask(30, 30, 20, 20)
    on_region, nodule_in_region = box_mask(32, 32, 12, 12), box_mask(35, 35)
    # ranked first, the detection on the region would halve the AP: [FP, TP] -> 0.5
    image = _packed([A], [region], [(on_region, 0.95), (A, 0.9)])
    assert evaluate(MatterportMaskAP(), [image])['matterport/mask_mAP_50'] == pytest.approx(1.0)
    plain = sample([A], [(on_region, 0.95), (A, 0.9)])
    assert evaluate(MatterportMaskAP(), [plain])['matterport/mask_mAP_50'] == pytest.approx(0.5)
    # a nodule inside the region is still found by its detection
    inside = _packed([nodule_in_region], [region], [(nodule_in_region, 0.9)])
    assert evaluate(MatterportMaskAP(), [inside])['matterport/mask_mAP_50'] == pytest.approx(1.0)
    # an image with only the region: its detection is not an empty-image false positive
    empty = _packed([], [region], [(on_region, 0.95), (box_mask(0, 0), 0.9)])
    assert evaluate(MatterportMaskAP(), [image, empty])['matterport/fp_per_empty_image'] == 1
    # Dice is over nodules only
    assert evaluate(NoduleDiceMetric(), [image])['nodule/num_nodules'] == 1
