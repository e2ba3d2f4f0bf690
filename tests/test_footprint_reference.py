"""The true footprints as detections: the reference AP50 of the demo report."""
import json
import math

import numpy as np
import pytest
import SimpleITK as sitk
from pycocotools import mask as mask_utils

from projects.lung_nodule.evaluation.footprint_reference import footprint_reference
from tests.tiny_coco import write_tiny_coco


def _write_labels(coco_json, labels_dir, shrink=None):
    """One label volume per scan of ``coco_json`` whose footprints are its masks; mask
    number ``shrink`` (0-based, over the file) becomes a disc of 0.4x its radius."""
    coco = json.loads(coco_json.read_text())
    labels_dir.mkdir(exist_ok=True)
    for image in coco['images']:
        labels = np.zeros((1, image['height'], image['width']), np.uint16)
        for k, ann in enumerate(coco['annotations']):
            if ann['image_id'] != image['id']:
                continue
            mask = mask_utils.decode(ann['segmentation']).astype(bool)
            if k == shrink:
                rows, cols = np.nonzero(mask)
                radius = 0.4 * math.sqrt(mask.sum() / math.pi)
                yy, xx = np.mgrid[:mask.shape[0], :mask.shape[1]]
                mask = (yy - rows.mean())**2 + (xx - cols.mean())**2 <= radius**2
            labels[0][mask] = k + 1
        sitk.WriteImage(sitk.GetImageFromArray(labels),
                        str(labels_dir / f'{image["seriesuid"]}.nii.gz'))


def test_footprints_equal_to_the_masks_score_ap50_one(tmp_path):
    root = write_tiny_coco(tmp_path / 'coco', num_images=2, size=128)
    coco_json = root / 'annotations/instances_test.json'
    _write_labels(coco_json, tmp_path / 'labels')
    ref = footprint_reference(coco_json, tmp_path / 'labels')
    assert (ref.footprints, ref.masks) == (4, 4)
    assert ref.ap50 == pytest.approx(1.0) and ref.ap == pytest.approx(1.0)


def test_a_footprint_smaller_than_its_disc_misses_it(tmp_path):
    # a disc of 0.4x the radius overlaps its mask at IoU 0.16 < 0.5: one of four missed
    root = write_tiny_coco(tmp_path / 'coco', num_images=2, size=128)
    coco_json = root / 'annotations/instances_test.json'
    _write_labels(coco_json, tmp_path / 'labels', shrink=1)
    ref = footprint_reference(coco_json, tmp_path / 'labels')
    assert ref.footprints == 4
    assert 0.5 < ref.ap50 < 0.8  # three of four found at precision 3/4 or better


def test_a_scan_without_labels_is_named(tmp_path):
    root = write_tiny_coco(tmp_path / 'coco', num_images=1, size=64)
    (tmp_path / 'labels').mkdir()
    with pytest.raises(FileNotFoundError, match=r'tiny\.test\.0\.nii\.gz'):
        footprint_reference(root / 'annotations/instances_test.json', tmp_path / 'labels')


def test_labels_on_another_grid_are_refused(tmp_path):
    root = write_tiny_coco(tmp_path / 'coco', num_images=1, size=64)
    (tmp_path / 'labels').mkdir()
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((1, 32, 32), np.uint16)),
                    str(tmp_path / 'labels/tiny.test.0.nii.gz'))
    with pytest.raises(ValueError, match='64x64'):
        footprint_reference(root / 'annotations/instances_test.json', tmp_path / 'labels')


def test_the_report_names_a_reference_it_cannot_compute(tmp_path, caplog):
    from projects.lung_nodule.demo.report import DemoRun, reference_ap50
    root = write_tiny_coco(tmp_path / 'coco', num_images=1, size=64)
    (tmp_path / 'labels').mkdir()
    run = DemoRun(out=tmp_path, data_label='synthetic data', machine='', started_utc='',
                  steps=[], coco_root=root, splits_csv=tmp_path / 'splits.csv', test_scans=1,
                  patch_metrics=tmp_path / 'p.json', det_metrics=tmp_path / 'd.json',
                  predictions=tmp_path / 'p.pkl', train_dir=tmp_path, eval_dir=tmp_path,
                  infer_dir=tmp_path, labels_dir=tmp_path / 'labels')
    assert reference_ap50(run) is None  # the rest of the report is still written
    assert 'tiny.test.0.nii.gz' in caplog.text
    _write_labels(root / 'annotations/instances_test.json', tmp_path / 'labels')
    assert reference_ap50(run).ap50 == pytest.approx(1.0)
