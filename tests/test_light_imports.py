"""The converters and the CT code load without torch and the OpenMMLab packages.

Each check runs in a fresh interpreter: ``sys.modules`` of the test process already
holds torch (other tests import it), so only a new process shows what an import pulls in.
"""
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
HEAVY = ('torch', 'torchvision', 'mmcv', 'mmengine', 'mmdet', 'mmpretrain')

LIGHT_MODULES = [
    'projects.lung_nodule',
    'projects.lung_nodule.ct',
    'data_prep.common',
    'data_prep.luna16_to_coco',
    'data_prep.luna16_to_patches',
    'data_prep.luna16_prepare',
    'data_prep.candidates_to_views',
    'data_prep.make_synthetic_luna16',
    # whole-scan inference without the network (apis/__init__ resolves names lazily)
    'projects.lung_nodule.apis.cohort',
]


def heavy_modules_after_import(module: str) -> list[str]:
    code = (f'import sys, {module}\n'
            f'print(",".join(m for m in {HEAVY!r} if m in sys.modules))')
    result = subprocess.run([sys.executable, '-c', code], cwd=REPO_ROOT, capture_output=True,
                            text=True, check=True)
    return [m for m in result.stdout.strip().split(',') if m]


@pytest.mark.parametrize('module', LIGHT_MODULES)
def test_light_module_imports_without_torch(module):
    assert heavy_modules_after_import(module) == []


def test_registry_module_does_register():
    """The counter-check: the registry module is the one that pulls the heavy packages in."""
    assert set(heavy_modules_after_import('projects.lung_nodule.registry')) >= {
        'torch', 'mmengine', 'mmdet', 'mmpretrain'}


def test_converter_help_runs_without_torch():
    script = REPO_ROOT / 'data_prep' / 'luna16_to_coco.py'
    code = ('import runpy, sys\n'
            f'sys.argv = [{str(script)!r}, "--help"]\n'
            'try:\n'
            f'    runpy.run_path({str(script)!r}, run_name="__main__")\n'
            'except SystemExit:\n'
            '    pass\n'
            f'print("HEAVY=" + ",".join(m for m in {HEAVY!r} if m in sys.modules))')
    result = subprocess.run([sys.executable, '-c', code], cwd=REPO_ROOT, capture_output=True,
                            text=True, check=True)
    assert 'usage:' in result.stdout
    assert result.stdout.strip().endswith('HEAVY=')
