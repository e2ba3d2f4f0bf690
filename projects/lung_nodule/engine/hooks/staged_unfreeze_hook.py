"""Staged fine-tuning: train only the parameters of the current stage.

Matterport's Mask_RCNN, which the paper used, fine-tunes a COCO model in stages
(``heads`` -> ``3+`` -> ``all``). Each stage here is the set of parameters whose
names match its regular expressions, where it begins (epoch or iteration) and a
learning-rate multiplier.

Naive versions of this hook break in four ways, each handled here:

1. ``model.train()`` undoes a bare ``requires_grad`` flip: mmdet's
   ``ResNet.train()`` re-applies ``_freeze_stages()`` from ``frozen_stages``. The hook
   sets ``frozen_stages`` of every ResNet-style module to the largest value that
   freezes nothing the stage trains, so ``train()`` re-applies the stage itself.
2. The optimizer never updates parameters that were frozen when it was built
   (mmengine's constructor leaves out ``requires_grad=False`` parameters when a
   ``paramwise_cfg`` is given), and
3. DDP only all-reduces the gradients of parameters that required grad when the
   model was wrapped: unfrozen later, ranks silently diverge.
   So the model must be *built* with every stage trainable and this hook does all
   the freezing, from the first iteration on; it checks both before training and
   raises if a parameter some stage trains was frozen at build time or is missing
   from the optimizer, or if DDP lacks ``find_unused_parameters=True`` (needed as
   soon as anything is frozen).
4. Resuming must restore the stage and its learning rate. The stage is computed
   from ``runner.epoch``/``runner.iter``; the multiplier in effect is kept in each
   optimizer param group (``staged_unfreeze_lr_mult``), which the optimizer's state
   dict saves and restores, so a resumed run neither loses nor re-applies it.

The multiplier composes with ``param_scheduler``: at a switch, every param group's
``lr`` and ``initial_lr`` and the ``base_values`` of the lr schedulers are scaled by
``new_mult / old_mult``, so chained schedulers (warm-up, steps) go on from the
scaled value and closed-form ones (cosine restarts) start from a scaled base.
"""
import re
from dataclasses import dataclass
from typing import Dict, Iterator, List, Optional, Sequence, Set, Tuple, Union

from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.optim import OptimWrapper, OptimWrapperDict
from mmengine.runner import IterBasedTrainLoop
from torch import nn

from mmdet.registry import HOOKS

DATA_BATCH = Optional[Union[dict, tuple, list]]

#: Key of the stage's lr multiplier in each optimizer param group (saved with it).
LR_MULT_KEY = 'staged_unfreeze_lr_mult'


@dataclass(frozen=True)
class _Stage:
    name: str
    begin: int
    trainable: Tuple[re.Pattern, ...]
    lr_mult: float

    def trains(self, param_name: str) -> bool:
        return any(pattern.match(param_name) for pattern in self.trainable)


