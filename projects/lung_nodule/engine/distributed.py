"""Run ``--launcher pytorch`` (``tools/dist_train.sh``) on machines without CUDA.

mmengine's ``pytorch`` launcher calls ``torch.cuda.set_device(LOCAL_RANK)`` and the
Runner's default DDP wrapper passes ``device_ids=[LOCAL_RANK]``; both fail for a
CPU model. The Runner skips its own ``init_dist`` when a process group already
exists, so on a CPU-only machine we open a gloo group from torchrun's environment
and wrap the model with ``device_ids=None``. With CUDA nothing changes.

On every device, ``tools/train.py`` and ``tools/test.py`` end with
:func:`close_distributed`, so that no process group is left to the interpreter's exit.
"""
import torch
import torch.distributed as dist
from mmengine.config import Config

__all__ = ['close_distributed', 'setup_cpu_distributed']


def setup_cpu_distributed(cfg: Config, launcher: str) -> bool:
    """Prepare ``cfg`` and the process group for distributed CPU training or testing.

    Args:
        cfg (Config): The config the Runner will be built from; gets a
            ``model_wrapper_cfg`` (``MMDistributedDataParallel`` with
            ``device_ids=None``, ``find_unused_parameters`` from the config) unless
            it has one.
        launcher (str): The ``--launcher`` of the tool.

    Returns:
        bool: Whether the CPU set-up was applied (``pytorch`` launcher, no CUDA).
    """
    if launcher != 'pytorch' or torch.cuda.is_available():
        return False
    if not dist.is_initialized():
        # env:// reads MASTER_ADDR, MASTER_PORT, RANK and WORLD_SIZE set by torchrun
        dist.init_process_group(backend='gloo')
    if cfg.get('model_wrapper_cfg') is None:
        cfg.model_wrapper_cfg = dict(
            type='MMDistributedDataParallel',
            device_ids=None,
            broadcast_buffers=False,
            find_unused_parameters=cfg.get('find_unused_parameters', False))
    return True


def close_distributed() -> None:
    """Wait for every rank, then destroy the process group, before the process exits.

    Why: a process group left to the interpreter's exit is torn down while its
    communication threads still run; a gloo rank then dies with "terminate called
    without an active exception" (SIGABRT) after its work is done, and torchrun reports
    the whole job as failed. PyTorch asks for ``destroy_process_group`` at the end.
    """
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
