"""LUNA16 converters (command-line scripts, each also importable).

* ``make_synthetic_luna16.py``: a LUNA16-shaped synthetic data set.
* ``luna16_to_coco.py``: the paper's slice pipeline -> COCO instance segmentation.
* ``luna16_to_patches.py``: 50x50 nodule / normal patches for the backbone comparison.

The CT knowledge they use lives in :mod:`projects.lung_nodule.ct`; :mod:`.common`
holds the command-line plumbing they share (atomic writes, workers, splits, summary).
"""