@HOOKS.register_module()
class StagedUnfreezeHook(Hook):
    """Fine-tune in stages, each training the parameters its patterns name.

    Build the model with every parameter trainable (for mmdet's ResNet:
    ``frozen_stages=-1``); the hook freezes the rest from the first iteration on
    and switches stage when ``runner.epoch`` (``by_epoch=True``) or ``runner.iter``
    reaches the next ``begin``. On a switch it logs the stage, the learning rate
    and which parameter groups (``backbone.layer2``, ``roi_head.mask_head``, ...)
    are trainable.

    Example (Matterport's heads -> 3+ -> all on mmdet's Mask R-CNN)::

        custom_hooks = [
            dict(type='StagedUnfreezeHook', by_epoch=True, stages=[
                dict(name='heads', begin=0,
                     trainable=[r'neck\\.', r'rpn_head\\.', r'roi_head\\.']),
                dict(name='3+', begin=6,
                     trainable=[r'backbone\\.layer[234]\\.', r'neck\\.',
                                r'rpn_head\\.', r'roi_head\\.']),
                dict(name='all', begin=18, trainable=[r'.'], lr_mult=0.1),
            ])
        ]

    Args:
        stages (Sequence[dict]): The stages in training order. Each dict has

            - ``name`` (str): shown in the logs.
            - ``begin`` (int): the first epoch (``by_epoch=True``) or iteration
              of the stage, counted from 0 like ``runner.epoch``/``runner.iter``.
              The first stage begins at 0; later ones strictly after.
            - ``trainable`` (Sequence[str]): regular expressions matched with
              ``re.match`` (anchored at the start) against the parameter names of
              the unwrapped model, e.g. ``backbone.layer2.0.conv1.weight``. The
              matching parameters train, all others are frozen.
            - ``lr_mult`` (float, optional): multiplies the learning rate of every
              param group (on top of ``param_scheduler``) while the stage lasts.
              Defaults to 1.
        by_epoch (bool): Whether ``begin`` counts epochs (switches happen before
            an epoch) or iterations (before an iteration). Defaults to True.
    """

    priority = 'NORMAL'
    _STAGE_KEYS = ('name', 'begin', 'trainable', 'lr_mult')

    def __init__(self, stages: Sequence[dict], by_epoch: bool = True) -> None:
        self.stages = self._parse_stages(stages)
        self.by_epoch = by_epoch
        self._current: Optional[int] = None  # index of the stage applied

    # ------------------------------------------------------------ config checks
    @classmethod
    def _parse_stages(cls, stages: Sequence[dict]) -> List[_Stage]:
        if isinstance(stages, (str, dict)) or not stages:
            raise ValueError('StagedUnfreezeHook needs `stages`, a non-empty list of dicts '
                             f'with keys {cls._STAGE_KEYS}; got {stages!r}')
        parsed: List[_Stage] = []
        for i, stage in enumerate(stages):
            if not isinstance(stage, dict):
                raise TypeError(f'stage {i} must be a dict with keys {cls._STAGE_KEYS}, '
                                f'got {stage!r}')
            unknown = set(stage) - set(cls._STAGE_KEYS)
            missing = {'name', 'begin', 'trainable'} - set(stage)
            if unknown or missing:
                raise ValueError(f'stage {i} ({stage!r}): unknown keys {sorted(unknown)}, '
                                 f'missing keys {sorted(missing)}; the keys are '
                                 f'{cls._STAGE_KEYS} (lr_mult optional)')
            name, begin = str(stage['name']), stage['begin']
            if isinstance(begin, bool) or not isinstance(begin, int) or begin < 0:
                raise ValueError(f"stage '{name}': begin must be an int >= 0, got {begin!r}")
            if i == 0 and begin != 0:
                raise ValueError(f"the first stage ('{name}') must begin at 0, got {begin}: "
                                 'something has to be trained from the start')
            if parsed and begin <= parsed[-1].begin:
                raise ValueError(f"stage '{name}' begins at {begin}, not after stage "
                                 f"'{parsed[-1].name}' ({parsed[-1].begin}); list stages in "
                                 'order with strictly increasing begin')
            if name in {s.name for s in parsed}:
                raise ValueError(f"two stages are named '{name}'; give each its own name")
            patterns = stage['trainable']
            if isinstance(patterns, str) or not patterns:
                raise ValueError(f"stage '{name}': trainable must be a non-empty list of "
                                 f'regular expressions, got {patterns!r} (write [{patterns!r}] '
                                 'for one pattern)')
            compiled = []
            for pattern in patterns:
                try:
                    compiled.append(re.compile(pattern))
                except (re.error, TypeError) as err:
                    raise ValueError(f"stage '{name}': trainable pattern {pattern!r} is not a "
                                     f'valid regular expression ({err})') from err
            lr_mult = stage.get('lr_mult', 1.0)
            if isinstance(lr_mult, bool) or not isinstance(lr_mult, (int, float)) \
                    or not lr_mult > 0:
                raise ValueError(f"stage '{name}': lr_mult must be a number > 0, got {lr_mult!r}")
            parsed.append(_Stage(name, begin, tuple(compiled), float(lr_mult)))
        return parsed

    def _check_runner(self, runner) -> None:
        """Fail before the first step on set-ups where stages would silently not work."""
        model = self._unwrap(runner.model)
        names = [name for name, _ in model.named_parameters()]
        for stage in self.stages:
            for pattern in stage.trainable:
                if not any(pattern.match(n) for n in names):
                    raise ValueError(
                        f"stage '{stage.name}': trainable pattern {pattern.pattern!r} matches "
                        f'no parameter of {type(model).__name__}; names look like '
                        f'{names[:2] + names[-1:]} (re.match from the start of the name)')

        ever_trained = [(n, p) for n, p in model.named_parameters()
                        if any(s.trains(n) for s in self.stages)]
        frozen_at_build = [n for n, p in ever_trained if not p.requires_grad]
        if frozen_at_build:
            raise ValueError(
                f'{len(frozen_at_build)} parameters that a stage trains were already frozen '
                f'when training started, e.g. {frozen_at_build[:3]}: the optimizer '
                '(paramwise_cfg) and DDP only register parameters that require grad when '
                'they are built, so unfreezing these later would be silently lost. Build '
                'the model with every stage trainable (for a ResNet backbone: '
                'model.backbone.frozen_stages=-1) and let StagedUnfreezeHook do the freezing.')

        in_optimizer = {id(p) for wrapper in self._optim_wrappers(runner)
                        for group in wrapper.param_groups for p in group['params']}
        missing = [n for n, p in ever_trained if id(p) not in in_optimizer]
        if missing:
            raise ValueError(
                f'{len(missing)} parameters that a stage trains are not in the optimizer, '
                f'e.g. {missing[:3]}; check optim_wrapper.paramwise_cfg (a lr_mult=0 or a '
                'custom constructor leaving them out) so that every stage can update them.')

        freezes_something = any(not s.trains(n) for s in self.stages for n in names)
        if (is_model_wrapper(runner.model) and freezes_something
                and not getattr(runner.model, 'find_unused_parameters', True)):
            raise ValueError(
                'DDP is wrapped with find_unused_parameters=False, but frozen parameters get '
                'no gradient and DDP would wait for them ("Expected to have finished '
                'reduction in the prior iteration"). Set find_unused_parameters=True in the '
                'config (or in model_wrapper_cfg).')

        if self.by_epoch and isinstance(runner.train_loop, IterBasedTrainLoop):
            raise ValueError('StagedUnfreezeHook(by_epoch=True) under an IterBasedTrainLoop '
                             'would never leave its first stage; set by_epoch=False and give '
                             'each stage its begin in iterations.')
        end = runner.max_epochs if self.by_epoch else runner.max_iters
        unit = 'epoch' if self.by_epoch else 'iteration'
        for stage in self.stages:
            if stage.begin >= end:
                runner.logger.warning(
                    f"StagedUnfreezeHook: stage '{stage.name}' begins at {unit} "
                    f'{stage.begin} but training ends after {end} {unit}s: it never runs.')

    # ------------------------------------------------------------ hook points
    def before_train(self, runner) -> None:
        self._check_runner(runner)
        self._current = None  # (re)apply whatever stage runner.epoch/iter is in
        self._maybe_switch(runner)

    def before_train_epoch(self, runner) -> None:
        if self.by_epoch:
            self._maybe_switch(runner)

    def before_train_iter(self, runner, batch_idx: int, data_batch: DATA_BATCH = None) -> None:
        if not self.by_epoch:
            self._maybe_switch(runner)

    # ------------------------------------------------------------ switching
    def stage_index_at(self, progress: int) -> int:
        """Index of the stage that epoch (or iteration) ``progress`` belongs to."""
        index = 0
        for i, stage in enumerate(self.stages):
            if progress >= stage.begin:
                index = i
        return index

    @property
    def current_stage(self) -> Optional[str]:
        """Name of the stage in effect, None before training starts."""
        return None if self._current is None else self.stages[self._current].name

    def _maybe_switch(self, runner) -> None:
        progress = runner.epoch if self.by_epoch else runner.iter
        index = self.stage_index_at(progress)
        if index != self._current:
            self._switch(runner, index, progress)

    def _switch(self, runner, index: int, progress: int) -> None:
        stage = self.stages[index]
        model = self._unwrap(runner.model)
        for name, param in model.named_parameters():
            param.requires_grad_(stage.trains(name))
        frozen_stages = self._sync_frozen_stages(model)
        # re-apply train-mode details (frozen stages and norm_eval put BN in eval)
        model.train(model.training)
        old_lrs, new_lrs = self._set_lr_mult(runner, stage.lr_mult)
        self._current = index

        unit = 'epoch' if self.by_epoch else 'iter'
        trainable, frozen = self._summarize(model)
        n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
        n_all = sum(p.numel() for p in model.parameters())
        runner.logger.info(
            f"StagedUnfreezeHook: {unit} {progress}: stage {index + 1}/{len(self.stages)} "
            f"'{stage.name}', lr_mult {stage.lr_mult:g} (lr {_fmt(old_lrs)} -> "
            f'{_fmt(new_lrs)}), {n_train / 1e6:.2f}M of {n_all / 1e6:.2f}M parameters '
            f'trainable; frozen_stages {frozen_stages}\n'
            f'  trainable: {", ".join(trainable) or "-"}\n'
            f'  frozen:    {", ".join(frozen) or "-"}')

    def _sync_frozen_stages(self, model: nn.Module) -> Dict[str, int]:
        """Set each module's ``frozen_stages`` so that ``train()`` keeps this stage.

        For a ResNet-style module (``res_layers``; stem = ``stem`` or ``conv1`` +
        ``norm1``) it is the largest value that freezes no trainable parameter, so
        ``_freeze_stages()`` re-freezes exactly what the stage freezes and puts those
        stages in eval mode as a ResNet built that way would. Other modules with a
        ``frozen_stages`` get -1: they never re-freeze, the hook alone decides.
        """
        result = {}
        for prefix, module in model.named_modules():
            if not isinstance(getattr(module, 'frozen_stages', None), int):
                continue
            value = -1
            if hasattr(module, 'res_layers'):
                stem = ['stem'] if getattr(module, 'deep_stem', False) else \
                    ['conv1', getattr(module, 'norm1_name', 'bn1')]
                for k, group in enumerate([stem] + [[layer] for layer in module.res_layers]):
                    params = [p for part in group
                              for p in getattr(module, part).parameters()]
                    if any(p.requires_grad for p in params):
                        break
                    value = k
            module.frozen_stages = value
            result[prefix or type(module).__name__] = value
        return result

    def _set_lr_mult(self, runner, lr_mult: float) -> Tuple[List[float], List[float]]:
        """Rescale the learning rates from the multiplier in effect to ``lr_mult``."""
        old_lrs, new_lrs, factors = [], [], {}
        for wrapper in self._optim_wrappers(runner):
            for group in wrapper.param_groups:
                factor = lr_mult / group.get(LR_MULT_KEY, 1.0)
                old_lrs.append(group['lr'])
                if factor != 1.0:
                    factors[id(group)] = factor
                    group['lr'] *= factor
                    if 'initial_lr' in group:
                        group['initial_lr'] *= factor
                group[LR_MULT_KEY] = lr_mult
                new_lrs.append(group['lr'])
        if factors:
            for scheduler in self._lr_schedulers(runner):
                groups = scheduler.optimizer.param_groups
                scheduler.base_values = [
                    value * factors.get(id(group), 1.0)
                    for value, group in zip(scheduler.base_values, groups)
                ]
        return old_lrs, new_lrs

    # ------------------------------------------------------------ helpers
    @staticmethod
    def _unwrap(model: nn.Module) -> nn.Module:
        return model.module if is_model_wrapper(model) else model

    @staticmethod
    def _optim_wrappers(runner) -> List[OptimWrapper]:
        wrapper = runner.optim_wrapper
        return list(wrapper.values()) if isinstance(wrapper, OptimWrapperDict) else [wrapper]

    @staticmethod
    def _lr_schedulers(runner) -> Iterator:
        schedulers = runner.param_schedulers or []
        if isinstance(schedulers, dict):
            schedulers = [s for group in schedulers.values() for s in group]
        return (s for s in schedulers if getattr(s, 'param_name', None) == 'lr')

    @staticmethod
    def _summarize(model: nn.Module) -> Tuple[List[str], List[str]]:
        """Module groups (the first two name parts) that train and that are frozen."""
        state: Dict[str, Set[bool]] = {}
        for name, param in model.named_parameters():
            state.setdefault('.'.join(name.split('.')[:2]), set()).add(param.requires_grad)
        trainable = [g if s == {True} else f'{g} (partly)' for g, s in state.items() if True in s]
        frozen = [g for g, s in state.items() if s == {False}]
        return trainable, frozen


def _fmt(values: Sequence[float]) -> str:
    unique = sorted(set(values))
    return ', '.join(f'{v:.3g}' for v in unique) if unique else '-'
