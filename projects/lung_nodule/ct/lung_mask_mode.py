"""The lung-mask modes (``'blank'``, ``'filter'``): what they are is explained in
:mod:`.slice_image`. A module of their own, free of SimpleITK and numpy, so that the
dataset that checks a COCO file's mode (and a GPU machine without SimpleITK) can use it.
"""
__all__ = ['DEFAULT_LUNG_MASK_MODE', 'LUNG_MASK_MODES', 'MIN_IN_LUNG_FRACTION',
           'check_lung_mask_mode']

LUNG_MASK_MODES = ('blank', 'filter')
DEFAULT_LUNG_MASK_MODE = 'blank'
# In 'filter' mode a detection is kept when at least this fraction of its mask lies in
# the lung mask: a nodule that indents the lung from the wall has most of its pixels in
# the (hull-completed) lung mask, a finding in the chest wall or the heart has few.
MIN_IN_LUNG_FRACTION = 0.5


def check_lung_mask_mode(mode: str) -> str:
    """Return ``mode`` if it is one of :data:`LUNG_MASK_MODES`, else raise ValueError."""
    if mode not in LUNG_MASK_MODES:
        raise ValueError(f'unknown lung mask mode {mode!r}; expected one of {LUNG_MASK_MODES}')
    return mode
