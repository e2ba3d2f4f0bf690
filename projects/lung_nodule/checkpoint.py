"""Load mmengine checkpoints under torch >= 2.6 without turning off ``weights_only``.

torch >= 2.6 unpickles with ``weights_only=True`` by default, and mmengine 0.10.7
calls ``torch.load`` without saying what a checkpoint may contain, so resuming or
testing a checkpoint that mmengine's Runner saved fails with ``UnpicklingError``:
the ``message_hub`` keeps ``HistoryBuffer`` objects and numpy arrays and scalars.

Rather than disabling the check (``weights_only=False`` or
``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD``), we re-register mmengine's loader for local
files (the ``''`` prefix of :class:`mmengine.runner.CheckpointLoader`) with one that
allow-lists exactly those globals, and only for the duration of that one
``torch.load`` call (``torch.serialization.safe_globals`` is a context manager), so
the rest of the process keeps torch's default allow-list.

``builtins.getattr`` is *not* allow-listed as such: a pickle that may call
``getattr`` can walk from any allowed object to anything reachable from it (a
function's ``__globals__``, a module, ``os.system``). The only use of it in an
mmengine checkpoint is ``HistoryBuffer``'s table of statistics methods, pickled as
``getattr(HistoryBuffer, 'mean')`` and so on, so ``getattr`` is mapped to
:func:`_history_buffer_getattr`, which answers only that question.
"""
import _codecs
import collections
import os.path as osp
import pickle
from typing import Any, Callable, List, Optional, Tuple, Union

import numpy as np
import torch
from mmengine.logging.history_buffer import HistoryBuffer
from mmengine.runner import CheckpointLoader

__all__ = ['CHECKPOINT_SAFE_GLOBALS', 'load_checkpoint_file']


# HistoryBuffer fills its class-level table lazily, in __init__; a fresh process that
# loads a checkpoint before building any buffer still has to admit the built-in ones.
_HISTORY_BUFFER_STATISTICS = frozenset({'current', 'max', 'mean', 'min'})


def _history_buffer_getattr(obj: Any, name: Any) -> Any:
    """``getattr`` restricted to the statistics methods of ``HistoryBuffer``.

    Stands in for ``builtins.getattr`` while unpickling a checkpoint: mmengine's
    ``HistoryBuffer._statistics_methods`` holds its methods (``mean``, ``min``,
    ``current``, ...), which pickle writes as ``getattr(HistoryBuffer, 'mean')``.
    """
    allowed = _HISTORY_BUFFER_STATISTICS | set(HistoryBuffer._statistics_methods)
    if obj is HistoryBuffer and name in allowed:
        return getattr(obj, name)
    raise pickle.UnpicklingError(
        f'checkpoint asks for getattr({obj!r}, {name!r}); while loading a checkpoint only '
        f'the HistoryBuffer statistics {sorted(allowed)} may be looked up this way')


def _numpy_core_name(attr: str) -> str:
    # numpy 2 pickles as numpy._core.*, numpy 1 as numpy.core.*
    core = 'numpy._core' if hasattr(np, '_core') else 'numpy.core'
    return f'{core}.multiarray.{attr}'


def _safe_globals() -> List[Union[Callable, Tuple[Callable, str]]]:
    multiarray = np._core.multiarray if hasattr(np, '_core') else np.core.multiarray
    safe: List[Union[Callable, Tuple[Callable, str]]] = [
        (_history_buffer_getattr, 'builtins.getattr'),
        collections.Counter,
        collections.OrderedDict,
        HistoryBuffer,
        np.dtype,
        np.ndarray,
        (multiarray._reconstruct, _numpy_core_name('_reconstruct')),
        (multiarray.scalar, _numpy_core_name('scalar')),
    ]
    # numpy >= 1.25: np.dtype('f8') builds an instance of numpy.dtypes.Float64DType, and
    # torch admits a built object only if its class is allow-listed too
    safe += [cls for cls in vars(np.dtypes).values()
             if isinstance(cls, type) and issubclass(cls, np.dtype)]
    # protocol 2 pickles bytes as _codecs.encode(str, 'latin1'), and b'' (the buffer of
    # an empty array, e.g. a fresh HistoryBuffer) as bytes()
    safe += [_codecs.encode, bytes]
    return safe


#: What ``load_checkpoint_file`` admits on top of torch's own weights-only allow-list.
CHECKPOINT_SAFE_GLOBALS = _safe_globals()


def load_checkpoint_file(filename: str, map_location: Optional[Any] = None) -> Any:
    """``torch.load(weights_only=True)`` with :data:`CHECKPOINT_SAFE_GLOBALS` admitted.

    Args:
        filename: path of a checkpoint saved by ``torch.save`` (mmengine's Runner or
            a plain state dict).
        map_location: as in ``torch.load``.

    Raises:
        FileNotFoundError: if ``filename`` is not a file.
        pickle.UnpicklingError: if the file references any other global, for
            example a pickle that would call ``os.system``.
    """
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'checkpoint {filename} can not be found')
    with torch.serialization.safe_globals(CHECKPOINT_SAFE_GLOBALS):
        return torch.load(filename, map_location=map_location, weights_only=True)


# Replace mmengine's loader of local paths (registered under the '' prefix), which
# every Runner.load_checkpoint / resume / load_from of a local file goes through.
CheckpointLoader.register_scheme(prefixes='', force=True)(load_checkpoint_file)
