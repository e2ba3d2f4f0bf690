"""StagedUnfreezeHook on a real (ResNet-18 FPN) Mask R-CNN driven by mmengine's Runner.

What each stage trains is checked against names written out here (Matterport's
heads / 3+ / all in mmdet's names), not against the hook's own patterns.
"""
import argparse
from pathlib import Path
from types import SimpleNamespace
from typing import Dict, List, Set

import pytest
import torch
from mmengine.config import Config, DictAction
from mmengine.hooks import Hook
from mmengine.logging import MMLogger
from mmengine.optim import MultiStepLR, OptimWrapper
from mmengine.registry import init_default_scope
from mmengine.runner import Runner
from torch import nn

from mmdet.registry import MODELS
from projects.lung_nodule.engine import StagedUnfreezeHook
from tests.test_train_resume_test_tools import TINY, _data_options

STAGED = 'configs/lung/mask_rcnn_r101_fpn_staged.py'
HEADS = ('neck.', 'rpn_head.', 'roi_head.')
# fewer RoIs per image: the mask head on up to 128 positive RoIs dominates a CPU step
FEWER_ROIS = ['model.train_cfg.rcnn.sampler.num=32', 'model.train_cfg.rpn_proposal.max_per_img=100']


def expected_trainable(names: List[str], stage: str) -> Set[str]:
    """Matterport's stages in mmdet's parameter names (layer1 = res2, ...)."""
    prefixes = {
        'heads': HEADS,
        '3+': HEADS + ('backbone.layer2.', 'backbone.layer3.', 'backbone.layer4.'),
        'all': ('', ),
    }[stage]
    return {n for n in names if n.startswith(prefixes)}


def tiny_staged_cfg(repo_root: Path, data_root: Path, *options: str) -> Config:
    """The shipped staged config, shrunk with the same --cfg-options as the CLI tests."""
    parser = argparse.ArgumentParser()
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    opts = parser.parse_args(
        ['--cfg-options', *TINY, *FEWER_ROIS, *_data_options(data_root), *options]).cfg_options
    cfg = Config.fromfile(str(repo_root / STAGED))
    cfg.merge_from_dict(opts)
    return cfg


# --------------------------------------------------------------------------- config errors
@pytest.mark.parametrize('stages, message', [
    ([], 'non-empty list'),
    ([dict(name='heads', begin=1, trainable=['neck'])], 'must begin at 0'),
    ([dict(name='a', begin=0, trainable=['x']),
      dict(name='b', begin=0, trainable=['y'])], "stage 'b' begins at 0"),
    ([dict(name='a', begin=0, trainable='neck')], "got 'neck'"),
    ([dict(name='a', begin=0, trainable=['(unclosed'])], "'(unclosed'"),
    ([dict(name='a', begin=0, trainable=['x'], lr_mult=0)], 'got 0'),
    ([dict(name='a', begin=0, trainable=['x'], lr=0.1)], "unknown keys ['lr']"),
    ([dict(name='a', begin=-2, trainable=['x'])], 'got -2'),
])
def test_bad_stages_are_refused_with_the_bad_value(stages, message):
    with pytest.raises((ValueError, TypeError)) as err:
        StagedUnfreezeHook(stages=stages)
    assert message in str(err.value)


# ---------------------------------------------------------------- lr: scheduler and resume
class _Net(nn.Module):

    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Linear(2, 2)
        self.head = nn.Linear(2, 1)


def _fake_runner(lr: float = 1.0) -> SimpleNamespace:
    torch.manual_seed(0)
    model = _Net()
    optim = OptimWrapper(torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9))
    sched = MultiStepLR(optim, milestones=[3], gamma=0.5, by_epoch=False)
    return SimpleNamespace(
        model=model, optim_wrapper=optim, param_schedulers=[sched], iter=0, epoch=0,
        max_iters=6, max_epochs=1, train_loop=None, logger=MMLogger.get_current_instance())


def _iter_hook() -> StagedUnfreezeHook:
    return StagedUnfreezeHook(
        by_epoch=False,
        stages=[
            dict(name='head', begin=0, trainable=[r'head\.']),
            dict(name='all', begin=2, trainable=[r'.'], lr_mult=0.1),
        ])


