"""Dataset pieces for nodule detection; importing it registers ``BoxesFromMasks``."""
from .transforms import BoxesFromMasks

__all__ = ['BoxesFromMasks']
