"""Patch classifier configs (Table I): dataset labels, AUC metric, and every
config building and training 2 iterations on the CPU."""
import copy

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.evaluator import Evaluator
from mmengine.registry import init_default_scope
from mmengine.runner import Runner
from mmpretrain.datasets import CustomDataset
from mmpretrain.structures import DataSample

import projects.lung_nodule.registry  # noqa: F401  (registers our modules, checkpoint loader)
from projects.lung_nodule.datasets import PatchFolderDataset
from projects.lung_nodule.evaluation.metrics import BinaryAUC, binary_auc
from tests.tiny_patches import tiny_run_config, write_tiny_patches

CLASSES = ('normal', 'nodule')

# config -> (input C, H, W after the pipeline, last feature map H, W)
CONFIGS = {
    'lenet5_1xb64_lung-patch.py': ((1, 32, 32), (1, 1)),
    'alexnet_1xb64_lung-patch.py': ((3, 64, 64), (1, 1)),
    'vgg16bn_1xb64_lung-patch.py': ((3, 50, 50), (1, 1)),
    'resnet18_1xb64_lung-patch.py': ((3, 50, 50), (2, 2)),
    'resnet20_1xb64_lung-patch.py': ((3, 50, 50), (13, 13)),
    'resnet50_1xb64_lung-patch.py': ((3, 50, 50), (2, 2)),
    'resnet101_1xb64_lung-patch.py': ((3, 50, 50), (2, 2)),
}


@pytest.fixture(scope='module')
def patch_root(tmp_path_factory):
    return write_tiny_patches(
        tmp_path_factory.mktemp('patches'),
        per_class={'train': 2, 'val': 2, 'test': 2})


# ---------------------------------------------------------------- dataset
def test_nodule_is_label_1_whatever_the_folder_order(patch_root):
    init_default_scope('mmpretrain')
    dataset = PatchFolderDataset(
        data_root=str(patch_root), data_prefix='train',
        metainfo=dict(classes=CLASSES))
    assert dataset.metainfo['classes'] == CLASSES
    labels = {info['img_path'].split('/')[-2]: info['gt_label']
              for info in dataset.load_data_list()}
    assert labels == {'normal': 0, 'nodule': 1}
    # why the subclass exists: mmpretrain numbers folders alphabetically and
    # only checks the number of classes, so `nodule` would be label 0 while
    # metainfo calls label 0 `normal`
    upstream = CustomDataset(
        data_root=str(patch_root), data_prefix='train',
        metainfo=dict(classes=CLASSES))
    upstream_labels = {info['img_path'].split('/')[-2]: info['gt_label']
                       for info in upstream.load_data_list()}
    assert upstream_labels == {'normal': 1, 'nodule': 0}


def test_unexpected_class_folders_are_an_error(patch_root, tmp_path):
    init_default_scope('mmpretrain')
    with pytest.raises(ValueError, match=r"expected exactly \['normal', 'x'\]"):
        PatchFolderDataset(
            data_root=str(patch_root), data_prefix='train',
            metainfo=dict(classes=('normal', 'x')))
    with pytest.raises(ValueError, match='needs metainfo'):
        PatchFolderDataset(data_root=str(patch_root), data_prefix='train')


# ---------------------------------------------------------------- metric
def test_binary_auc_values():
    assert binary_auc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == 0.75
    assert binary_auc([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1]) == 1.0
    assert binary_auc([0.9, 0.8, 0.2, 0.1], [0, 0, 1, 1]) == 0.0
    assert binary_auc([0.5, 0.5, 0.5, 0.5], [0, 1, 0, 1]) == 0.5  # ties
    assert np.isnan(binary_auc([0.2, 0.3], [1, 1]))
    # against the trapezoidal area under the ROC curve
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 200).astype(bool)
    scores = rng.normal(labels.astype(float), 1.0).round(1)  # with ties
    thresholds = np.r_[np.inf, np.unique(scores)[::-1]]
    tpr = [(scores[labels] >= t).mean() for t in thresholds]
    fpr = [(scores[~labels] >= t).mean() for t in thresholds]
    assert binary_auc(scores, labels) == pytest.approx(np.trapezoid(tpr, fpr))


def test_binary_auc_metric_uses_the_named_class_score():
    init_default_scope('mmpretrain')
    evaluator = Evaluator([dict(type='BinaryAUC', pos_label='nodule')])
    evaluator.dataset_meta = dict(classes=CLASSES)
    samples = [
        DataSample().set_gt_label(gt).set_pred_score(
            torch.tensor([1 - p, p]))
        for gt, p in ((0, 0.1), (0, 0.4), (1, 0.35), (1, 0.8))
    ]
    evaluator.process(samples)
    assert evaluator.evaluate(4) == {'roc/auc': pytest.approx(75.0)}
    metric = BinaryAUC(pos_label='tumour')
    metric.dataset_meta = dict(classes=CLASSES)
    with pytest.raises(ValueError, match="'tumour' is not one of"):
        metric.process(None, [samples[0].to_dict()])


# ---------------------------------------------------------------- configs

def test_configs_share_data_schedule_and_classes(repo_root):
    for name in CONFIGS:
        cfg = Config.fromfile(str(repo_root / 'configs/patch_cls' / name))
        assert cfg.default_scope == 'mmpretrain'
        assert cfg.randomness.seed == 0
        assert cfg.load_from is None
        assert cfg.model.backbone.get('init_cfg') is None  # nothing to fetch
        assert cfg.model.head.num_classes == 2
        for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
            dataset = cfg[key].dataset
            assert dataset.type == 'PatchFolderDataset'
            assert dataset.metainfo['classes'] == CLASSES
        assert cfg.test_dataloader.dataset.data_prefix == 'test'
        assert cfg.train_cfg.max_epochs == 30
        assert cfg.optim_wrapper.optimizer.type == 'Adam'


@pytest.mark.slow
@pytest.mark.parametrize('name', list(CONFIGS))
def test_config_builds_and_trains_2_iterations(repo_root, patch_root,
                                              tmp_path, name):
    (in_shape, feat_hw) = CONFIGS[name]
    # 4 train patches, batch 2: one epoch is 2 iterations
    cfg = tiny_run_config(repo_root / 'configs/patch_cls' / name, patch_root,
                          tmp_path)
    runner = Runner.from_cfg(cfg)
    model = runner.model

    batch = next(iter(runner.train_dataloader))
    data = model.data_preprocessor(copy.deepcopy(batch), training=False)
    assert tuple(data['inputs'].shape[1:]) == in_shape
    with torch.no_grad():
        feats = model.backbone(data['inputs'])
    assert tuple(feats[-1].shape[-2:]) == feat_hw
    assert feats[-1].shape[1] == cfg.model.head.in_channels

    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    runner.train()
    assert runner.iter == 2
    loss = runner.message_hub.get_scalar('train/loss').current()
    assert np.isfinite(loss)
    changed = [k for k, v in model.named_parameters()
               if not torch.equal(v.detach(), before[k])]
    assert any(k.startswith('backbone.') for k in changed)
    assert 'head.fc.weight' in changed
