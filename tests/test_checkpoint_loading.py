"""Our checkpoint loader admits mmengine checkpoints and nothing that runs code."""
import os
import pickle

import numpy as np
import pytest
import torch
from mmengine.logging.history_buffer import HistoryBuffer
from mmengine.runner import CheckpointLoader

import projects.lung_nodule.registry  # noqa: F401  (registers our modules, checkpoint loader)
from projects.lung_nodule.checkpoint import load_checkpoint_file


class _RunsShell:
    """Unpickling this calls os.system: the classic malicious checkpoint."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f'touch {self.marker}', )


def test_loader_is_the_registered_local_scheme():
    assert CheckpointLoader._schemes[''] is load_checkpoint_file


def test_mmengine_runtime_objects_round_trip(tmp_path):
    buffer = HistoryBuffer()
    buffer.update(np.float64(0.5), 2)
    ckpt = dict(
        meta=dict(epoch=1, iter=2, seed=np.int64(3), dtype=np.dtype('float32'),
                  shape=np.zeros((2, 2), np.float32)),
        state_dict=dict(w=torch.ones(2)),
        message_hub=dict(log_scalars=dict(loss=buffer)))
    path = tmp_path / 'ok.pth'
    torch.save(ckpt, path)
    loaded = CheckpointLoader.load_checkpoint(str(path), map_location='cpu')
    assert loaded['meta']['seed'] == 3
    assert loaded['meta']['dtype'] == np.float32
    assert torch.equal(loaded['state_dict']['w'], torch.ones(2))
    assert loaded['message_hub']['log_scalars']['loss'].current() == 0.5


def test_checkpoint_that_calls_os_system_is_refused(tmp_path):
    marker = tmp_path / 'pwned'
    path = tmp_path / 'evil.pth'
    torch.save(dict(state_dict={}, payload=_RunsShell(marker)), path)
    with pytest.raises(pickle.UnpicklingError, match='os.system|posix.system'):
        CheckpointLoader.load_checkpoint(str(path), map_location='cpu')
    assert not marker.exists()


def test_getattr_cannot_reach_beyond_history_buffer_statistics(tmp_path):
    """A pickle may call getattr, but only for HistoryBuffer's statistics methods."""

    class _WalksToGlobals:
        def __reduce__(self):
            # HistoryBuffer is admitted; from it, __init__.__globals__ reaches modules
            return getattr, (HistoryBuffer, '__init__')

    path = tmp_path / 'walk.pth'
    torch.save({'x': _WalksToGlobals()}, path)
    with pytest.raises(pickle.UnpicklingError, match='getattr.*__init__'):
        load_checkpoint_file(str(path))


def test_allow_list_is_scoped_to_checkpoint_loading(tmp_path):
    path = tmp_path / 'buffer.pth'
    torch.save({'b': HistoryBuffer()}, path)
    load_checkpoint_file(str(path))  # admitted inside our loader ...
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)  # ... and nowhere else
