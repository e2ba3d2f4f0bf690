"""browse_dataset.py and tools/test.py --show-dir write PNGs that mark the nodules."""
import copy
import importlib.util
import json
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

from mmdet.registry import MODELS, VISUALIZERS
from tests.conftest import forget_visualizers
from tests.test_train_resume_test_tools import TINY, _data_options

STAGED = 'configs/lung/mask_rcnn_r101_fpn_staged.py'


def _nodule_masks(root, split: str, file_name: str) -> np.ndarray:
    from pycocotools import mask as mask_utils
    coco = json.loads((root / 'annotations' / f'instances_{split}.json').read_text())
    image_id = next(i['id'] for i in coco['images'] if i['file_name'] == file_name)
    return np.array([mask_utils.decode(a['segmentation']) for a in coco['annotations']
                     if a['image_id'] == image_id], dtype=bool)


def _assert_marks_nodules(drawn: np.ndarray, source: np.ndarray, masks: np.ndarray) -> None:
    """Changed inside every nodule; untouched well away from all of them."""
    diff = np.abs(drawn.astype(int) - source.astype(int)).sum(axis=2) > 10
    for mask in masks:
        assert diff[mask].mean() > 0.5
    far = cv2.dilate(masks.any(0).astype(np.uint8), np.ones((41, 41), np.uint8)) == 0
    assert far.sum() > 1000 and diff[far].mean() < 0.01


def test_browse_dataset_writes_marked_pngs(repo_root, tiny_coco_root, tmp_path):
    spec = importlib.util.spec_from_file_location('browse_dataset',
                                                  repo_root / 'tools/browse_dataset.py')
    sys.path.insert(0, str(repo_root / 'tools'))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    cfg = Config.fromfile(str(repo_root / STAGED))
    cfg.merge_from_dict(dict(a.split('=', 1) for a in _data_options(tiny_coco_root)[:3]))
    cfg.val_dataloader.dataset.pipeline[1].scale = (128, 128)

    # val: the test pipeline, deterministic, so the PNG lines up with the input
    written = tool.browse(cfg, str(tmp_path / 'val'), split='val')
    assert len(written) == 2
    for out_file in written:
        name = out_file.split('/')[-1]
        drawn = cv2.imread(out_file)
        source = cv2.imread(str(tiny_coco_root / 'images' / 'val' / name))
        assert drawn.shape == source.shape
        _assert_marks_nodules(drawn, source, _nodule_masks(tiny_coco_root, 'val', name))

    # train: augmented, drawn twice per sample
    cfg.train_dataloader.dataset.pipeline[2].scale = (128, 128)
    written = tool.browse(cfg, str(tmp_path / 'train'), split='train', repeat=2)
    assert sorted(p.split('/')[-1] for p in written) == [
        'train_000_0.png', 'train_000_1.png', 'train_001_0.png', 'train_001_1.png']


def test_nodule_visualizer_one_colour_per_nodule(repo_root):
    from mmengine.structures import InstanceData
    init_default_scope('mmdet')
    cfg = Config.fromfile(str(repo_root / STAGED))
    visualizer = VISUALIZERS.build({**cfg.visualizer, 'vis_backends': None,
                                    'name': 'colour_test'})
    visualizer.dataset_meta = dict(classes=('nodule', ), palette=[(220, 20, 60)])
    masks = np.zeros((2, 64, 64), dtype=bool)
    masks[0, 10:20, 10:20] = masks[1, 40:50, 40:50] = True
    drawn = visualizer._draw_instances(
        np.zeros((64, 64, 3), np.uint8),
        InstanceData(masks=masks, labels=torch.zeros(2, dtype=torch.long),
                     bboxes=torch.tensor([[10., 10, 20, 20], [40, 40, 50, 50]])),
        ['nodule'], [(220, 20, 60)])
    first, second = drawn[15, 15].astype(int), drawn[45, 45].astype(int)
    assert first.sum() > 0 and second.sum() > 0
    assert np.abs(first - second).sum() > 60  # two colours, not the class colour twice


@pytest.mark.slow
def test_show_dir_writes_gt_beside_predictions(repo_root, tiny_coco_root, tmp_path):
    cfg = Config.fromfile(str(repo_root / STAGED))
    cfg.model.backbone.update(depth=18, init_cfg=None)  # as TINY
    cfg.model.neck.in_channels = [64, 128, 256, 512]
    init_default_scope('mmdet')
    model = MODELS.build(cfg.model)
    checkpoint = tmp_path / 'untrained.pth'
    torch.save(dict(state_dict=model.state_dict(), meta=dict()), checkpoint)

    work_dir = tmp_path / 'test'
    proc = subprocess.run(
        [sys.executable, 'tools/test.py', STAGED, str(checkpoint), '--work-dir',
         str(work_dir), '--show-dir', 'vis', '--cfg-options', *TINY,
         *_data_options(tiny_coco_root)],
        cwd=repo_root, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-4000:]
    pngs = sorted(work_dir.glob('*/vis/*.png'))
    assert [p.name for p in pngs] == ['test_000.png', 'test_001.png']
    for png in pngs:
        drawn = cv2.imread(str(png))
        source = cv2.imread(str(tiny_coco_root / 'images' / 'test' / png.name))
        # left: the input with the ground truth; right: the predictions
        assert drawn.shape == (128, 256, 3)
        _assert_marks_nodules(drawn[:, :128], source,
                              _nodule_masks(tiny_coco_root, 'test', png.name))


def test_demo_overlay_score_labels_neither_overlap_nor_leave_the_window():
    """Detections stacked on one structure (the demo's duplicates on a vessel) get labels
    apart from each other, inside the 96 px window, the top edge included."""
    from projects.lung_nodule.demo.figures import _label_position
    for left, top, bottom in ((40, 50, 60), (90, 1, 12), (0, 0, 95)):
        placed = []
        for _ in range(4):
            _label_position(left, top, bottom, placed, (96, 96))
        assert len(placed) == 4
        for i, (x, y) in enumerate(placed):
            assert 0 <= x <= 86 and 5 <= y <= 95, (left, top, placed)
            for px, py in placed[:i]:
                assert abs(x - px) >= 10 or abs(y - py) >= 5, placed


def test_a_later_runner_gets_its_own_visualizer(repo_root, tmp_path):
    """What conftest's autouse fixture does between tests: a visualizer built by name, as
    a Runner builds it, writes into its own save_dir, not into the previous one's."""
    import projects.lung_nodule.registry  # noqa: F401  (NoduleVisualizer registered)
    init_default_scope('mmdet')
    cfg = Config.fromfile(str(repo_root / STAGED)).visualizer

    def build(save_dir):  # a copy: mmengine fills save_dir into the backend dicts in place
        return VISUALIZERS.build({**copy.deepcopy(cfg), 'save_dir': str(save_dir)})

    first = build(tmp_path / 'first')
    with pytest.warns(UserWarning, match='has been created'):  # mmengine's own reuse
        assert build(tmp_path / 'second') is first
    forget_visualizers()
    second = build(tmp_path / 'second')
    assert second is not first
    second.add_config(Config(dict(a=1)))
    first.add_config(Config(dict(a=0)))
    assert (tmp_path / 'second/vis_data/config.py').read_text() != \
        (tmp_path / 'first/vis_data/config.py').read_text()
