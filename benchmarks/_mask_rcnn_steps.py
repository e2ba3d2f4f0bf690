"""What bench_train.py and bench_gpu.py share: a lung Mask R-CNN built from a config,
batches to feed it, and timed training / inference steps through mmengine's own
``train_step`` / ``test_step`` (data preprocessor, losses, optimizer wrapper).

Batches are made once and reused, so a step's time is the model's, not the data
loader's (on the CPU the loader waits about 0.5% of a step; on a GPU it runs in
worker processes beside the model). Nothing here imports SimpleITK or the CT code:
bench_gpu.py runs where neither may be installed.
"""
from __future__ import annotations

import copy
import importlib
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from mmengine.config import Config, DictAction  # noqa: E402
from mmengine.logging import MMLogger  # noqa: E402
from mmengine.registry import init_default_scope  # noqa: E402
from mmengine.structures import InstanceData  # noqa: E402

__all__ = [
    'Config', 'DictAction', 'StepTimes', 'build_model', 'build_optim_wrapper',
    'dataset_batches', 'load_config', 'synthetic_batches', 'time_inference',
    'time_training'
]


def load_config(path: str | Path, cfg_options: dict | None = None,
                modules: Sequence[str] = ('projects.lung_nodule.registry', )) -> Config:
    """The config with ``--cfg-options`` merged and no weights to download.

    ``load_from`` and the backbone's ``init_cfg`` are cleared: a benchmark's speed does
    not depend on the weights, and nothing can be downloaded offline. Instead of the
    config's ``custom_imports`` (the whole registry), ``modules`` are imported: a
    benchmark of the model alone needs only ``projects.lung_nodule.models``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f'config not found: {path}')
    cfg = Config.fromfile(str(path), import_custom_modules=False)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    cfg.load_from = None
    cfg.model.backbone.init_cfg = None
    for name in modules:
        importlib.import_module(name)
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    return cfg


def build_model(cfg: Config, device: str | torch.device, seed: int) -> torch.nn.Module:
    """``MODELS.build(cfg.model)`` with its init weights drawn from ``seed``, in train mode."""
    from mmdet.registry import MODELS
    torch.manual_seed(seed)
    np.random.seed(seed)
    model = MODELS.build(copy.deepcopy(cfg.model))
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel('WARNING')  # not the ~200 lines of "Initialized by ..." per model
    try:
        model.init_weights()
    finally:
        logger.setLevel(level)
    return model.to(device).train()


def build_optim_wrapper(cfg: Config, model: torch.nn.Module, amp: bool = False):
    """The config's optimizer wrapper (optimizer, clip_grad), as mmengine's AMP one if asked."""
    from mmengine.optim import build_optim_wrapper as build
    wrapper_cfg = copy.deepcopy(cfg.optim_wrapper)
    if amp:
        wrapper_cfg.type = 'AmpOptimWrapper'
        wrapper_cfg.setdefault('loss_scale', 'dynamic')
    return build(model, wrapper_cfg)


def _disc(size: int, cy: float, cx: float, r: float) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    return ((yy - cy)**2 + (xx - cx)**2 <= r * r).astype(np.uint8)


def synthetic_batches(num_batches: int, batch_size: int, size: int,
                      seed: int) -> list[dict]:
    """Grey slices with 1-3 bright discs ("nodules", radius 3-20 px) and their masks.

    Laid out as mmdet's data loader gives them: ``inputs`` (uint8 tensors, 3 x size x
    size) and ``data_samples`` (``DetDataSample`` with ``gt_instances``).
    """
    from mmdet.structures import DetDataSample
    from mmdet.structures.mask import BitmapMasks
    rng = np.random.default_rng(seed)
    batches = []
    for _ in range(num_batches):
        inputs, samples = [], []
        for _ in range(batch_size):
            img = rng.normal(60, 15, (size, size)).clip(0, 255).astype(np.uint8)
            masks, boxes = [], []
            for _ in range(int(rng.integers(1, 4))):
                r = rng.uniform(3, 20) * size / 512
                cy, cx = rng.uniform(0.2 * size, 0.8 * size, 2)
                mask = _disc(size, cy, cx, max(r, 2.0))
                img[mask > 0] = rng.integers(150, 230)
                ys, xs = np.nonzero(mask)
                masks.append(mask)
                boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
            inputs.append(torch.from_numpy(np.repeat(img[None], 3, axis=0)))
            sample = DetDataSample(metainfo=dict(
                img_shape=(size, size), ori_shape=(size, size), pad_shape=(size, size),
                scale_factor=(1.0, 1.0), batch_input_shape=(size, size)))
            sample.gt_instances = InstanceData(
                bboxes=torch.tensor(boxes, dtype=torch.float32),
                labels=torch.zeros(len(boxes), dtype=torch.long),
                masks=BitmapMasks(np.stack(masks), size, size))
            samples.append(sample)
        batches.append(dict(inputs=inputs, data_samples=samples))
    return batches


def dataset_batches(cfg: Config, data_root: str | Path, num_batches: int,
                    batch_size: int) -> list[dict]:
    """The first batches of the config's training data loader over ``data_root``.

    The config's pipeline runs as in training (augmentation included) on the prepared
    COCO folder (``annotations/instances_train.json``, ``images/train/``); the batches
    are then reused, cycling when the split has fewer.
    """
    from mmengine.runner import Runner

    from projects.lung_nodule.datasets import image_dataset
    data_root = Path(data_root)
    loader_cfg = copy.deepcopy(cfg.train_dataloader)
    images, _ = image_dataset(loader_cfg.dataset)  # inside the demo's CopyPaste wrapper
    ann = data_root / images.ann_file
    if not ann.is_file():
        raise FileNotFoundError(f'--data-root {data_root}: no {ann} (prepared by '
                                'data_prep/luna16_to_coco.py)')
    images.data_root = str(data_root)
    loader_cfg.batch_size = batch_size
    loader_cfg.num_workers = 0
    loader_cfg.persistent_workers = False
    loader_cfg.sampler = dict(type='DefaultSampler', shuffle=False)
    loader = Runner.build_dataloader(loader_cfg, seed=0)
    batches = []
    while len(batches) < num_batches:
        before = len(batches)
        for batch in loader:
            batches.append(batch)
            if len(batches) == num_batches:
                break
        if len(batches) == before:
            raise ValueError(f'--data-root {data_root}: the training split is empty')
    return batches


@dataclass
class StepTimes:
    """Wall and process-CPU seconds of every step, and the losses of training steps.

    The summaries leave out the first ``skip`` steps (allocations, TorchScript and
    cuDNN warm-up); the losses are kept for every step.
    """
    skip: int = 0
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    losses: list[dict[str, float]] = field(default_factory=list)

    @property
    def seconds_per_step(self) -> float:
        return float(np.mean(self.wall[self.skip:]))

    @property
    def cores_used(self) -> float:
        """Process CPU time over wall time (every thread of this process counted)."""
        return float(np.sum(self.cpu[self.skip:]) / np.sum(self.wall[self.skip:]))


def _sync(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def time_training(model: torch.nn.Module, optim_wrapper, batches: list[dict], steps: int,
                  skip: int = 0) -> StepTimes:
    """``steps`` calls of ``model.train_step`` on ``batches`` (cycled), each timed."""
    device = next(model.parameters()).device
    times = StepTimes(skip=skip)
    for i in range(steps):
        batch = batches[i % len(batches)]
        _sync(device)
        wall0, cpu0 = time.perf_counter(), time.process_time()
        log_vars = model.train_step(batch, optim_wrapper)
        _sync(device)
        times.wall.append(time.perf_counter() - wall0)
        times.cpu.append(time.process_time() - cpu0)
        times.losses.append({k: float(torch.as_tensor(v).detach()) for k, v in log_vars.items()})
    return times


def time_inference(model: torch.nn.Module, batches: list[dict], steps: int, skip: int = 0,
                   amp: bool = False) -> StepTimes:
    """``steps`` calls of ``model.test_step`` (boxes and masks, no gradients), each timed."""
    device = next(model.parameters()).device
    model.eval()
    times = StepTimes(skip=skip)
    try:
        with torch.no_grad(), torch.autocast(device.type, enabled=amp):
            for i in range(steps):
                batch = batches[i % len(batches)]
                _sync(device)
                wall0, cpu0 = time.perf_counter(), time.process_time()
                model.test_step(batch)
                _sync(device)
                times.wall.append(time.perf_counter() - wall0)
                times.cpu.append(time.process_time() - cpu0)
    finally:
        model.train()
    return times
