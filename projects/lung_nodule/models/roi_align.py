"""RoIAlign that keeps every CPU core busy, with mmcv's ``RoIAlign`` results.

A CPU training step of the lung Mask R-CNN spends a large part of its time in RoIAlign
(forward and backward, box and mask heads), and both mmcv's CPU kernel and
torchvision's run on one thread while the convolutions around them use all cores.
RoIAlign treats every channel on its own, so :class:`ParallelRoIAlign` splits the
channels into one contiguous block per thread (``torch.get_num_threads()``) and runs
torchvision's kernels on the blocks at once, through TorchScript's ``fork`` (torch's
inter-op thread pool, no GIL). Each output and gradient element is computed by the same
kernel code, in the same order, as without the split: the values are those of
torchvision's ``roi_align``, which computes mmcv's ``RoIAlign`` (``aligned=True``,
adaptive ``sampling_ratio=0``) to the last bit on the CPU (tests/test_roi_align.py).
On CUDA the layer calls torchvision's kernel, which is parallel already.

mmdet's RoI extractors look ``roi_layer`` types up in ``mmcv.ops`` only; configs use
this layer through :class:`~projects.lung_nodule.models.roi_extractor.RegistryRoIExtractor`.
"""
from typing import List

import torch
import torchvision  # noqa: F401  (registers torch.ops.torchvision)
from mmdet.registry import MODELS
from torch import Tensor, nn
from torch.autograd import Function
from torch.autograd.function import once_differentiable
from torch.nn.modules.utils import _pair

__all__ = ['ParallelRoIAlign']


@torch.jit.script
def _forward_block(feats: Tensor, rois: Tensor, spatial_scale: float, pooled_h: int,
                   pooled_w: int, sampling_ratio: int, aligned: bool) -> Tensor:
    return torch.ops.torchvision.roi_align(feats, rois, spatial_scale, pooled_h, pooled_w,
                                           sampling_ratio, aligned)


@torch.jit.script
def _backward_block(grad: Tensor, rois: Tensor, spatial_scale: float, pooled_h: int,
                    pooled_w: int, batch: int, channels: int, height: int, width: int,
                    sampling_ratio: int, aligned: bool) -> Tensor:
    return torch.ops.torchvision._roi_align_backward(grad, rois, spatial_scale, pooled_h,
                                                     pooled_w, batch, channels, height,
                                                     width, sampling_ratio, aligned)


@torch.jit.script
def _forward_blocks(feats: Tensor, rois: Tensor, spatial_scale: float, pooled_h: int,
                    pooled_w: int, sampling_ratio: int, aligned: bool,
                    bounds: List[int]) -> Tensor:
    """Channel blocks ``bounds[i]:bounds[i + 1]``: all but the first forked, then joined."""
    futures = torch.jit.annotate(List[torch.jit.Future[Tensor]], [])
    for i in range(1, len(bounds) - 1):
        futures.append(
            torch.jit.fork(_forward_block, feats[:, bounds[i]:bounds[i + 1]], rois,
                           spatial_scale, pooled_h, pooled_w, sampling_ratio, aligned))
    outs = [
        _forward_block(feats[:, bounds[0]:bounds[1]], rois, spatial_scale, pooled_h,
                       pooled_w, sampling_ratio, aligned)
    ]
    for future in futures:
        outs.append(torch.jit.wait(future))
    return torch.cat(outs, dim=1)


@torch.jit.script
def _backward_blocks(grad: Tensor, rois: Tensor, spatial_scale: float, pooled_h: int,
                     pooled_w: int, batch: int, height: int, width: int, sampling_ratio: int,
                     aligned: bool, bounds: List[int]) -> Tensor:
    futures = torch.jit.annotate(List[torch.jit.Future[Tensor]], [])
    for i in range(1, len(bounds) - 1):
        futures.append(
            torch.jit.fork(_backward_block, grad[:, bounds[i]:bounds[i + 1]], rois,
                           spatial_scale, pooled_h, pooled_w, batch,
                           bounds[i + 1] - bounds[i], height, width, sampling_ratio,
                           aligned))
    outs = [
        _backward_block(grad[:, bounds[0]:bounds[1]], rois, spatial_scale, pooled_h,
                        pooled_w, batch, bounds[1] - bounds[0], height, width,
                        sampling_ratio, aligned)
    ]
    for future in futures:
        outs.append(torch.jit.wait(future))
    return torch.cat(outs, dim=1)


