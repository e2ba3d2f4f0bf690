"""The GPU path as far as a CPU machine can check it.

tools/gpu/download_wheels.sh, tools/gpu/prepare.sh, tools/gpu/check_ops.py and
benchmarks/bench_gpu.py: argument handling, the requirements the wheel folder is made
from, prepare.sh's checks of the machine up to the point where a GPU is needed, the ops
check and the benchmark on the CPU (SimpleITK blocked), and -- where the wheel folder
was downloaded (it is not committed) -- that it holds the whole requirement closure for
CPython 3.12 on manylinux x86-64, mmcv's own requirements included.
"""
import importlib.util
import json
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
DOWNLOAD = REPO_ROOT / 'tools/gpu/download_wheels.sh'
PREPARE = REPO_ROOT / 'tools/gpu/prepare.sh'
WHEELS = REPO_ROOT / '.whl/gpu'
HAS_WHEELS = (WHEELS / 'MANIFEST.txt').is_file()


def _run(*cmd, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=600, **kwargs)


def _requirement_names(path: Path) -> list[str]:
    lines = []
    for line in path.read_text().splitlines():
        line = line.split('#')[0].strip()
        if line and not line.startswith('-'):
            lines.append(line)
    return lines


def _name(requirement: str) -> str:
    return re.split(r'[<>=!~;\[ ]', requirement, maxsplit=1)[0].lower().replace('_', '-')


# --- download_wheels.sh -------------------------------------------------------------------

def test_download_help_and_bad_arguments():
    out = _run('bash', DOWNLOAD, '--help')
    assert out.returncode == 0
    for option in ('--out', '--skip', '--python-version', '--list'):
        assert option in out.stdout
    bad = _run('bash', DOWNLOAD, '--bogus')
    assert bad.returncode == 2 and "unknown argument '--bogus'" in bad.stderr
    bad = _run('bash', DOWNLOAD, '--python-version', 'twelve')
    assert bad.returncode == 2 and '--python-version needs X.Y' in bad.stderr


def test_download_list_is_the_requirements_without_torch_and_simpleitk():
    """The wheel set follows requirements/*.txt: a requirement added there travels too."""
    listed = _run('bash', DOWNLOAD, '--list')
    assert listed.returncode == 0, listed.stderr
    got = listed.stdout.split()
    expected = [r for r in _requirement_names(REPO_ROOT / 'requirements/build.txt')
                + _requirement_names(REPO_ROOT / 'requirements/runtime.txt')
                if _name(r) not in ('torch', 'torchvision', 'simpleitk')]
    assert got == expected + ['mmcv==2.1.0']
    names = {_name(r) for r in got}
    assert {'mmdet', 'mmengine', 'mmpretrain', 'pycocotools', 'setuptools'} <= names
    assert not names & {'torch', 'torchvision', 'simpleitk'}
    skipped = _run('bash', DOWNLOAD, '--list', '--skip', 'Scikit_Image').stdout.split()
    assert 'scikit-image' not in skipped and len(skipped) == len(got) - 1


def _mmcv_requirements(sdist: Path) -> list[str]:
    """mmcv's install requirements, read from its source archive (setup.py adds OpenCV)."""
    with tarfile.open(sdist) as tar:
        text = tar.extractfile('mmcv-2.1.0/requirements/runtime.txt').read().decode()
    reqs = [r.strip() for r in text.splitlines() if r.strip() and 'win32' not in r]
    return reqs + ['opencv-python>=3']


def _resolve_offline(folder: Path, requirements: list[str], dest: Path):
    """pip resolves the requirements for CPython 3.12 from ``folder`` alone."""
    platforms = [f'manylinux_2_{n}_x86_64' for n in range(5, 40)] + ['manylinux2014_x86_64']
    cmd = [sys.executable, '-m', 'pip', 'download', '--disable-pip-version-check',
           '--no-index', '--find-links', folder, '-d', dest, '--only-binary=:all:',
           '--python-version', '3.12', '--implementation', 'cp', '--abi', 'cp312',
           '--abi', 'abi3', '--abi', 'none']
    for p in platforms:
        cmd += ['--platform', p]
    return _run(*cmd, *requirements)


@pytest.mark.slow
@pytest.mark.skipif(not HAS_WHEELS, reason='.whl/gpu/ not downloaded (not committed): run '
                    'bash tools/gpu/download_wheels.sh; the requirement list is checked above')
