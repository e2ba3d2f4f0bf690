"""Lung-nodule instance segmentation on chest CT, built on OpenMMLab registries.

Importing this package is cheap and imports neither torch nor any OpenMMLab package,
so that the CT code (:mod:`projects.lung_nodule.ct`) serves the data converters
without them. Registration lives in :mod:`projects.lung_nodule.registry`, which
configs load with::

    custom_imports = dict(imports=['projects.lung_nodule.registry'],
                          allow_failed_imports=False)

Subpackages:

- ``ct``: CT knowledge without torch (reading scans, geometry, lung mask, window,
  slice images, nodule geometry);
- ``engine``, ``datasets``, ``models``, ``evaluation.metrics``, ``visualization``:
  registered mmengine / mmdet / mmpretrain modules;
- ``checkpoint``: the torch >= 2.6 checkpoint loader.
"""
