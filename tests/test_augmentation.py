"""Rotation/translation as configured: masks move with the nodule, boxes are re-fitted."""
import copy

import numpy as np
import pytest
from mmengine.config import Config

from mmdet.registry import DATASETS, TRANSFORMS
from mmdet.structures.bbox import HorizontalBoxes
from mmdet.structures.mask import BitmapMasks
from projects.lung_nodule.datasets import BoxesFromMasks

SIZE = 128
LUNG, NODULE = 60, 200


def ct_like_sample(y0=30, x0=70, side=20) -> dict:
    """A grey 'lung' slice with one round nodule of diameter ``side``."""
    yy, xx = np.mgrid[:SIZE, :SIZE]
    r = side / 2
    disc = (yy + 0.5 - y0 - r)**2 + (xx + 0.5 - x0 - r)**2 <= r**2
    img = np.full((SIZE, SIZE, 3), LUNG, dtype=np.uint8)
    img[disc] = NODULE
    mask = disc[None].astype(np.uint8)
    return dict(
        img=img,
        img_shape=(SIZE, SIZE),
        gt_bboxes=HorizontalBoxes(np.array([[x0, y0, x0 + side, y0 + side]], np.float32)),
        gt_bboxes_labels=np.array([0]),
        gt_ignore_flags=np.array([False]),
        gt_masks=BitmapMasks(mask, SIZE, SIZE))


def build(cfg: dict):
    return TRANSFORMS.build(cfg)


def check_encloses(results: dict) -> None:
    """The moved nodule's pixels lie in its mask; the box is the mask's tight box."""
    nodule = results['img'][..., 0] > (LUNG + NODULE) / 2
    mask = results['gt_masks'].masks[0].astype(bool)
    assert nodule.sum() > 100
    assert (nodule & mask).sum() / nodule.sum() > 0.97  # interpolation blurs the rim
    x1, y1, x2, y2 = results['gt_bboxes'].tensor[0].tolist()
    ys, xs = np.nonzero(mask)
    assert [x1, y1, x2, y2] == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
    ys, xs = np.nonzero(nodule)
    assert x1 <= xs.min() and y1 <= ys.min() and xs.max() < x2 and ys.max() < y2


def test_rotation_moves_mask_refits_box_and_fills_air():
    rotate = build(dict(type='Rotate', prob=1.0, level=10, min_mag=45.0, max_mag=45.0,
                        reversal_prob=0.0, img_border_value=0, mask_border_value=0))
    results = rotate(ct_like_sample())
    loose = results['gt_bboxes'].tensor[0].clone()
    assert results['img'][0, 0].tolist() == [0, 0, 0]  # corner: filled with air, not 128
    results = BoxesFromMasks()(results)
    check_encloses(results)
    tight = results['gt_bboxes'].tensor[0]
    # a 20 px disc stays ~20 px wide; mmdet rotates its box: 20 * sqrt(2) = 28 px
    assert 19 <= float(tight[2] - tight[0]) <= 22
    assert float(loose[2] - loose[0]) == pytest.approx(20 * 2**0.5, abs=0.5)


@pytest.mark.parametrize('axis', ['TranslateX', 'TranslateY'])
def test_translation_moves_mask_and_box_together(axis):
    shift = build(dict(type=axis, prob=1.0, level=10, min_mag=0.1, max_mag=0.1,
                       reversal_prob=0.0, img_border_value=0, mask_border_value=0))
    before = ct_like_sample()
    results = BoxesFromMasks()(shift(ct_like_sample()))
    check_encloses(results)
    moved = results['gt_bboxes'].tensor[0] - before['gt_bboxes'].tensor[0]
    dx, dy = (moved[0], moved[1]) if axis == 'TranslateX' else (moved[1], moved[0])
    assert abs(abs(float(dx)) - 0.1 * SIZE) <= 1 and float(dy) == 0


def test_nodule_moved_out_of_the_image_is_dropped():
    shift = build(dict(type='TranslateX', prob=1.0, level=10, min_mag=0.9, max_mag=0.9,
                       reversal_prob=0.0, img_border_value=0, mask_border_value=0))
    sample = ct_like_sample(x0=5)
    moved = shift(sample)
    assert moved['gt_masks'].masks.sum() == 0
    results = BoxesFromMasks()(moved)
    assert len(results['gt_masks']) == len(results['gt_bboxes']) == 0
    assert len(results['gt_bboxes_labels']) == len(results['gt_ignore_flags']) == 0
    assert repr(BoxesFromMasks()) == "BoxesFromMasks(min_area=1, box_type='hbox')"


