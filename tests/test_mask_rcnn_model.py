"""The lung Mask R-CNN config builds, trains a step and predicts on the CPU."""
import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmengine.structures import InstanceData

from mmdet.registry import MODELS
from mmdet.structures import DetDataSample
from mmdet.structures.mask import BitmapMasks

SIZE = 256


def _sample(rng: np.random.Generator) -> tuple:
    img = torch.from_numpy(rng.integers(0, 80, (3, SIZE, SIZE), dtype=np.uint8))
    yy, xx = np.mgrid[:SIZE, :SIZE]
    cy, cx, r = rng.uniform(60, 190), rng.uniform(60, 190), rng.uniform(8, 20)
    mask = ((yy - cy)**2 + (xx - cx)**2 <= r * r).astype(np.uint8)
    img[:, mask > 0] = 220
    ys, xs = np.nonzero(mask)
    sample = DetDataSample(metainfo=dict(
        img_shape=(SIZE, SIZE), ori_shape=(SIZE, SIZE), pad_shape=(SIZE, SIZE),
        scale_factor=(1.0, 1.0), batch_input_shape=(SIZE, SIZE)))
    sample.gt_instances = InstanceData(
        bboxes=torch.tensor([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]],
                            dtype=torch.float32),
        labels=torch.tensor([0]),
        masks=BitmapMasks(mask[None], SIZE, SIZE))
    return img, sample


@pytest.fixture(scope='module')
def model_and_batch(repo_root):
    cfg = Config.fromfile(str(repo_root / 'configs/lung/mask_rcnn_r101_fpn_all.py'))
    assert cfg.model.backbone.init_cfg is None  # nothing is downloaded
    init_default_scope('mmdet')
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    rng = np.random.default_rng(0)
    imgs, samples = zip(*[_sample(rng) for _ in range(2)])
    return model, dict(inputs=list(imgs), data_samples=list(samples))


@pytest.mark.slow
def test_one_training_step_gives_finite_losses(model_and_batch):
    model, batch = model_and_batch
    model.train()
    data = model.data_preprocessor(batch, training=True)
    losses = model(**data, mode='loss')
    for name in ('loss_rpn_cls', 'loss_rpn_bbox', 'loss_cls', 'loss_bbox', 'loss_mask'):
        assert name in losses, name
    total, _ = model.parse_losses(losses)
    assert torch.isfinite(total)
    total.backward()
    grads = [p.grad for p in model.roi_head.mask_head.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


@pytest.mark.slow
def test_one_prediction_is_well_formed(model_and_batch):
    model, batch = model_and_batch
    model.eval()
    with torch.no_grad():
        results = model.test_step(batch)
    assert len(results) == 2
    for result in results:
        pred = result.pred_instances
        n = len(pred)
        assert pred.bboxes.shape == (n, 4)
        assert pred.masks.shape == (n, SIZE, SIZE)
        assert pred.masks.dtype == torch.bool
        assert ((pred.scores >= 0) & (pred.scores <= 1)).all()
        assert (pred.labels == 0).all()  # the one class, 'nodule'
