"""The lung configs: what they inherit, what they override, and the tools' CLIs."""
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from mmengine.config import Config
from mmengine.registry import init_default_scope

from mmdet.registry import MODELS
from tests.test_staged_unfreeze_hook import expected_trainable

LEAVES = ('configs/lung/mask_rcnn_r101_fpn_all.py', 'configs/lung/mask_rcnn_r101_fpn_staged.py')
MMDET_BASE = 'mmdet::mask_rcnn/mask-rcnn_r101_fpn_1x_coco.py'


def _base_chain(path: Path) -> list:
    chain = []
    while True:
        bases = Config._get_base_files(str(path))
        if not bases:
            return chain
        assert len(bases) == 1, f'{path} has several _base_ files: {bases}'
        chain.append(bases[0])
        if bases[0].startswith('mmdet::'):
            return chain
        path = path.parent / bases[0]


@pytest.mark.parametrize('leaf', LEAVES)
def test_leaf_configs_fine_tune_the_coco_r101_on_native_512_slices(repo_root, leaf):
    assert _base_chain(repo_root / leaf)[-1] == MMDET_BASE
    cfg = Config.fromfile(str(repo_root / leaf))
    assert cfg.model.backbone.depth == 101 and cfg.model.neck.type == 'FPN'
    assert cfg.model.backbone.frozen_stages == -1  # the staged hook does the freezing
    assert cfg.model.backbone.init_cfg is None and 'mask_rcnn_r101_fpn_1x_coco' in cfg.load_from
    assert cfg.model.roi_head.bbox_head.num_classes == 1
    assert cfg.model.roi_head.mask_head.num_classes == 1
    assert cfg.optim_wrapper.optimizer.type == 'SGD'
    assert cfg.optim_wrapper.optimizer.lr == 1e-4 and cfg.optim_wrapper.optimizer.momentum == 0.9
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        dataset = cfg[loader].dataset
        assert dataset.metainfo.classes == ('nodule', )
        assert dataset.data_root == 'data/luna16_coco/'
        types = [t.type for t in dataset.pipeline]
        assert 'RandomFlip' not in types  # left-right flips swap the lungs
        assert [t.scale for t in dataset.pipeline if t.type == 'Resize'] == [(512, 512)]
    assert cfg.test_evaluator[0].ann_file == 'data/luna16_coco/annotations/instances_test.json'


def test_staged_config_follows_matterports_stages_on_the_r101(repo_root):
    cfg = Config.fromfile(str(repo_root / LEAVES[1]))
    assert cfg.find_unused_parameters is True
    (hook, ) = [h for h in cfg.custom_hooks if h.type == 'StagedUnfreezeHook']
    assert [(s.name, s.begin, s.lr_mult) for s in hook.stages] == [
        ('heads', 0, 1.0), ('3+', 6, 1.0), ('all', 18, 0.1)]
    assert hook.stages[-1].begin < cfg.train_cfg.max_epochs == 24

    from projects.lung_nodule.engine import StagedUnfreezeHook
    init_default_scope('mmdet')
    names = [n for n, _ in MODELS.build(cfg.model).named_parameters()]
    staged = StagedUnfreezeHook(stages=hook.stages, by_epoch=hook.by_epoch)
    for stage in staged.stages:
        assert {n for n in names if stage.trains(n)} == expected_trainable(names, stage.name)


# ----------------------------------------------------------------------------- the CLIs
@pytest.mark.parametrize('script', ['tools/train.py', 'tools/test.py'])
def test_python_tools_have_help(repo_root, script):
    proc = subprocess.run([sys.executable, script, '--help'], cwd=repo_root,
                          capture_output=True, text=True)
    assert proc.returncode == 0 and 'usage:' in proc.stdout, proc.stderr[-2000:]


@pytest.mark.parametrize('script, nargs', [
    ('tools/dist_train.sh', 2), ('tools/dist_test.sh', 3), ('tools/slurm_train.sh', 4)])
def test_shell_tools_have_help_and_name_missing_arguments(repo_root, script, nargs):
    ok = subprocess.run(['bash', script, '--help'], cwd=repo_root, capture_output=True, text=True)
    assert ok.returncode == 0 and ok.stdout.startswith(f'Usage: {script}')
    bad = subprocess.run(['bash', script, 'only-one'], cwd=repo_root, capture_output=True,
                         text=True)
    assert bad.returncode == 2 and "got 1 argument(s): only-one" in bad.stderr


def test_dist_train_names_a_bad_process_count(repo_root):
    proc = subprocess.run(['bash', 'tools/dist_train.sh', 'cfg.py', 'two'], cwd=repo_root,
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "got 'two'" in proc.stderr


def test_slurm_train_runs_train_py_under_srun(repo_root, tmp_path):
    fake_srun = tmp_path / 'srun'
    fake_srun.write_text('#!/usr/bin/env bash\nprintf "%s\\n" "$@"\n')
    fake_srun.chmod(fake_srun.stat().st_mode | stat.S_IEXEC)
    env = dict(os.environ, PATH=f'{tmp_path}:{os.environ["PATH"]}', GPUS='4')
    proc = subprocess.run(
        ['bash', 'tools/slurm_train.sh', 'gpu', 'lung', LEAVES[1], 'work_dirs/x', '--amp'],
        cwd=repo_root, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    args = proc.stdout.split('\n')
    assert args[:2] == ['-p', 'gpu'] and '--ntasks=4' in args and '--gres=gpu:4' in args
    train = args.index(str(repo_root / 'tools' / 'train.py'))
    assert args[train + 1:train + 5] == [LEAVES[1], '--work-dir=work_dirs/x', '--launcher=slurm',
                                         '--amp']