def test_lr_mult_composes_with_param_scheduler_and_survives_resume():
    runner, hook = _fake_runner(), _iter_hook()
    hook.before_train(runner)
    lrs = []
    for it in range(5):
        runner.iter = it
        hook.before_train_iter(runner, it)
        lrs.append(runner.optim_wrapper.get_lr()['lr'][0])
        runner.optim_wrapper.optimizer.step()  # no gradients: nothing moves
        runner.param_schedulers[0].step()  # as ParamSchedulerHook after the iteration
    # stage x0.1 from iteration 2, scheduler x0.5 from iteration 3: both apply
    assert lrs == pytest.approx([1.0, 1.0, 0.1, 0.05, 0.05])
    assert runner.param_schedulers[0].base_values == pytest.approx([0.1])
    assert runner.model.backbone.weight.requires_grad  # 'all' trains the backbone

    # resume at iteration 5 in a fresh process: model, optimizer, scheduler, hook
    saved = dict(optim=runner.optim_wrapper.state_dict(),
                 sched=runner.param_schedulers[0].state_dict())
    resumed, hook = _fake_runner(), _iter_hook()
    resumed.optim_wrapper.load_state_dict(saved['optim'])
    resumed.param_schedulers[0].load_state_dict(saved['sched'])
    resumed.iter = 5
    hook.before_train(resumed)
    assert hook.current_stage == 'all'
    assert resumed.optim_wrapper.get_lr()['lr'] == pytest.approx([0.05])  # not 0.005
    assert resumed.model.backbone.weight.requires_grad


def test_pattern_matching_no_parameter_is_refused():
    hook = StagedUnfreezeHook(stages=[dict(name='heads', begin=0, trainable=[r'roi_head\.'])])
    with pytest.raises(ValueError, match=r"'roi_head\\\\.' matches no parameter"):
        hook.before_train(_fake_runner())


# ------------------------------------------------------------ ResNet.train() and freezing
@pytest.fixture(scope='module')
def tiny_model(repo_root):
    cfg = tiny_staged_cfg(repo_root, Path('unused'))
    init_default_scope('mmdet')
    return MODELS.build(cfg.model), cfg


def test_model_train_keeps_each_stage(tiny_model, repo_root):
    model, cfg = tiny_model
    names = [n for n, _ in model.named_parameters()]
    assert all(p.requires_grad for p in model.parameters())  # built with nothing frozen
    hook_cfg = dict(cfg.custom_hooks[0])
    hook_cfg.pop('type')
    hook = StagedUnfreezeHook(**hook_cfg)
    runner = SimpleNamespace(
        model=model, optim_wrapper=OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1)),
        param_schedulers=[], epoch=0, iter=0, max_epochs=24, max_iters=48, train_loop=None,
        logger=MMLogger.get_current_instance())
    hook.before_train(runner)
    # (stage, epoch, ResNet frozen_stages that train() then re-applies)
    for stage, epoch, frozen_stages in [('heads', 0, 4), ('3+', 6, 1), ('all', 18, -1)]:
        runner.epoch = epoch
        hook.before_train_epoch(runner)
        assert hook.current_stage == stage
        assert model.backbone.frozen_stages == frozen_stages
        for mode in (True, False, True):  # the loops call train()/eval() around val
            model.train(mode)
            trainable = {n for n, p in model.named_parameters() if p.requires_grad}
            assert trainable == expected_trainable(names, stage), stage


def test_resnet_train_undoes_a_bare_requires_grad_flip(repo_root):
    """The library fact the hook works around: ResNet.train() re-applies frozen_stages."""
    cfg = tiny_staged_cfg(repo_root, Path('unused'), 'model.backbone.frozen_stages=1')
    init_default_scope('mmdet')
    backbone = MODELS.build(cfg.model).backbone
    for p in backbone.parameters():
        p.requires_grad_(True)
    backbone.train()
    assert not any(p.requires_grad for p in backbone.layer1.parameters())


def test_model_built_with_frozen_stages_is_refused(repo_root):
    cfg = tiny_staged_cfg(repo_root, Path('unused'), 'model.backbone.frozen_stages=1')
    init_default_scope('mmdet')
    model = MODELS.build(cfg.model)
    hook_cfg = dict(cfg.custom_hooks[0])
    hook_cfg.pop('type')
    runner = SimpleNamespace(
        model=model, optim_wrapper=OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1)),
        param_schedulers=[], epoch=0, iter=0, max_epochs=24, max_iters=48, train_loop=None,
        logger=MMLogger.get_current_instance())
    with pytest.raises(ValueError, match='model.backbone.frozen_stages=-1') as err:
        StagedUnfreezeHook(**hook_cfg).before_train(runner)
    assert 'backbone.conv1.weight' in str(err.value)


