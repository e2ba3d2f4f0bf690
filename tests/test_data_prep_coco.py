"""data_prep/luna16_to_coco.py on synthetic LUNA16 scans (issue 3, acceptance 1-3)."""
import csv
import json
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np
import pytest
import SimpleITK as sitk
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from data_prep import luna16_to_coco
from data_prep.make_synthetic_luna16 import make_synthetic_luna16
from projects.lung_nodule.ct import LungMask, read_scan

from tests.ct_reference import index_of_world, iou, read_annotations_csv, sphere_mask_from_world

SPLITS = ('train', 'val', 'test')


def _convert(root: Path, out: Path, *extra: str) -> int:
    return luna16_to_coco.main(['--luna-root', str(root), '--annotations',
                                str(root / 'annotations.csv'), '--out', str(out), *extra])


@pytest.fixture(scope='module')
def mixed(tmp_path_factory):
    """6 scans: identity, flipped z, flipped x+y, no nodule, 2 random; default shape."""
    root = tmp_path_factory.mktemp('synth_mixed')
    make_synthetic_luna16(root, num_scans=6, seed=11)
    out = root / 'coco'
    assert _convert(root, out) == 0
    return root, out


@pytest.fixture(scope='module')
def anisotropic(tmp_path_factory):
    """sx != sy != sz, x and z flipped, non-square slices; converted with 2 workers."""
    root = tmp_path_factory.mktemp('synth_aniso')
    make_synthetic_luna16(root, num_scans=3, seed=5, shape=(40, 96, 128),
                          spacing_xyz=(0.62, 0.81, 1.9), direction=(-1, 0, 0, 0, 1, 0, 0, 0, -1))
    out = root / 'coco'
    assert _convert(root, out, '--workers', '2', '--split', '0.34', '0.33', '0.33') == 0
    return root, out


def _load(out: Path, split: str) -> dict:
    return json.loads((out / 'annotations' / f'instances_{split}.json').read_text())


@pytest.mark.parametrize('dataset', ['mixed', 'anisotropic'])
def test_masks_lie_where_the_world_sphere_is(dataset, request):
    """Acceptance 1: each mask vs the sphere computed here from world coordinates."""
    root, out = request.getfixturevalue(dataset)
    nodules = read_annotations_csv(root / 'annotations.csv')
    checked = small = 0
    for split in SPLITS:
        coco = _load(out, split)
        images = {im['id']: im for im in coco['images']}
        for ann in coco['annotations']:
            image = images[ann['image_id']]
            mask = mask_utils.decode(ann['segmentation']).astype(bool)
            assert mask.shape == (image['height'], image['width'])
            candidates = [sphere_mask_from_world(image, image['height'], image['width'], c, d)
                          for c, d in nodules[image['seriesuid']]]
            expected = max(candidates, key=lambda m: iou(m, mask))
            # radius of the cross-section in pixels, from its area
            radius_px = np.sqrt(expected.sum() / np.pi)
            if radius_px >= 3:
                assert iou(mask, expected) >= 0.9
            else:
                small += 1
                np.testing.assert_array_equal(mask, expected)
            checked += 1
    assert checked >= 6


def test_flipped_and_anisotropic_fixture_really_is(anisotropic):
    root, out = anisotropic
    image = _load(out, 'train')['images'][0]
    assert image['direction'] == [-1, 0, 0, 0, 1, 0, 0, 0, -1]
    assert image['spacing_xyz'] == pytest.approx([0.62, 0.81, 1.9])
    assert (image['height'], image['width']) == (96, 128)


