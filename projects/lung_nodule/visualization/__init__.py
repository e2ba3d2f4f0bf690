"""Visualisation; importing it registers ``NoduleVisualizer`` in mmdet's ``VISUALIZERS``."""
from .nodule_visualizer import INSTANCE_PALETTE, NoduleVisualizer

__all__ = ['INSTANCE_PALETTE', 'NoduleVisualizer']
