"""The staged Mask R-CNN starts training from the ResNet-101 patch classifier.

A real (1-iteration) ResNet-101 patch classifier checkpoint is merged into a
stand-in for the COCO Mask R-CNN checkpoint (random weights: nothing can be
downloaded), and ``Runner.train()`` of
``configs/lung/mask_rcnn_r101_fpn_staged_patch-backbone.py`` runs one
iteration from it: every backbone tensor at the start of training is the
classifier's, every other tensor the detector checkpoint's.
"""
import importlib.util
import subprocess
import sys

import pytest
import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.registry import init_default_scope
from mmengine.runner import Runner

import projects.lung_nodule.registry  # noqa: F401  (registers our modules, checkpoint loader)
from projects.lung_nodule.checkpoint import load_checkpoint_file
from tests.tiny_patches import tiny_run_config, write_tiny_patches

DET_CONFIG = 'configs/lung/mask_rcnn_r101_fpn_staged_patch-backbone.py'
CLS_CONFIG = 'configs/patch_cls/resnet101_1xb64_lung-patch.py'
MERGE_TOOL = 'tools/model_converters/merge_patch_backbone.py'


class _StateAtFirstIter(Hook):
    """Copy the model's state dict just before the first training step."""
    priority = 'LOWEST'  # after every other hook's before_train_iter

    def __init__(self):
        self.state = None

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        if runner.iter == 0:
            self.state = {k: v.detach().clone()
                          for k, v in runner.model.state_dict().items()}


def _patch_classifier(repo_root, tmp_path) -> str:
    """Train the ResNet-101 patch classifier 1 iteration; its work dir."""
    patches = write_tiny_patches(
        tmp_path / 'patches', per_class={'train': 1, 'val': 1, 'test': 1})
    cfg = tiny_run_config(
        repo_root / CLS_CONFIG, patches, tmp_path / 'classifier',
        checkpoint=dict(type='CheckpointHook', interval=1,
                        save_optimizer=False, save_param_scheduler=False))
    Runner.from_cfg(cfg).train()
    return cfg.work_dir