@pytest.mark.parametrize('dataset', ['mixed', 'anisotropic'])
def test_coco_json_bbox_area_splits(dataset, request):
    """Acceptance 2 (pycocotools part), plus the interface keys of DESIGN.md section 2."""
    root, out = request.getfixturevalue(dataset)
    with open(out / 'splits.csv', newline='') as handle:
        rows = list(csv.DictReader(handle))
    scans = sorted(p.stem for p in (root / 'subset0').glob('*.mhd'))
    assert sorted(r['seriesuid'] for r in rows) == scans  # every scan, nodules or not
    split_of = {r['seriesuid']: r['split'] for r in rows}
    assert set(split_of.values()) <= set(SPLITS)
    seen_slices = set()
    for split in SPLITS:
        path = out / 'annotations' / f'instances_{split}.json'
        coco = COCO(str(path))
        raw = _load(out, split)
        assert raw['categories'] == [{'id': 1, 'name': 'nodule'}]
        for image in raw['images']:
            assert split_of[image['seriesuid']] == split  # no seriesuid in two splits
            key = (image['seriesuid'], image['z_index'])
            assert key not in seen_slices  # no slice exported twice
            seen_slices.add(key)
            assert image['file_name'] == f'{image["seriesuid"]}_z{image["z_index"]:04d}.png'
            assert (out / 'images' / split / image['file_name']).is_file()
            assert len(image['direction']) == 9 and len(image['spacing_xyz']) == 3
            assert len(image['origin_xyz']) == 3 and isinstance(image['z_index'], int)
        for ann in raw['annotations']:
            mask = coco.annToMask(ann).astype(bool)
            ys, xs = np.nonzero(mask)
            assert ann['area'] == mask.sum()
            assert ann['bbox'] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
            assert ann['category_id'] == 1 and ann['iscrowd'] == 0
            assert ann['diameter_mm'] > 0 and isinstance(ann['nodule_id'], str)
        pngs = {p.name for p in (out / 'images' / split).glob('*.png')}
        assert pngs == {im['file_name'] for im in raw['images']}
    assert not list(out.rglob('*.tmp'))


def test_nodule_ids_are_stable_and_cover_the_three_nearest_slices(mixed):
    root, out = mixed
    nodules = read_annotations_csv(root / 'annotations.csv')
    by_id = defaultdict(list)
    for split in SPLITS:
        coco = _load(out, split)
        images = {im['id']: im for im in coco['images']}
        for ann in coco['annotations']:
            by_id[ann['nodule_id']].append((images[ann['image_id']], ann))
    assert len(by_id) == sum(len(v) for v in nodules.values())  # every nodule annotated
    for entries in by_id.values():
        image0, ann0 = entries[0]
        assert len({im['seriesuid'] for im, _ in entries}) == 1
        assert len({a['diameter_mm'] for _, a in entries}) == 1
        centre, diameter = min(nodules[image0['seriesuid']], key=lambda n: abs(n[1] - ann0['diameter_mm']))
        cz = index_of_world(centre, image0['spacing_xyz'], image0['origin_xyz'], image0['direction'])[2]
        zs = {im['z_index'] for im, _ in entries}
        nearest = sorted(range(1000), key=lambda z: abs(z - cz))[:3]
        expected = set()
        for z in nearest:
            entry = dict(image0, z_index=z)
            if sphere_mask_from_world(entry, image0['height'], image0['width'], centre, diameter).sum() >= 5:
                expected.add(z)
        assert expected <= zs and int(round(cz)) in zs
        # other slices only where a neighbouring nodule's slice cuts this sphere too
        for z in zs - expected:
            assert abs(z - cz) * image0['spacing_xyz'][2] < diameter / 2


def test_png_is_the_windowed_slice_in_array_order(mixed):
    """PNG pixels are the volume's [z, row, col] windowed, never reoriented."""
    root, out = mixed
    checked = 0
    for split in SPLITS:
        for image in _load(out, split)['images']:
            png = cv2.imread(str(out / 'images' / split / image['file_name']), cv2.IMREAD_UNCHANGED)
            assert png.dtype == np.uint8 and png.shape == (image['height'], image['width'])
            volume = sitk.GetArrayFromImage(sitk.ReadImage(str(root / 'subset0' / f'{image["seriesuid"]}.mhd')))
            hu = volume[image['z_index']].astype(np.float64)
            expected = np.floor((np.clip(hu, -1024, 800) + 1024) / 1824 * 255 + 0.5)
            inside = png > 0
            assert inside.mean() > 0.05
            # float32 in the package, float64 here: exact halves may round apart by 1
            assert np.abs(png[inside] - expected[inside]).max() <= 1
            assert (png[inside] == expected[inside]).mean() > 0.999
            # outside the lung mask everything is 0: the padding, most bone (the mask's
            # 2 mm rim may touch a rib), the air around the body
            assert (png[hu <= -1500] == 0).all() and (png[hu > 200] > 0).mean() < 0.1
            assert (png[:, :3] == 0).all() and (png[:3] == 0).all()
            checked += 1
    assert checked > 0


