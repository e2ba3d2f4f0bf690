"""Shared pytest fixtures: a tiny COCO nodule dataset made on the fly; each test starts
without the mmengine visualizers of the tests before it."""
import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault('MPLBACKEND', 'Agg')  # no display in CI

from tests.tiny_coco import write_tiny_coco  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope='session')
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope='session')
def tiny_coco_root(tmp_path_factory) -> Path:
    """A 2-image-per-split COCO export with disc-shaped nodules (128x128 slices)."""
    return write_tiny_coco(tmp_path_factory.mktemp('tiny_coco'), num_images=2, size=128)


def forget_visualizers() -> None:
    """Drop every mmengine visualizer instance of this process.

    Why: mmdet's configs name their visualizer 'visualizer', and mmengine hands out one
    instance per class and name for the whole process. A Runner built in a later test
    gets an earlier test's visualizer, whose backends write into that test's work_dir
    (gone, once pytest has removed it). Nothing to do before mmengine is imported.
    """
    module = sys.modules.get('mmengine.visualization')
    if module is None:
        return
    classes = [module.Visualizer]
    while classes:
        cls = classes.pop()
        cls._instance_dict.clear()  # each ManagerMixin class keeps its own
        classes.extend(cls.__subclasses__())


@pytest.fixture(autouse=True)
def _fresh_visualizers():
    yield
    forget_visualizers()
