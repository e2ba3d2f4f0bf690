"""Evaluation of nodule detection and segmentation.

- :mod:`.metrics`: mmengine metrics (``MatterportMaskAP``, ``NoduleDiceMetric`` in
  mmdet's ``METRICS``; ``BinaryAUC`` in mmpretrain's), registered on import;
- :mod:`.functional`: the per-image computations behind them (torch).

Nothing is imported here, so that submodules without torch stay light.
"""