def test_nodule_pixels_inside_lung_mask(mixed, anisotropic):
    """Acceptance 3: >= 99% of annotated pixels inside the lung mask (juxta-pleural too)."""
    inside = total = 0
    for root, out in (mixed, anisotropic):
        truth = {s['seriesuid']: s for s in json.loads((root / 'ground_truth.json').read_text())['scans']}
        assert any(n['juxta_pleural'] for s in truth.values() for n in s['nodules'])
        for split in SPLITS:
            coco = _load(out, split)
            images = {im['id']: im for im in coco['images']}
            lungs = {}
            for ann in coco['annotations']:
                image = images[ann['image_id']]
                uid = image['seriesuid']
                if uid not in lungs:
                    scan = read_scan(root / 'subset0' / f'{uid}.mhd')
                    lungs[uid] = LungMask(scan.array, scan.geometry.spacing_xyz)
                mask = mask_utils.decode(ann['segmentation']).astype(bool)
                inside += (mask & lungs[uid].slice(image['z_index'])).sum()
                total += mask.sum()
        summary = json.loads((out / 'summary.json').read_text())['counts']
        assert summary['nodule_pixels_in_lung_permille'] >= 990
    assert inside / total >= 0.99


def test_summary_and_scans_without_nodules(mixed):
    root, out = mixed
    summary = json.loads((out / 'summary.json').read_text())
    counts = summary['counts']
    assert counts['scans_found'] == counts['scans_processed'] == 6
    assert counts['scans_without_nodules'] >= 1
    assert summary['skipped_scans'] == {}
    assert counts['annotations_train'] + counts['annotations_val'] + counts['annotations_test'] \
        == counts['annotations']


def test_resume_skips_finished_scans_and_redoes_a_missing_one(tmp_path):
    root = tmp_path / 'synth'
    make_synthetic_luna16(root, num_scans=3, seed=2, shape=(24, 64, 64))
    out = tmp_path / 'coco'
    assert _convert(root, out) == 0
    pngs = sorted(out.glob('images/*/*.png'))
    mtimes = {p: p.stat().st_mtime_ns for p in pngs}
    before = {s: _load(out, s) for s in SPLITS}
    assert _convert(root, out) == 0
    assert json.loads((out / 'summary.json').read_text())['counts']['scans_resumed'] == 3
    assert {p: p.stat().st_mtime_ns for p in pngs} == mtimes
    records = sorted((out / '.scans').glob('*.json'))
    redo = next(r for r in records if json.loads(r.read_text())['images'])
    redo.unlink()
    assert _convert(root, out) == 0
    counts = json.loads((out / 'summary.json').read_text())['counts']
    assert counts['scans_resumed'] == 2 and counts['scans_processed'] == 3
    after = {s: _load(out, s) for s in SPLITS}
    for split in SPLITS:
        for key in ('images', 'annotations'):
            assert after[split][key] == before[split][key]


