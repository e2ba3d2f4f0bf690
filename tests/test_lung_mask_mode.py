"""Lung-mask modes (issue 10, point 2): the slice image of each mode, the mode written
by the exports, and the lung dataset refusing data of the other mode."""
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import SimpleITK as sitk

from data_prep import luna16_to_coco, luna16_to_patches
from projects.lung_nodule.ct import LungMask, hu_to_uint8, read_scan
from projects.lung_nodule.ct.slice_image import (LUNG_MASK_MODES, MIN_IN_LUNG_FRACTION,
                                                 mask_in_lung_fraction, slice_to_uint8)
from tests.lung_phantom import make_chest_phantom
from tests.tiny_coco import write_tiny_coco

REPO_ROOT = Path(__file__).resolve().parents[1]
UIDS = ('1.2.840.113654.1', '1.2.840.113654.2', '1.2.840.113654.3')


@pytest.fixture(scope='module')
def luna(tmp_path_factory):
    """Three phantom scans in the LUNA16 layout, a nodule in each lung of each."""
    root = tmp_path_factory.mktemp('mode_luna')
    (root / 'subset0').mkdir()
    rows = ['seriesuid,coordX,coordY,coordZ,diameter_mm']
    for i, uid in enumerate(UIDS):
        phantom = make_chest_phantom(shape_zyx=(24, 128, 128), spacing_xyz=(2.5, 2.5, 4.0),
                                     lesions=False, seed=i)
        image = sitk.GetImageFromArray(phantom.volume)
        image.SetSpacing(phantom.spacing_xyz)
        sitk.WriteImage(image, str(root / 'subset0' / f'{uid}.mhd'))
        # world = index * spacing (origin 0); the lungs' centres are at x = 160 -+ 63 mm
        rows += [f'{uid},{160 - 63},{160},{48},8.0', f'{uid},{160 + 63},{170},{40},6.0']
    (root / 'annotations.csv').write_text('\n'.join(rows) + '\n')
    return root


def _export(root: Path, out: Path, *extra: str) -> int:
    return luna16_to_coco.main(['--luna-root', str(root), '--annotations',
                                str(root / 'annotations.csv'), '--out', str(out),
                                '--split', '0.34', '0.33', '0.33', *extra])


def test_slice_image_of_each_mode(luna):
    scan = read_scan(luna / 'subset0' / f'{UIDS[0]}.mhd')
    lungs = LungMask(scan.array, scan.geometry.spacing_xyz)
    z = 12
    whole = hu_to_uint8(scan.array[z])
    lung = lungs.slice(z)
    assert 0.1 < lung.mean() < 0.6
    blank = slice_to_uint8(scan, z, lungs, mode='blank')
    assert not blank[~lung].any()
    np.testing.assert_array_equal(blank[lung], whole[lung])
    np.testing.assert_array_equal(slice_to_uint8(scan, z, lungs, mode='filter'), whole)
    np.testing.assert_array_equal(slice_to_uint8(scan, z, None, mode='blank'), whole)
    assert whole[~lung].any()  # the body outside the lungs is not black: blanking shows
    with pytest.raises(ValueError, match="'outline'.*blank"):
        slice_to_uint8(scan, z, lungs, mode='outline')


def test_mask_in_lung_fraction():
    lung = np.zeros((8, 8), bool)
    lung[:, :4] = True
    detection = np.zeros((8, 8), bool)
    detection[2:4, 2:6] = True  # half in the lung
    assert mask_in_lung_fraction(detection, lung) == 0.5
    assert mask_in_lung_fraction(detection, lung) >= MIN_IN_LUNG_FRACTION
    assert mask_in_lung_fraction(detection, ~lung) == 0.5
    assert mask_in_lung_fraction(np.zeros((8, 8), bool), lung) == 0.0
    with pytest.raises(ValueError, match='shape'):
        mask_in_lung_fraction(detection, lung[:4])


@pytest.mark.parametrize('mode', LUNG_MASK_MODES)
def test_coco_export_writes_its_mode(luna, tmp_path, mode):
    out = tmp_path / mode
    assert _export(luna, out, '--lung-mask-mode', mode) == 0
    outside_lung_pixels = 0
    for split in ('train', 'val', 'test'):
        coco = json.loads((out / 'annotations' / f'instances_{split}.json').read_text())
        assert coco['info']['lung_mask_mode'] == mode
        for image in coco['images']:
            png = cv2.imread(str(out / 'images' / split / image['file_name']), cv2.IMREAD_UNCHANGED)
            scan = read_scan(luna / 'subset0' / f'{image["seriesuid"]}.mhd')
            lung = LungMask(scan.array, scan.geometry.spacing_xyz).slice(image['z_index'])
            outside_lung_pixels += int(png[~lung].astype(bool).sum())
    if mode == 'blank':
        assert outside_lung_pixels == 0
    else:
        assert outside_lung_pixels > 1000


