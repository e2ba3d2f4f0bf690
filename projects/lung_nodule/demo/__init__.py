"""The main job's report pieces (figures, REPORT.md) for ``tools/run_demo.py``.

Light: importing this package or its modules pulls in neither torch nor OpenMMLab
(reading mmdet's prediction pickle does, when a function is called with one).
"""