def test_mmdet_coco_dataset_loads_masks_and_boxes(mixed):
    """Acceptance 2 (mmdet part): CocoDataset + LoadAnnotations(with_mask=True)."""
    from mmdet.datasets import CocoDataset
    from mmdet.utils import register_all_modules
    register_all_modules()
    root, out = mixed
    for split in SPLITS:
        dataset = CocoDataset(
            data_root=str(out), ann_file=f'annotations/instances_{split}.json',
            data_prefix=dict(img=f'images/{split}/'), metainfo=dict(classes=('nodule',)),
            pipeline=[dict(type='LoadImageFromFile'),
                      dict(type='LoadAnnotations', with_bbox=True, with_mask=True)])
        raw = _load(out, split)
        assert len(dataset) == len(raw['images']) > 0
        for i in range(len(dataset)):
            item = dataset[i]
            image_id = dataset.get_data_info(i)['img_id']
            anns = [a for a in raw['annotations'] if a['image_id'] == image_id]
            masks = item['gt_masks'].masks.astype(bool)
            assert item['img'].shape[:2] == masks.shape[1:] and len(masks) == len(anns)
            for mask, box, ann in zip(masks, item['gt_bboxes'].numpy(), anns):
                np.testing.assert_array_equal(mask, mask_utils.decode(ann['segmentation']).astype(bool))
                x, y, w, h = ann['bbox']
                np.testing.assert_allclose(box, [x, y, x + w, y + h])
            assert (item['gt_bboxes_labels'] == 0).all()


def test_excluded_findings_become_ignore_regions(mixed, tmp_path):
    """``--excluded``: LUNA16's excluded findings on the exported slices are written as
    ``iscrowd`` regions (diameter -1 -> 10 mm, the official script's rule); the nodules'
    annotations and the slices stay as without the option; a bad row is named."""
    from mmdet.datasets import CocoDataset
    from mmdet.utils import register_all_modules
    register_all_modules()
    root, out = mixed
    nodules = read_annotations_csv(root / 'annotations.csv')
    uid, [(centre, _), *_] = next((u, n) for u, n in sorted(nodules.items()) if n)
    beside = (centre[0] + 3.0, centre[1], centre[2])  # on the nodule's slices
    excluded = tmp_path / 'annotations_excluded.csv'
    excluded.write_text('seriesuid,coordX,coordY,coordZ,diameter_mm\n'
                        f'{uid},{beside[0]},{beside[1]},{beside[2]},-1\n'
                        f'{uid},nan,0,0,5\n')
    out2 = tmp_path / 'coco'
    assert _convert(root, out2, '--excluded', str(excluded)) == 0
    summary = json.loads((out2 / 'summary.json').read_text())
    assert summary['counts']['excluded_rows'] == 1
    assert any('line 3' in w and 'coordinates' in w for w in summary['problems'])
    regions = expected_regions = 0
    for split in SPLITS:
        before, after = _load(out, split), _load(out2, split)
        assert after['images'] == before['images']
        nodule_anns = [a for a in after['annotations'] if not a['iscrowd']]
        assert [{k: v for k, v in a.items() if k != 'id'} for a in nodule_anns] == \
            [{k: v for k, v in a.items() if k != 'id'} for a in before['annotations']]
        images = {im['id']: im for im in after['images']}
        expected_regions += sum(
            sphere_mask_from_world(im, im['height'], im['width'], beside, 10.0).sum() >= 5
            for im in after['images'] if im['seriesuid'] == uid)
        for ann in after['annotations']:
            if not ann['iscrowd']:
                continue
            regions += 1
            image = images[ann['image_id']]
            assert image['seriesuid'] == uid and ann['excluded_line'] == 2
            assert ann['diameter_mm'] == 10.0 and 'nodule_id' not in ann
            expected = sphere_mask_from_world(image, image['height'], image['width'], beside, 10.0)
            assert iou(mask_utils.decode(ann['segmentation']).astype(bool), expected) >= 0.9
        if any(a['iscrowd'] for a in after['annotations']):
            # mmdet reads a crowd region as an ignored instance
            dataset = CocoDataset(
                data_root=str(out2), ann_file=f'annotations/instances_{split}.json',
                data_prefix=dict(img=f'images/{split}/'), metainfo=dict(classes=('nodule',)),
                pipeline=[])
            flags = [inst['ignore_flag'] for i in range(len(dataset))
                     for inst in dataset.get_data_info(i)['instances']]
            assert sum(flags) == sum(a['iscrowd'] for a in after['annotations'])
    assert regions == expected_regions >= 1  # every exported slice the finding cuts
    assert summary['counts']['excluded_regions'] == regions
