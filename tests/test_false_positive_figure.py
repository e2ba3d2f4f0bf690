"""The report's figure of the highest-scoring false positives on the test slices."""
import json
import pickle

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from projects.lung_nodule.demo.figures import plot_false_positives
from projects.lung_nodule.evaluation.false_positives import match_detections
from tests.tiny_coco import write_tiny_coco


def _square(top: int, left: int, size: int = 8, shape=(128, 128)) -> dict:
    mask = np.zeros(shape, dtype=np.uint8)
    mask[top:top + size, left:left + size] = 1
    return mask_utils.encode(np.asfortranarray(mask))


def test_false_positives_drawn_highest_score_first(tmp_path):
    root = write_tiny_coco(tmp_path / 'coco', num_images=2, size=128)
    coco_json = root / 'annotations/instances_test.json'
    coco = json.loads(coco_json.read_text())
    preds = []
    for image in coco['images']:
        nodule = next(a for a in coco['annotations'] if a['image_id'] == image['id'])
        # each nodule found, and two detections on nothing (corners of the slice)
        preds.append({'img_id': image['id'], 'pred_instances': {
            'scores': np.array([0.95, 0.7 + 0.1 * image['id'], 0.3]),
            'masks': [nodule['segmentation'], _square(2, 2), _square(110, 110)]}})
    with open(tmp_path / 'pred.pkl', 'wb') as handle:
        pickle.dump(preds, handle)
    matches = match_detections(coco_json, tmp_path / 'pred.pkl', score_thr=0.5)
    fps = matches.false_positives()
    assert [round(d.score, 2) for d in fps] == [0.9, 0.8]  # the 0.3 ones are below 0.5
    assert matches.counts().true_positives == 2
    png = plot_false_positives(matches, root / 'images/test', tmp_path / 'fp.png',
                               'synthetic data')
    assert png == tmp_path / 'fp.png'
    width, height = Image.open(png).size
    assert width > 400 and height > 150
    # none at score >= 0.99: no figure, nothing written
    none = match_detections(coco_json, tmp_path / 'pred.pkl', score_thr=0.99)
    assert plot_false_positives(none, root / 'images/test', tmp_path / 'none.png', 'x') is None
    assert not (tmp_path / 'none.png').exists()


def test_a_higher_operating_point_is_the_prefix_of_the_matching(tmp_path):
    """``above``: the report's matching at score 0.5 taken from the one at any score, as
    matching again at 0.5 gives it (a low-score duplicate of a nodule found at 0.5 must not
    take that nodule's place)."""
    root = write_tiny_coco(tmp_path / 'coco', num_images=2, size=128)
    coco_json = root / 'annotations/instances_test.json'
    coco = json.loads(coco_json.read_text())
    preds = []
    for image in coco['images']:
        first, second = [a for a in coco['annotations'] if a['image_id'] == image['id']]
        preds.append({'img_id': image['id'], 'pred_instances': {
            'scores': np.array([0.2, 0.9, 0.4, 0.6]),
            'masks': [first['segmentation'], first['segmentation'], second['segmentation'],
                      _square(2, 2)]}})
    with open(tmp_path / 'pred.pkl', 'wb') as handle:
        pickle.dump(preds, handle)
    every = match_detections(coco_json, tmp_path / 'pred.pkl', score_thr=0.0)
    direct = match_detections(coco_json, tmp_path / 'pred.pkl', score_thr=0.5)
    assert every.above(0.5).counts() == direct.counts()
    assert (direct.counts().true_positives, direct.counts().false_positives) == (2, 2)
    assert (every.counts().true_positives, every.counts().false_positives) == (4, 4)
    assert [d.outcome for d in every.above(0.5).detections] == \
        [d.outcome for d in direct.detections]
