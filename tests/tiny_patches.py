"""Write tiny ImageNet-style patch folders like ``data_prep/luna16_to_patches.py``'s.

``ROOT/{train,val,test}/{normal,nodule}/*.png``: 50x50 8-bit grey patches. A
``nodule`` patch is a bright disc (radius 4-12 px) near the centre on a noisy
lung-like background; a ``normal`` patch is the textured background with a few
thin vessel-like lines. The two classes are easy to tell apart, so a couple of
epochs of a small network learn them.
"""
from pathlib import Path
from typing import Dict, Optional

import cv2
import numpy as np
from mmengine.config import Config

__all__ = ['SPLITS', 'PATCH_SIZE', 'tiny_run_config', 'write_tiny_patches']

SPLITS = ('train', 'val', 'test')
PATCH_SIZE = 50


def _background(rng: np.random.Generator) -> np.ndarray:
    img = rng.normal(40, 12, (PATCH_SIZE, PATCH_SIZE))
    for _ in range(rng.integers(1, 4)):  # vessel-like lines
        p0 = tuple(int(v) for v in rng.integers(0, PATCH_SIZE, 2))
        p1 = tuple(int(v) for v in rng.integers(0, PATCH_SIZE, 2))
        cv2.line(img, p0, p1, float(rng.uniform(90, 140)), 1)
    return img


def _nodule(rng: np.random.Generator) -> np.ndarray:
    img = _background(rng)
    cy, cx = rng.uniform(20, 30, 2)
    r = rng.uniform(4, 12)
    yy, xx = np.mgrid[:PATCH_SIZE, :PATCH_SIZE]
    disc = (yy - cy)**2 + (xx - cx)**2 <= r * r
    img[disc] = rng.normal(190, 15, int(disc.sum()))
    return img


def write_tiny_patches(root: Path,
                       per_class: Dict[str, int] = None,
                       seed: int = 0) -> Path:
    """Write the patch folders and return ``root``.

    Args:
        root (Path): Output folder (created).
        per_class (dict): Patches per class for each split; defaults to
            ``{'train': 8, 'val': 4, 'test': 4}``.
        seed (int): Random seed; the same seed writes the same pixels.

    Returns:
        Path: ``root``.
    """
    per_class = per_class or {'train': 8, 'val': 4, 'test': 4}
    rng = np.random.default_rng(seed)
    root = Path(root)
    for split in SPLITS:
        for cls, make in (('normal', _background), ('nodule', _nodule)):
            folder = root / split / cls
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class[split]):
                img = make(rng).clip(0, 255).astype(np.uint8)
                cv2.imwrite(str(folder / f'{split}_{cls}_{i:04d}.png'), img)
    return root


def tiny_run_config(config: Path, data_root: Path, work_dir: Path,
                    checkpoint: Optional[dict] = None) -> Config:
    """A patch classifier config cut down to one CPU epoch on tiny patches.

    Batch 2, no dataloader workers, one epoch, no validation; ``checkpoint``
    is the ``CheckpointHook`` config (None: no checkpoint).
    """
    cfg = Config.fromfile(str(config))
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[key].dataset.data_root = str(data_root)
        cfg[key].batch_size = 2
        cfg[key].num_workers = 0
        cfg[key].persistent_workers = False
    cfg.train_cfg.max_epochs = 1
    cfg.train_cfg.val_interval = 2
    cfg.default_hooks.checkpoint = checkpoint
    cfg.work_dir = str(work_dir)
    return cfg
