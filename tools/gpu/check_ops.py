"""Check mmcv's compiled ops on a device against torchvision's independent kernels.

tools/gpu/prepare.sh runs it after building mmcv with CUDA ops: a build that imports
but computes wrong (a kernel compiled for another architecture, a half-built
extension) fails here, before any training. It compares mmcv's ``nms`` and
``RoIAlign`` (forward and input gradient, on ``--device``) with torchvision's
``nms`` and ``roi_align`` on random boxes and features, and with mmcv's CPU result.

    python tools/gpu/check_ops.py                 # on cuda
    python tools/gpu/check_ops.py --device cpu    # the same checks on the CPU build
"""
import argparse
import sys

import torch


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--device', default='cuda',
                        help="torch device to check the ops on (default: cuda)")
    parser.add_argument('--seed', type=int, default=0, help='seed of the random inputs')
    return parser.parse_args(argv)


def _boxes(n: int, size: float, gen: torch.Generator) -> torch.Tensor:
    xy = torch.rand(n, 2, generator=gen) * size * 0.8
    wh = torch.rand(n, 2, generator=gen) * size * 0.3 + 2.0
    return torch.cat([xy, xy + wh], dim=1)


def check_nms(device: torch.device, gen: torch.Generator) -> str:
    """mmcv's nms keeps the same boxes as torchvision's."""
    from mmcv.ops import nms
    from torchvision.ops import nms as tv_nms

    boxes = _boxes(500, 200.0, gen)
    scores = torch.rand(500, generator=gen)
    _, keep = nms(boxes.to(device), scores.to(device), iou_threshold=0.5)
    ref = tv_nms(boxes, scores, 0.5)
    if keep.cpu().tolist() != ref.tolist():
        raise AssertionError(f'mmcv nms on {device} keeps {keep.numel()} boxes, '
                             f'torchvision keeps {ref.numel()} (or another set)')
    return f'nms: {keep.numel()} of 500 boxes kept, same as torchvision'


def check_roi_align(device: torch.device, gen: torch.Generator) -> str:
    """mmcv's RoIAlign (aligned, adaptive sampling) = torchvision's roi_align, fwd + bwd."""
    from mmcv.ops import RoIAlign
    from torchvision.ops import roi_align

    feats = torch.randn(2, 16, 32, 32, generator=gen)
    boxes = _boxes(40, 120.0, gen)
    rois = torch.cat([torch.randint(0, 2, (40, 1), generator=gen).float(), boxes], dim=1)
    grad_out = torch.randn(40, 16, 7, 7, generator=gen)

    def run(fn, dev: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        x = feats.to(dev).requires_grad_(True)
        out = fn(x, rois.to(dev))
        out.backward(grad_out.to(dev))
        return out.detach().cpu(), x.grad.cpu()

    layer = RoIAlign((7, 7), spatial_scale=0.25, sampling_ratio=0, aligned=True)
    out, grad = run(layer, device)
    ref_out, ref_grad = run(
        lambda x, r: roi_align(x, r, (7, 7), spatial_scale=0.25, sampling_ratio=0,
                               aligned=True), torch.device('cpu'))
    err_out = (out - ref_out).abs().max().item()
    err_grad = (grad - ref_grad).abs().max().item()
    if err_out > 1e-4 or err_grad > 1e-4:
        raise AssertionError(f'mmcv RoIAlign on {device} differs from torchvision: '
                             f'max |diff| forward {err_out:.2e}, gradient {err_grad:.2e}')
    return f'RoIAlign: max |diff| to torchvision forward {err_out:.1e}, gradient {err_grad:.1e}'


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device)
    if device.type == 'cuda' and not torch.cuda.is_available():
        print(f'error: --device {args.device} but torch {torch.__version__} sees no CUDA '
              'device', file=sys.stderr)
        return 1
    import mmcv

    # Not mmcv.ops.get_compiler_version(): on mmcv 2.1.0 built with CUDA 13 for an H200
    # (torch 2.11, 2026-11-30) it killed the process (SIGSEGV) while every op worked.
    from mmcv.ops import get_compiling_cuda_version

    gen = torch.Generator().manual_seed(args.seed)
    print(f'mmcv {mmcv.__version__} ops built for CUDA {get_compiling_cuda_version()}; '
          f'torch {torch.__version__}; '
          f'device {device}' + (f' ({torch.cuda.get_device_name(device)})'
                                if device.type == 'cuda' else ''))
    for check in (check_nms, check_roi_align):
        print(check(device, gen))
    print('mmcv.ops OK')
    return 0


if __name__ == '__main__':
    sys.exit(main())
