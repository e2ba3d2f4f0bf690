"""mmpretrain 1.2.0 beside transformers >= 5 (seen on the GPU image, transformers 5.17).

A stand-in transformers 5.0.0 -- its metadata, and a package whose import fails as
mmpretrain's multimodal code failed on transformers 5 -- is put first on the path of a
fresh interpreter: plain ``import mmpretrain.models`` fails, and our models, imported
through the project, load without touching transformers.
"""
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def _fake_transformers(root: Path, version: str) -> Path:
    (root / 'transformers').mkdir(parents=True)
    (root / 'transformers/__init__.py').write_text(
        "raise ImportError('stand-in transformers: mmpretrain 1.2.0 cannot use it')\n")
    info = root / f'transformers-{version}.dist-info'
    info.mkdir()
    (info / 'METADATA').write_text(f'Metadata-Version: 2.1\nName: transformers\nVersion: {version}\n')
    return root


def _python(code: str, path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, '-c', f'import sys; sys.path.insert(0, {str(path)!r}); '
                           + code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)


def test_transformers_5_breaks_mmpretrain_models_and_the_project_avoids_it(tmp_path):
    site = _fake_transformers(tmp_path / 'site', '5.0.0')
    plain = _python('import mmpretrain.models', site)
    assert plain.returncode != 0
    assert 'stand-in transformers' in plain.stderr

    ours = _python('import projects.lung_nodule.registry; '
                   'from mmpretrain.registry import MODELS; '
                   'from mmpretrain.utils import dependency; '
                   'print(MODELS.get("ResNet20").__name__, dependency.WITH_MULTIMODAL)', site)
    assert ours.returncode == 0, ours.stderr[-2000:]
    assert ours.stdout.split() == ['ResNet20', 'False']
    assert 'stand-in transformers' not in ours.stderr


def test_older_or_absent_transformers_is_left_alone(tmp_path):
    site = _fake_transformers(tmp_path / 'site', '4.40.0')
    out = _python('from projects.lung_nodule.mmpretrain_compat import '
                  'skip_mmpretrain_multimodal_on_transformers_5 as skip; '
                  'print(skip(), "mmpretrain" in sys.modules)', site)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ['False', 'False']  # nothing changed, nothing imported
