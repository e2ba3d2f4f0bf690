"""Shared pytest fixtures: a tiny COCO nodule dataset made on the fly."""
import os
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
