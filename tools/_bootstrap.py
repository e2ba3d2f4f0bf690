"""Make ``projects.lung_nodule`` importable from ``python tools/<script>.py``.

Every tool imports this first, so it runs from any working directory without
``PYTHONPATH=.`` and registers our modules (hooks, metrics, backbones, the
torch >= 2.6 checkpoint loader) before a config is built.
"""
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import projects.lung_nodule.registry  # noqa: E402,F401  (registers our modules, checkpoint loader)
