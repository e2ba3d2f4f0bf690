"""ParallelRoIAlign computes mmcv's RoIAlign exactly, forward and backward, on all threads."""
import pytest
import torch
from mmcv.ops import RoIAlign
from mmengine.config import Config
from mmengine.registry import init_default_scope

import projects.lung_nodule.registry  # noqa: F401  (registers the layer and the extractor)
from mmdet.registry import MODELS
from projects.lung_nodule.models import ParallelRoIAlign, RegistryRoIExtractor


def _inputs(channels: int, n_rois: int, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    feats = torch.randn(2, channels, 40, 48, generator=gen)
    xy = torch.rand(n_rois, 2, generator=gen) * 150
    wh = torch.rand(n_rois, 2, generator=gen) * 60 + 0.5  # sub-pixel to large boxes
    rois = torch.cat([torch.randint(0, 2, (n_rois, 1), generator=gen).float(), xy, xy + wh],
                     dim=1)
    rois[0, 1:] = torch.tensor([-10.0, -5.0, 30.0, 400.0])  # partly outside the map
    return feats, rois


def _forward_backward(layer, feats, rois, grad_out):
    x = feats.clone().requires_grad_(True)
    out = layer(x, rois)
    out.backward(grad_out)
    return out.detach(), x.grad


@pytest.mark.parametrize('num_blocks', [None, 1, 2, 3])
@pytest.mark.parametrize('output_size', [7, 14])
def test_equals_mmcv_roi_align(num_blocks, output_size):
    feats, rois = _inputs(channels=37, n_rois=60)  # 37: blocks of unequal size
    grad_out = torch.randn(60, 37, output_size, output_size,
                           generator=torch.Generator().manual_seed(1))
    ref = RoIAlign(output_size, spatial_scale=0.25, sampling_ratio=0, aligned=True)
    ours = ParallelRoIAlign(output_size, spatial_scale=0.25, sampling_ratio=0, aligned=True,
                            num_blocks=num_blocks)
    out_ref, grad_ref = _forward_backward(ref, feats, rois, grad_out)
    out, grad = _forward_backward(ours, feats, rois, grad_out)
    assert out.shape == (60, 37, output_size, output_size)
    assert grad.abs().sum() > 0
    # torchvision's kernel and mmcv's give the same floats, to the last bit
    assert torch.equal(out, out_ref), (out - out_ref).abs().max()
    assert torch.equal(grad, grad_ref), (grad - grad_ref).abs().max()


def test_runs_blocks_in_parallel_threads():
    """The channel blocks run on two threads: the caller's and one of torch's inter-op pool."""
    from torch.profiler import ProfilerActivity, profile
    feats, rois = _inputs(channels=64, n_rois=300)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        ParallelRoIAlign(7, 0.25, 0, num_blocks=2)(feats, rois)
    threads = {e.thread for e in prof.events() if e.name == 'torchvision::roi_align'}
    assert len(threads) == 2, f'roi_align ran on threads {threads}'


def test_rejects_max_pooling_and_bad_blocks():
    with pytest.raises(ValueError, match="pool_mode='avg' only"):
        ParallelRoIAlign(7, pool_mode='max')
    with pytest.raises(ValueError, match='num_blocks must be >= 1'):
        ParallelRoIAlign(7, num_blocks=0)


def test_extractor_builds_registered_and_mmcv_layers():
    init_default_scope('mmdet')
    common = dict(out_channels=8, featmap_strides=[4, 8])
    ours = MODELS.build(dict(type='RegistryRoIExtractor',
                             roi_layer=dict(type='ParallelRoIAlign', output_size=7,
                                            sampling_ratio=0), **common))
    assert isinstance(ours, RegistryRoIExtractor)
    assert [type(m) for m in ours.roi_layers] == [ParallelRoIAlign] * 2
    assert [m.spatial_scale for m in ours.roi_layers] == [0.25, 0.125]
    plain = MODELS.build(dict(type='RegistryRoIExtractor',
                              roi_layer=dict(type='RoIAlign', output_size=7, sampling_ratio=0),
                              **common))
    assert [type(m) for m in plain.roi_layers] == [RoIAlign] * 2
    with pytest.raises(KeyError, match="'NoSuchRoIAlign' is neither in mmcv.ops"):
        MODELS.build(dict(type='RegistryRoIExtractor',
                          roi_layer=dict(type='NoSuchRoIAlign', output_size=7), **common))


def test_lung_configs_use_the_parallel_layer(repo_root):
    cfg = Config.fromfile(str(repo_root / 'configs/lung/mask_rcnn_r101_fpn_staged.py'))
    for key, size in (('bbox_roi_extractor', 7), ('mask_roi_extractor', 14)):
        extractor = cfg.model.roi_head[key]
        assert extractor.type == 'RegistryRoIExtractor'
        assert extractor.roi_layer == dict(type='ParallelRoIAlign', output_size=size,
                                           sampling_ratio=0)
