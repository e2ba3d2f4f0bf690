"""tools/analysis/anchor_coverage.py on the tiny COCO set (12-28 px discs at 128x128)."""
import importlib.util
import subprocess
import sys

import pytest
from mmengine.config import Config

from projects.lung_nodule.datasets import image_dataset

STAGED = 'configs/lung/mask_rcnn_r101_fpn_staged.py'


def _tool(repo_root):
    spec = importlib.util.spec_from_file_location(
        'anchor_coverage', repo_root / 'tools/analysis/anchor_coverage.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _cfg(repo_root, data_root, scales, ratios):
    cfg = Config.fromfile(str(repo_root / STAGED))
    cfg.train_dataloader.dataset.data_root = f'{data_root}/'
    cfg.train_dataloader.dataset.pipeline[2].scale = (128, 128)  # native size
    cfg.model.rpn_head.anchor_generator.scales = scales
    cfg.model.rpn_head.anchor_generator.ratios = ratios
    return cfg


def test_shipped_anchors_cover_small_nodules_where_mmdets_miss_them(repo_root, tiny_coco_root):
    tool = _tool(repo_root)
    shipped = Config.fromfile(str(repo_root / STAGED)).model.rpn_head.anchor_generator
    ours = tool.anchor_coverage(_cfg(repo_root, tiny_coco_root, shipped.scales, shipped.ratios))
    assert len(ours.covered) == 4 and ours.fraction == 1.0
    mmdet_default = tool.anchor_coverage(_cfg(repo_root, tiny_coco_root, [8], [0.5, 1.0, 2.0]))
    # mmdet's smallest anchor is 32 px: it misses some of the small boxes, only small ones
    missed = [w * h for (w, h), ok in zip(mmdet_default.sizes, mmdet_default.covered) if not ok]
    assert missed and all(area < 16 * 16 for area in missed)


def test_square_anchors_cover_the_3_px_cross_sections(repo_root, tiny_coco_root):
    """The off-centre slices of small nodules are 3-5 px across: the shipped square
    anchors (6 px the smallest) give each of them a positive anchor, where one 8 px size
    at mmdet's three aspect ratios (the configs before) misses half of them."""
    tool = _tool(repo_root)
    shipped = Config.fromfile(str(repo_root / STAGED)).model.rpn_head.anchor_generator

    def coverage(scales, ratios):
        cfg = _cfg(repo_root, tiny_coco_root, scales, ratios)
        cfg.train_dataloader.dataset.pipeline[2].scale = (32, 32)  # discs of 3-7 px
        return tool.anchor_coverage(cfg)

    ours = coverage(shipped.scales, shipped.ratios)
    assert min(min(size) for size in ours.sizes) <= 3 and ours.fraction == 1.0
    assert coverage([2], [0.5, 1.0, 2.0]).fraction <= 0.5


@pytest.mark.slow
def test_cli_fails_below_min_coverage_and_says_what_to_change(repo_root, tiny_coco_root):
    proc = subprocess.run(
        [sys.executable, 'tools/analysis/anchor_coverage.py', STAGED, '--min-coverage', '0.99',
         '--cfg-options', f'train_dataloader.dataset.data_root={tiny_coco_root}/',
         'train_dataloader.dataset.pipeline.2.scale=(128,128)',
         'model.rpn_head.anchor_generator.scales=[8]'],
        cwd=repo_root, capture_output=True, text=True)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert 'anchor coverage:' in proc.stdout
    assert 'below --min-coverage 0.99' in proc.stderr and 'anchor_generator.scales' in proc.stderr


@pytest.mark.slow
def test_shipped_config_covers_the_synthetic_luna16_set(repo_root, tmp_path):
    """Acceptance: >= 99% on data made by the data preparation (default scan shape)."""
    from data_prep import luna16_to_coco
    from data_prep.make_synthetic_luna16 import make_synthetic_luna16

    make_synthetic_luna16(tmp_path / 'luna', num_scans=6, seed=0)
    assert luna16_to_coco.main([
        '--luna-root', str(tmp_path / 'luna'), '--annotations',
        str(tmp_path / 'luna' / 'annotations.csv'), '--out', str(tmp_path / 'coco')]) == 0
    for split in ('train', ):
        proc = subprocess.run(
            [sys.executable, 'tools/analysis/anchor_coverage.py', STAGED, '--split', split,
             '--min-coverage', '0.99', '--cfg-options',
             f'train_dataloader.dataset.data_root={tmp_path}/coco/',
             f'val_dataloader.dataset.data_root={tmp_path}/coco/'],
            cwd=repo_root, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
        assert 'anchor coverage: 100.00%' in proc.stdout


def test_the_demo_config_is_read_through_its_copy_paste_wrapper(repo_root, tiny_coco_root):
    """The demo's training slices sit inside a MultiImageMixDataset (CopyPaste): the tool
    measures them with the loading pipeline and leaves out the mixing."""
    tool = _tool(repo_root)
    cfg = Config.fromfile(str(repo_root / 'configs/lung/demo/mask_rcnn_r18_fpn_staged_demo.py'))
    cfg.train_dataloader.dataset.dataset.data_root = f'{tiny_coco_root}/'
    cfg.train_dataloader.dataset.dataset.pipeline[2].scale = (128, 128)
    _, pipeline = image_dataset(cfg.train_dataloader.dataset)
    assert [t.type for t in pipeline][-3:] == ['CopyPaste', 'BoxesFromMasks', 'PackDetInputs']
    coverage = tool.anchor_coverage(cfg)
    assert len(coverage.covered) == 4 and coverage.fraction == 1.0