def _merge_module(repo_root):
    spec = importlib.util.spec_from_file_location(
        'merge_patch_backbone', repo_root / MERGE_TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_merge_refuses_backbones_that_do_not_match(repo_root, tmp_path):
    merge = _merge_module(repo_root)
    det = {'backbone.conv1.weight': torch.zeros(4, 3, 3, 3),
           'backbone.bn1.weight': torch.zeros(4),
           'neck.conv.weight': torch.zeros(2, 4, 1, 1)}
    torch.save(dict(state_dict=det), tmp_path / 'det.pth')
    cls = {'backbone.conv1.weight': torch.ones(4, 3, 3, 3),
           'backbone.bn1.weight': torch.ones(4),
           'head.fc.weight': torch.ones(2, 4)}
    torch.save(dict(state_dict=cls), tmp_path / 'cls.pth')
    out = tmp_path / 'out.pth'
    stats = merge.merge_patch_backbone(
        str(tmp_path / 'det.pth'), str(tmp_path / 'cls.pth'), str(out))
    assert stats == dict(replaced=2, replaced_params=4 * 27 + 4, kept=1)
    merged = load_checkpoint_file(str(out))['state_dict']
    assert sorted(merged) == sorted(det)  # no classifier head comes along
    assert torch.equal(merged['backbone.conv1.weight'], cls['backbone.conv1.weight'])
    assert torch.equal(merged['neck.conv.weight'], det['neck.conv.weight'])

    torch.save(dict(state_dict={**cls, 'backbone.layer5.weight': torch.ones(1)}),
               tmp_path / 'deeper.pth')
    with pytest.raises(KeyError, match=r"only in the classifier \['backbone.layer5"):
        merge.merge_patch_backbone(str(tmp_path / 'det.pth'),
                                   str(tmp_path / 'deeper.pth'), str(out))
    torch.save(dict(state_dict={**cls, 'backbone.bn1.weight': torch.ones(8)}),
               tmp_path / 'wider.pth')
    with pytest.raises(ValueError, match=r"'backbone.bn1.weight', \(4,\), \(8,\)"):
        merge.merge_patch_backbone(str(tmp_path / 'det.pth'),
                                   str(tmp_path / 'wider.pth'), str(out))
    with pytest.raises(FileNotFoundError, match='without a last_checkpoint'):
        merge.resolve_checkpoint(str(tmp_path))


def test_config_takes_the_backbone_from_load_from_only(repo_root):
    cfg = Config.fromfile(str(repo_root / DET_CONFIG))
    assert cfg.model.backbone.init_cfg is None
    assert cfg.model.backbone.depth == 101
    assert cfg.load_from.endswith('mask_rcnn_r101_fpn_coco_patch-r101.pth')
    # the staged schedule of the parent config is kept
    assert cfg.custom_hooks[0].type == 'StagedUnfreezeHook'


@pytest.mark.slow
def test_training_starts_from_the_patch_classifier_backbone(
        repo_root, tiny_coco_root, tmp_path):
    classifier_dir = _patch_classifier(repo_root, tmp_path)
    with open(f'{classifier_dir}/last_checkpoint') as f:
        classifier = load_checkpoint_file(f.read().strip())['state_dict']

    # a stand-in for the COCO checkpoint: a randomly initialised detector
    cfg = Config.fromfile(str(repo_root / DET_CONFIG))
    init_default_scope('mmdet')
    from mmdet.registry import MODELS
    torch.manual_seed(1)
    detector = MODELS.build(cfg.model)
    detector.init_weights()
    coco = {k: v.clone() for k, v in detector.state_dict().items()}
    torch.save(dict(state_dict=coco), tmp_path / 'coco.pth')
    del detector

    merged = tmp_path / 'merged.pth'
    result = subprocess.run(
        [sys.executable, MERGE_TOOL, str(tmp_path / 'coco.pth'),
         classifier_dir, str(merged)],
        cwd=repo_root, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    backbone_keys = [k for k in coco if k.startswith('backbone.')]
    assert f'{len(backbone_keys)} backbone tensors' in result.stdout

    # Runner.train() of the config, one iteration, from the merged checkpoint
    cfg.load_from = str(merged)
    cfg.work_dir = str(tmp_path / 'detector')
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[key].dataset.data_root = str(tiny_coco_root)
        cfg[key].num_workers = 0
        cfg[key].persistent_workers = False
    cfg.train_dataloader.batch_size = 2  # 2 train slices: one iteration
    for key in ('val_evaluator', 'test_evaluator'):
        cfg[key][0].ann_file = str(tiny_coco_root / 'annotations' /
                                   f"instances_{key.split('_')[0]}.json")
    cfg.train_cfg.max_epochs = 1
    cfg.train_cfg.val_interval = 2
    cfg.default_hooks.checkpoint = None
    runner = Runner.from_cfg(cfg)
    snapshot = _StateAtFirstIter()
    runner.register_hook(snapshot)
    runner.train()
    assert runner.iter == 1
    start = snapshot.state
    assert start is not None

    assert sorted(k for k in start if k.startswith('backbone.')) == \
        sorted(backbone_keys)
    for key in backbone_keys:
        assert torch.equal(start[key], classifier[key]), key
    # ... and not the detector checkpoint's (independently initialised convs)
    convs = [k for k in backbone_keys if coco[k].dim() == 4]
    assert len(convs) == 104  # ResNet-101: stem + 33 x 3 + 4 downsample
    assert not any(torch.equal(start[k], coco[k]) for k in convs)
    # neck and heads: the detector checkpoint's
    others = [k for k in coco if not k.startswith('backbone.')]
    assert others
    for key in others:
        assert torch.equal(start[key], coco[key]), key