def test_wheel_folder_holds_the_whole_closure_for_python_312(tmp_path):
    manifest = (WHEELS / 'MANIFEST.txt').read_text()
    assert 'for CPython 3.12' in manifest.splitlines()[0]
    sdist = WHEELS / 'mmcv-2.1.0.tar.gz'
    assert sdist.is_file()
    files = [p.name.lower() for p in WHEELS.iterdir()]
    assert not [f for f in files if f.startswith(('torch-', 'torchvision-', 'nvidia', 'simpleitk'))]
    requirements = [r for r in _run('bash', DOWNLOAD, '--list').stdout.split()
                    if not r.startswith('mmcv')] + _mmcv_requirements(sdist)
    # dest = the folder itself: pip finds every file already there and copies nothing
    full = _resolve_offline(WHEELS, requirements, WHEELS)
    assert full.returncode == 0, full.stdout[-2000:] + full.stderr[-2000:]
    assert 'Successfully downloaded' in full.stdout and 'mmdet' in full.stdout

    # the counter-check: without one wheel of the closure the same resolution fails
    partial = tmp_path / 'partial'
    partial.mkdir()
    for wheel in WHEELS.glob('*.whl'):
        if not wheel.name.startswith('terminaltables-'):  # needed by mmdet only
            (partial / wheel.name).symlink_to(wheel)
    missing = _resolve_offline(partial, requirements, tmp_path / 'dest')
    assert missing.returncode != 0
    assert 'terminaltables' in missing.stderr


# --- prepare.sh ---------------------------------------------------------------------------

def test_prepare_help_and_bad_arguments(tmp_path):
    out = _run('bash', PREPARE, '--help')
    assert out.returncode == 0
    for option in ('--wheels', '--venv', '--system', '--python', '--arch'):
        assert option in out.stdout
    assert 'TORCH_CUDA_ARCH_LIST' in out.stdout
    bad = _run('bash', PREPARE, '--nope')
    assert bad.returncode == 2 and "unknown argument '--nope'" in bad.stderr
    bad = _run('bash', PREPARE, '--arch', '90')
    assert bad.returncode == 1 and "--arch '90' is not of the form X.Y" in bad.stderr
    empty = _run('bash', PREPARE, '--wheels', tmp_path)
    assert empty.returncode == 1 and 'MANIFEST.txt' in empty.stderr
    assert 'download_wheels.sh' in empty.stderr


def _fake_wheels(folder: Path, python_version: str) -> Path:
    folder.mkdir()
    (folder / 'MANIFEST.txt').write_text(
        f'# Made by tools/gpu/download_wheels.sh on 2026-01-01T00:00Z for CPython '
        f'{python_version}\n')
    (folder / 'mmcv-2.1.0.tar.gz').write_bytes(b'')
    return folder


def test_prepare_refuses_wheels_of_another_python(tmp_path):
    wheels = _fake_wheels(tmp_path / 'w', '3.99')
    out = _run('bash', PREPARE, '--wheels', wheels, '--python', sys.executable,
               '--venv', tmp_path / 'venv')
    have = '%d.%d' % sys.version_info[:2]
    assert out.returncode == 1
    assert f'are for CPython 3.99, {sys.executable} is {have}' in out.stderr
    assert not (tmp_path / 'venv').exists()  # nothing made before the checks pass


@pytest.mark.skipif(torch.cuda.is_available(), reason='checks the message of a GPU-less machine')
def test_prepare_stops_before_building_without_gpu_or_nvcc(tmp_path):
    wheels = _fake_wheels(tmp_path / 'w', '%d.%d' % sys.version_info[:2])
    common = ('bash', PREPARE, '--wheels', wheels, '--python', sys.executable,
              '--venv', tmp_path / 'venv')
    out = _run(*common)
    assert out.returncode == 1
    if torch.version.cuda is None:
        assert 'is not a CUDA build' in out.stderr
        return
    assert 'torch sees no GPU: pass --arch X.Y' in out.stderr
    # with --arch given, the next check is the CUDA compiler
    env = {'PATH': '/usr/bin:/bin', 'CUDA_HOME': str(tmp_path / 'no_cuda'),
           'HOME': str(tmp_path)}
    out = _run(*common, '--arch', '9.0', env=env)
    assert out.returncode == 1
    assert 'building for compute capability 9.0' in out.stdout
    if Path('/usr/local/cuda/bin/nvcc').exists():
        return  # a CUDA toolkit on this machine: the build could go on
    assert 'no nvcc (CUDA compiler) found' in out.stderr
    assert not (tmp_path / 'venv').exists()


def test_registry_imports_without_simpleitk():
    """What prepare.sh's last check and tools/train.py on a GPU machine need."""
    code = 'import sys; sys.modules["SimpleITK"] = None; import projects.lung_nodule.registry'
    out = _run(sys.executable, '-c', code)
    assert out.returncode == 0, out.stderr[-1500:]


