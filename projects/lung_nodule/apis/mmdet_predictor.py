"""The real :class:`~projects.lung_nodule.apis.slice_predictor.SlicePredictor`: an mmdet
detector built once from a config and a checkpoint, run on batches of slices.

Built as :func:`mmdet.apis.init_detector` builds it (that function, without a
checkpoint), then the checkpoint is loaded *strictly* through mmengine's
``load_checkpoint`` (which goes through the project's torch >= 2.6 loader installed by
:mod:`projects.lung_nodule.registry`): ``init_detector`` loads non-strictly, so a
checkpoint of another model would only log warnings and then predict noise.

Preprocessing is the config's own test pipeline, as :func:`mmdet.apis.inference_detector`
and ``DetInferencer`` run it on arrays (``LoadImageFromNDArray`` first,
``LoadAnnotations`` removed), and the model's ``data_preprocessor`` inside
``model.test_step``; only the batching differs (``batch_size`` slices per forward).
"""
from __future__ import annotations

import contextlib
import copy
import os
import pickle
import warnings
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from mmcv.transforms import Compose
from mmdet.apis import init_detector
from mmdet.utils import get_test_pipeline_cfg
from mmengine.config import Config
from mmengine.runner import load_checkpoint

import projects.lung_nodule.registry  # noqa: F401  (our modules, checkpoint loader)

from .slice_predictor import SlicePrediction

__all__ = ['CheckpointMismatchError', 'MMDetSlicePredictor', 'build_test_pipeline']


class CheckpointMismatchError(ValueError):
    """The checkpoint cannot be loaded into the model of the config; names both."""


def build_test_pipeline(cfg: Config) -> Compose:
    """The config's test pipeline for uint8 arrays, as ``DetInferencer`` builds it.

    ``LoadImageFromFile`` becomes ``mmdet.LoadImageFromNDArray`` (as in
    ``inference_detector``) and ``LoadAnnotations`` is dropped (inference has none).
    """
    pipeline_cfg = copy.deepcopy(get_test_pipeline_cfg(cfg))
    pipeline_cfg = [t for t in pipeline_cfg
                    if t['type'] not in ('LoadAnnotations', 'mmdet.LoadAnnotations')]
    pipeline_cfg[0] = dict(pipeline_cfg[0], type='mmdet.LoadImageFromNDArray')
    pipeline_cfg[0].pop('backend_args', None)
    return Compose(pipeline_cfg)


def _model_score_thr(cfg: Config) -> float:
    try:
        return float(cfg.model.test_cfg.rcnn.score_thr)
    except (AttributeError, KeyError, TypeError) as exc:
        raise ValueError('config has no model.test_cfg.rcnn.score_thr: whole-scan inference '
                         'needs a two-stage detector (Mask R-CNN)') from exc


class MMDetSlicePredictor:
    """Mask R-CNN (or any mmdet instance segmenter) on batches of uint8 slices.

    Args:
        config: Config file or object (``custom_imports`` are honoured).
        checkpoint: A checkpoint saved by mmengine's Runner (or a plain state dict) of
            the model the config builds.
        device: ``'cpu'``, ``'cuda'``, ``'cuda:1'``...
        amp: Run the forward under ``torch.autocast`` (float16; CUDA only).

    Raises:
        FileNotFoundError: No checkpoint file.
        CheckpointMismatchError: The checkpoint is not a checkpoint, or its weights do
            not fit the config's model (missing/unexpected keys, shapes).
    """

    def __init__(self, config: str | os.PathLike | Config, checkpoint: str | os.PathLike,
                 device: str = 'cpu', amp: bool = False) -> None:
        cfg = config if isinstance(config, Config) else Config.fromfile(str(config))
        self.cfg = cfg
        self.device = torch.device(device)
        if amp and self.device.type != 'cuda':
            raise ValueError(f'--amp needs a CUDA device, got device={device!r}')
        self.amp = amp
        checkpoint = Path(checkpoint)
        if not checkpoint.is_file():
            raise FileNotFoundError(f'checkpoint {checkpoint}: no such file')
        with warnings.catch_warnings():
            # "checkpoint is None, use COCO classes": ours is loaded right below.
            warnings.simplefilter('ignore')
            model = init_detector(cfg, checkpoint=None, device='cpu')
        config_name = getattr(cfg, 'filename', None) or 'the config'
        try:
            loaded = load_checkpoint(model, str(checkpoint), map_location='cpu', strict=True,
                                     logger='silent')
        except RuntimeError as exc:
            raise CheckpointMismatchError(
                f'checkpoint {checkpoint} does not match the model of {config_name}: '
                f'{str(exc).strip()[:2000]}') from exc
        except (pickle.UnpicklingError, EOFError, ValueError, KeyError) as exc:
            raise CheckpointMismatchError(
                f'checkpoint {checkpoint} cannot be read as a model checkpoint '
                f'({type(exc).__name__}: {str(exc).strip()[:500]})') from exc
        meta = loaded.get('meta', {}) if isinstance(loaded, dict) else {}
        if 'dataset_meta' in meta:
            model.dataset_meta = {k.lower(): v for k, v in meta['dataset_meta'].items()}
        self.model = model.to(self.device).eval()
        self.pipeline = build_test_pipeline(cfg)
        self.score_thr = _model_score_thr(cfg)

    @contextlib.contextmanager
    def _autocast(self) -> Iterator[None]:
        if self.amp:
            with torch.autocast(device_type='cuda', dtype=torch.float16):
                yield
        else:
            yield

    def __call__(self, images: np.ndarray, z_indices: Sequence[int],
                 scan: object = None) -> list[SlicePrediction]:
        """Segment a batch of slices in one forward (see :class:`SlicePredictor`;
        ``scan`` is not used)."""
        if images.ndim != 3 or images.dtype != np.uint8:
            raise ValueError(f'images must be uint8 (n, rows, cols), got {images.dtype} '
                             f'{images.shape}')
        if len(images) == 0:
            return []
        # A grey PNG read by cv2 (training) is 3 equal channels: the same here.
        items = [self.pipeline(dict(img=np.repeat(image[:, :, None], 3, axis=2), img_id=int(z)))
                 for image, z in zip(images, z_indices)]
        batch = dict(inputs=[item['inputs'] for item in items],
                     data_samples=[item['data_samples'] for item in items])
        with torch.no_grad(), self._autocast():
            samples = self.model.test_step(batch)
        rows, cols = images.shape[1:]
        out = []
        for sample in samples:
            instances = sample.pred_instances
            masks = instances.masks
            masks = (masks.cpu().numpy() if isinstance(masks, torch.Tensor)
                     else np.asarray(masks)).astype(bool).reshape(-1, rows, cols)
            scores = instances.scores.float().cpu().numpy().astype(np.float64)
            out.append(SlicePrediction(masks=masks, scores=scores))
        return out