def _channel_bounds(channels: int, blocks: int) -> List[int]:
    """``blocks + 1`` boundaries splitting ``channels`` into nearly equal blocks."""
    return [channels * i // blocks for i in range(blocks + 1)]


class _ParallelRoIAlignFunction(Function):
    """torchvision's CPU RoIAlign kernels run on channel blocks in parallel."""

    @staticmethod
    def forward(ctx, feats: Tensor, rois: Tensor, output_size: tuple, spatial_scale: float,
                sampling_ratio: int, aligned: bool, blocks: int) -> Tensor:
        bounds = _channel_bounds(feats.size(1), blocks)
        ctx.save_for_backward(rois)
        ctx.params = (output_size, spatial_scale, sampling_ratio, aligned, bounds)
        ctx.feats_shape = feats.shape
        return _forward_blocks(feats, rois, spatial_scale, output_size[0], output_size[1],
                               sampling_ratio, aligned, bounds)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output: Tensor) -> tuple:
        (rois, ) = ctx.saved_tensors
        output_size, spatial_scale, sampling_ratio, aligned, bounds = ctx.params
        batch, _, height, width = ctx.feats_shape
        grad_feats = _backward_blocks(grad_output, rois, spatial_scale, output_size[0],
                                      output_size[1], batch, height, width, sampling_ratio,
                                      aligned, bounds)
        return grad_feats, None, None, None, None, None, None


@MODELS.register_module()
class ParallelRoIAlign(nn.Module):
    """mmcv ``RoIAlign`` (average pooling) computed by torchvision, channels in parallel.

    A drop-in ``roi_layer`` for mmdet's RoI extractors: same arguments and results as
    ``mmcv.ops.RoIAlign`` with ``pool_mode='avg'``.

    Args:
        output_size (int | tuple[int, int]): Height and width of each RoI's output.
        spatial_scale (float): Scale from image to feature-map coordinates
            (the extractor passes ``1 / stride``). Defaults to 1.0.
        sampling_ratio (int): Sampling points per output bin along each axis;
            0 adapts them to the RoI size (``ceil(roi_size / output_size)``).
            Defaults to 0.
        pool_mode (str): Only ``'avg'``; torchvision has no max-pooling RoIAlign.
        aligned (bool): Shift box coordinates by -0.5 pixel (Detectron2's aligned
            RoIAlign, mmcv's default). Defaults to True.
        num_blocks (int, optional): Channel blocks computed at once on the CPU.
            Defaults to ``torch.get_num_threads()`` at each call.
    """

    def __init__(self,
                 output_size: int | tuple,
                 spatial_scale: float = 1.0,
                 sampling_ratio: int = 0,
                 pool_mode: str = 'avg',
                 aligned: bool = True,
                 num_blocks: int | None = None) -> None:
        super().__init__()
        if pool_mode != 'avg':
            raise ValueError(f"ParallelRoIAlign supports pool_mode='avg' only, got {pool_mode!r}")
        if num_blocks is not None and num_blocks < 1:
            raise ValueError(f'num_blocks must be >= 1, got {num_blocks}')
        self.output_size = _pair(output_size)
        self.spatial_scale = float(spatial_scale)
        self.sampling_ratio = int(sampling_ratio)
        self.aligned = aligned
        self.num_blocks = num_blocks

    def forward(self, feats: Tensor, rois: Tensor) -> Tensor:
        """RoI features.

        Args:
            feats (Tensor): Feature map, shape (N, C, H, W).
            rois (Tensor): Boxes ``(batch index, x1, y1, x2, y2)``, shape (K, 5).

        Returns:
            Tensor: Shape (K, C, output_h, output_w).
        """
        blocks = min(self.num_blocks or torch.get_num_threads(), feats.size(1))
        if feats.device.type != 'cpu' or blocks < 2:
            return torchvision.ops.roi_align(feats, rois, self.output_size, self.spatial_scale,
                                             self.sampling_ratio, self.aligned)
        return _ParallelRoIAlignFunction.apply(feats, rois.to(feats.dtype), self.output_size,
                                               self.spatial_scale, self.sampling_ratio,
                                               self.aligned, blocks)

    def extra_repr(self) -> str:
        return (f'output_size={self.output_size}, spatial_scale={self.spatial_scale}, '
                f'sampling_ratio={self.sampling_ratio}, aligned={self.aligned}, '
                f'num_blocks={self.num_blocks}')