def test_no_lung_mask_is_the_old_name_of_filter(luna, tmp_path):
    assert _export(luna, tmp_path / 'old', '--no-lung-mask') == 0
    coco = json.loads((tmp_path / 'old' / 'annotations' / 'instances_train.json').read_text())
    assert coco['info']['lung_mask_mode'] == 'filter'
    with pytest.raises(SystemExit):
        _export(luna, tmp_path / 'both', '--no-lung-mask', '--lung-mask-mode', 'blank')


def test_patch_export_writes_its_mode(luna, tmp_path):
    out = tmp_path / 'patches'
    assert luna16_to_patches.main(['--luna-root', str(luna), '--annotations',
                                   str(luna / 'annotations.csv'), '--out', str(out),
                                   '--split', '0.34', '0.33', '0.33', '--counts', '8', '4', '4',
                                   '--expand', '2', '--neg-slices', '2',
                                   '--lung-mask-mode', 'filter']) == 0
    assert json.loads((out / 'info.json').read_text()) == {'lung_mask_mode': 'filter'}


# ------------------------------------------------------------------ the lung dataset
def _dataset(root: Path, mode: str, split: str = 'train'):
    from projects.lung_nodule.datasets import LungCocoDataset
    return LungCocoDataset(data_root=str(root), ann_file=f'annotations/instances_{split}.json',
                           data_prefix=dict(img=f'images/{split}/'),
                           metainfo=dict(classes=('nodule', )), pipeline=[],
                           lung_mask_mode=mode)


def _set_mode(root: Path, mode: str) -> None:
    for path in (root / 'annotations').glob('instances_*.json'):
        coco = json.loads(path.read_text())
        coco['info'] = {'lung_mask_mode': mode}
        path.write_text(json.dumps(coco))


def test_dataset_refuses_the_other_mode(tmp_path):
    root = write_tiny_coco(tmp_path / 'tiny')
    _set_mode(root, 'filter')
    assert len(_dataset(root, 'filter')) == 2
    with pytest.raises(ValueError) as info:
        _dataset(root, 'blank')
    message = str(info.value)
    assert 'instances_train.json' in message and "'filter'" in message and "'blank'" in message
    _set_mode(root, 'outline')
    with pytest.raises(ValueError, match='instances_train.json.*outline'):
        _dataset(root, 'filter')
    with pytest.raises(ValueError, match='outline'):
        _dataset(root, 'outline')


def test_dataset_takes_a_file_without_mode_as_blank(tmp_path):
    root = write_tiny_coco(tmp_path / 'tiny')  # its JSON has no 'info'
    with pytest.warns(UserWarning, match='taken as "blank"'):
        assert len(_dataset(root, 'blank')) == 2
    with pytest.warns(UserWarning), pytest.raises(ValueError, match="'blank'.*'filter'"):
        _dataset(root, 'filter')


def test_lung_configs_carry_the_mode_and_refuse_the_other(luna, tmp_path):
    """A model configured in one mode (the configs' default) refuses data of the other."""
    from mmengine.config import Config
    from mmdet.registry import DATASETS
    import projects.lung_nodule.registry  # noqa: F401
    cfg = Config.fromfile(str(REPO_ROOT / 'configs/lung/mask_rcnn_r101_fpn_all.py'))
    assert cfg.lung_mask_mode == 'blank'
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        dataset = cfg[loader].dataset
        assert dataset.type == 'LungCocoDataset'
        assert dataset.lung_mask_mode == cfg.lung_mask_mode
    out = tmp_path / 'filter'
    assert _export(luna, out, '--lung-mask-mode', 'filter') == 0
    dataset_cfg = cfg.test_dataloader.dataset.copy()
    dataset_cfg.update(data_root=str(out), pipeline=[])
    with pytest.raises(ValueError, match="lung_mask_mode='filter'.*lung_mask_mode='blank'"):
        DATASETS.build(dataset_cfg)
    dataset_cfg.update(lung_mask_mode='filter')
    assert len(DATASETS.build(dataset_cfg)) >= 1