# ------------------------------------------------------------------ the Runner, end to end
class _Recorder(Hook):
    """Per iteration: stage, lr, what may train (after model.train()), what changed."""

    def __init__(self, staged: StagedUnfreezeHook) -> None:
        self.staged = staged
        self.records: List[Dict] = []

    def before_train_iter(self, runner, batch_idx, data_batch=None) -> None:
        runner.model.train()  # once more, on top of the loop's own call
        self._before = {n: p.detach().clone() for n, p in runner.model.named_parameters()}
        self.records.append(dict(
            epoch=runner.epoch,
            stage=self.staged.current_stage,
            lr=runner.optim_wrapper.get_lr()['lr'][0],
            trainable={n for n, p in runner.model.named_parameters() if p.requires_grad}))

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        self.records[-1]['changed'] = {
            n for n, p in runner.model.named_parameters() if not torch.equal(p, self._before[n])
        }


# `end` given: mmengine would otherwise end the scheduler at the first run's max_epochs
_STEP_AT_EPOCH_2 = dict(
    type='MultiStepLR', by_epoch=True, begin=0, end=4, milestones=[2], gamma=0.5)


def _train(cfg: Config) -> List[Dict]:
    runner = Runner.from_cfg(cfg)
    staged = next(h for h in runner.hooks if isinstance(h, StagedUnfreezeHook))
    recorder = _Recorder(staged)
    runner.register_hook(recorder, priority='LOWEST')
    runner.train()
    return recorder.records


@pytest.mark.slow
def test_runner_stages_train_exactly_their_parameters_and_resume_in_stage_2(
        repo_root, tiny_coco_root, tmp_path):
    # epochs: 0 heads | 1, 2 3+ (lr x0.5) | 3 all (lr x0.1); scheduler x0.5 from epoch 2.
    # 2 images, batch 1: 2 iterations per epoch.
    options = [
        'optim_wrapper.optimizer.lr=0.01',
        'custom_hooks.0.stages.1.begin=1', 'custom_hooks.0.stages.1.lr_mult=0.5',
        'custom_hooks.0.stages.2.begin=3',
        f'work_dir={tmp_path}',
    ]
    cfg = tiny_staged_cfg(repo_root, tiny_coco_root, *options, 'train_cfg.max_epochs=2')
    cfg.param_scheduler = [_STEP_AT_EPOCH_2]
    first = _train(cfg)

    cfg = tiny_staged_cfg(repo_root, tiny_coco_root, *options, 'train_cfg.max_epochs=4')
    cfg.param_scheduler = [_STEP_AT_EPOCH_2]
    cfg.resume, cfg.load_from = True, str(tmp_path / 'epoch_2.pth')
    resumed = _train(cfg)

    init_default_scope('mmdet')
    names = [n for n, _ in MODELS.build(cfg.model).named_parameters()]
    expected_lr = {0: 0.01, 1: 0.005, 2: 0.0025, 3: 0.0005}
    expected_stage = {0: 'heads', 1: '3+', 2: '3+', 3: 'all'}
    assert [r['epoch'] for r in first + resumed] == [0, 0, 1, 1, 2, 2, 3, 3]
    for r in first + resumed:
        stage = expected_stage[r['epoch']]
        assert r['stage'] == stage
        assert r['lr'] == pytest.approx(expected_lr[r['epoch']]), r['epoch']
        want = expected_trainable(names, stage)
        assert r['trainable'] == want, (stage, sorted(r['trainable'] ^ want)[:5])
        # frozen parameters bit-identical; trainable ones updated (every weight: a bias
        # can get an exactly-zero gradient, e.g. on an FPN level nothing is sampled on,
        # or a bn1 behind a zero-initialised bn2 under zero_init_residual)
        assert r['changed'] <= want, (stage, sorted(r['changed'] - want)[:5])
        missed = {n for n in want - r['changed'] if not n.endswith('.bias')}
        assert not missed, (stage, sorted(missed)[:5])

    # the switches (and the resumed stage) are logged with the trainable groups
    logs = '\n'.join(p.read_text() for p in sorted(tmp_path.glob('*/*.log')))
    assert "epoch 1: stage 2/3 '3+'" in logs
    assert "epoch 2: stage 2/3 '3+'" in logs  # after resuming
    assert "epoch 3: stage 3/3 'all'" in logs
    assert 'trainable: backbone.layer2, backbone.layer3, backbone.layer4, neck.' in logs
