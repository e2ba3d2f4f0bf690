"""Whole-scan inference, like :mod:`mmdet.apis`: a config and a checkpoint once, then scans.

- :class:`NoduleInferencer` (``nodule_inferencer``): scan -> lung slices -> Mask R-CNN ->
  3D nodules measured in world mm (:class:`ScanResult`);
- ``slice_predictor``: the seam between the pipeline and the network
  (:class:`SlicePredictor`; :class:`MMDetSlicePredictor` is the real one);
- ``outputs``: what a run writes per scan and for the run (CSV/JSON, label volume,
  DICOM SEG, PNGs, ``candidates.csv``, ``summary.json``);
- ``cohort``: many scans, shards, resume.

The names are resolved lazily (PEP 562) so that ``import projects.lung_nodule.apis.outputs``
does not pull torch in through this ``__init__``: only the network needs it.
"""
from __future__ import annotations

import importlib
from typing import Any

__all__ = ['MMDetSlicePredictor', 'NoduleInferencer', 'ScanResult', 'SlicePrediction',
           'SlicePredictor']

_WHERE = {
    'MMDetSlicePredictor': 'mmdet_predictor',
    'NoduleInferencer': 'nodule_inferencer',
    'ScanResult': 'nodule_inferencer',
    'SlicePrediction': 'slice_predictor',
    'SlicePredictor': 'slice_predictor',
}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
    return getattr(importlib.import_module(f'.{_WHERE[name]}', __name__), name)