def test_slice_or_crop_without_nodule_passes_with_no_instances():
    """A negative crop (mmdet's RandomCrop, allow_negative_crop=True) has 0 instances."""
    crop = build(dict(type='RandomCrop', crop_size=(40, 40), allow_negative_crop=True))
    sample = ct_like_sample(y0=90, x0=90, side=20)  # the nodule in the bottom-right corner
    np.random.seed(0)
    for _ in range(20):  # crops of the top-left 40x40 never hold the nodule
        results = crop({**sample, 'img': sample['img'].copy()})
        if len(results['gt_masks']) == 0:
            break
    assert len(results['gt_masks']) == 0 and results['gt_masks'].masks.shape[1:] == (40, 40)
    results = BoxesFromMasks()(results)
    assert len(results['gt_bboxes']) == len(results['gt_bboxes_labels']) == 0
    empty = {**ct_like_sample(), 'gt_masks': BitmapMasks(np.zeros((0, SIZE, SIZE), np.uint8),
                                                         SIZE, SIZE),
             'gt_bboxes': HorizontalBoxes(np.zeros((0, 4), np.float32)),
             'gt_bboxes_labels': np.zeros(0, np.int64), 'gt_ignore_flags': np.zeros(0, bool)}
    results = BoxesFromMasks()(empty)
    assert results['gt_bboxes'].tensor.shape == (0, 4)


def test_config_train_pipeline_on_the_tiny_set(repo_root, tiny_coco_root):
    """Every transform on (prob 1): masks and boxes still enclose each nodule."""
    cfg = Config.fromfile(str(repo_root / 'configs/lung/mask_rcnn_r101_fpn_staged.py'))
    dataset_cfg = cfg.train_dataloader.dataset
    types = [t.type for t in dataset_cfg.pipeline]
    assert types == ['LoadImageFromFile', 'LoadAnnotations', 'Resize', 'Rotate',
                     'TranslateX', 'TranslateY', 'BoxesFromMasks', 'PackDetInputs']
    assert 'RandomAffine' not in types
    for step in dataset_cfg.pipeline[3:6]:
        assert step.img_border_value == 0 and step.mask_border_value == 0
        step.prob = 1.0
    dataset_cfg.data_root = f'{tiny_coco_root}/'
    dataset_cfg.pipeline[2].scale = (SIZE, SIZE)
    dataset = DATASETS.build(dataset_cfg)
    np.random.seed(0)
    for index in range(len(dataset)):
        raw = dataset.get_data_info(index)
        sample = dataset[index]['data_samples']
        masks = sample.gt_instances.masks.masks.astype(bool)
        boxes = sample.gt_instances.bboxes.tensor.numpy()
        assert 0 < len(masks) <= len(raw['instances'])
        for mask, (x1, y1, x2, y2) in zip(masks, boxes):
            ys, xs = np.nonzero(mask)
            assert (x1, y1, x2, y2) == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)


def test_demo_crop_never_holds_only_an_ignore_region(repo_root):
    """The demo's crops must each hold a nodule: an excluded finding's ignore region
    (iscrowd) is dropped before RandomCrop, which would count it as an object, and so
    it never reaches CopyPaste either."""
    cfg = Config.fromfile(str(repo_root / 'configs/lung/demo/mask_rcnn_r18_fpn_staged_demo.py'))
    load = [dict(step) for step in cfg.train_dataloader.dataset.dataset.pipeline]
    types = [step['type'] for step in load]
    assert types.index('DropIgnoredInstances') < types.index('RandomCrop')
    assert types[2] == 'Resize'  # tools/run_demo.py sets its scale by index
    sample = ct_like_sample(y0=10, x0=10, side=12)  # the nodule, top left
    mass = np.zeros((1, SIZE, SIZE), np.uint8)
    mass[0, 80:120, 80:120] = 1  # an excluded mass, bottom right
    sample['gt_masks'] = BitmapMasks(np.concatenate([sample['gt_masks'].masks, mass]),
                                     SIZE, SIZE)
    sample['gt_bboxes'] = HorizontalBoxes(np.array([[10, 10, 22, 22], [80, 80, 120, 120]],
                                                   np.float32))
    sample['gt_bboxes_labels'] = np.array([0, 0])
    sample['gt_ignore_flags'] = np.array([False, True])
    crop = dict(type='RandomCrop', crop_size=(40, 40), allow_negative_crop=False)
    # a crop of the bottom-right corner: only the mass is in it
    with_mass = TRANSFORMS.build(crop)
    with_mass._rand_offset = lambda margin: (80, 80)
    # mmdet's RandomCrop takes the mass for an object
    assert with_mass(copy.deepcopy(sample)) is not None
    dropped = build(dict(type='DropIgnoredInstances'))(sample)
    assert dropped['gt_ignore_flags'].tolist() == [False] and len(dropped['gt_masks']) == 1
    assert dropped['gt_bboxes'].tensor.tolist() == [[10, 10, 22, 22]]
    assert with_mass(dropped) is None  # drawn again, as a crop without a nodule is
