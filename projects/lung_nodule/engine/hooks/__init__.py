"""mmdet hooks of the project (registered in ``mmdet.registry.HOOKS``)."""
from .staged_unfreeze_hook import StagedUnfreezeHook

__all__ = ['StagedUnfreezeHook']