# --- check_ops.py -------------------------------------------------------------------------

def test_check_ops_on_cpu():
    out = _run(sys.executable, 'tools/gpu/check_ops.py', '--device', 'cpu')
    assert out.returncode == 0, out.stderr
    assert 'nms:' in out.stdout and 'same as torchvision' in out.stdout
    assert 'RoIAlign: max |diff|' in out.stdout and out.stdout.strip().endswith('mmcv.ops OK')
    assert _run(sys.executable, 'tools/gpu/check_ops.py', '--help').returncode == 0


@pytest.mark.skipif(torch.cuda.is_available(), reason='checks the message of a GPU-less machine')
def test_check_ops_says_when_there_is_no_cuda():
    out = _run(sys.executable, 'tools/gpu/check_ops.py')
    assert out.returncode == 1 and 'sees no CUDA device' in out.stderr


# --- bench_gpu.py -------------------------------------------------------------------------

def _bench_gpu():
    spec = importlib.util.spec_from_file_location('bench_gpu',
                                                  REPO_ROOT / 'benchmarks/bench_gpu.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_gpu_help_and_bad_arguments(tmp_path, capsys):
    bench = _bench_gpu()
    with pytest.raises(SystemExit) as exc:
        bench.parse_args(['--help'])
    assert exc.value.code == 0
    help_text = capsys.readouterr().out
    for option in ('--data-root', '--device', '--train-batch-size', '--infer-batch-sizes',
                   '--iters', '--modes'):
        assert option in help_text
    cases = [(['--iters', '0'], '--iters must be >= 1'),
             (['--infer-batch-sizes', '0'], '--infer-batch-sizes must be >= 1'),
             (['--modes', 'train-int8'], "invalid choice: 'train-int8'"),
             (['--data-root', str(tmp_path / 'none')], 'no such folder')]
    if not torch.cuda.is_available():
        cases.append(([], 'sees no CUDA device'))
    for argv, message in cases:
        device = [] if argv == [] else ['--device', 'cpu']
        with pytest.raises(SystemExit) as exc:
            bench.parse_args(device + argv)
        assert exc.value.code == 2, argv
        assert message in capsys.readouterr().err, argv


@pytest.mark.slow
def test_bench_gpu_runs_on_cpu_without_simpleitk(tmp_path):
    """The real R101 config, tiny: the fp32 modes run (AMP is for a GPU: skipped, said so)."""
    out_json = tmp_path / 'gpu.json'
    code = ('import runpy, sys; sys.modules["SimpleITK"] = None; '  # import would fail
            'sys.argv = sys.argv[1:]; '
            'runpy.run_path("benchmarks/bench_gpu.py", run_name="__main__")')
    out = _run(sys.executable, '-c', code, 'bench_gpu.py', '--device', 'cpu', '--iters', '1',
               '--warmup', '0', '--size', '128', '--train-batch-size', '1',
               '--infer-batch-sizes', '1', '2', '--out', out_json)
    assert out.returncode == 0, out.stderr[-3000:]
    results = json.loads(out_json.read_text())
    assert results['simpleitk_imported'] is False
    rows = {(r['mode'], r['batch_size']): r for r in results['measurements']}
    assert set(rows) == {('train-fp32', 1), ('train-amp', 1), ('infer-fp32', 1),
                         ('infer-fp32', 2), ('infer-amp', 1), ('infer-amp', 2)}
    for key, row in rows.items():
        if key[0].endswith('amp'):
            assert 'AMP is measured on a GPU' in row['skipped']
        else:
            assert row['images_per_s'] > 0 and row['peak_gpu_gib'] is None
    assert torch.isfinite(torch.tensor(rows[('train-fp32', 1)]['final_loss']))
    assert '| infer-fp32 | 2 |' in out.stdout


# --- benchmarks/gpu_checks.sh -------------------------------------------------------------

def test_gpu_checks_arguments(tmp_path):
    script = REPO_ROOT / 'benchmarks/gpu_checks.sh'
    out = _run('bash', script, '--help')
    assert out.returncode == 0 and '--part setup' in out.stdout and '--extra-wheels' in out.stdout
    bad = _run('bash', script, tmp_path / 'out')
    assert bad.returncode == 1 and '--part setup or --part infer' in bad.stderr
    bad = _run('bash', script, tmp_path / 'out', '--part', 'infer', '--venv', tmp_path / 'none')
    assert bad.returncode == 1 and 'run --part setup first' in bad.stderr
    bad = _run('bash', script, '--bogus')
    assert bad.returncode == 2 and "unknown argument '--bogus'" in bad.stderr
