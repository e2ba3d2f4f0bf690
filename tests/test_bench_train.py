"""benchmarks/bench_train.py: arguments, and a tiny A/B run whose variants agree."""
import importlib.util
import json
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT


def _bench_train():
    spec = importlib.util.spec_from_file_location('bench_train',
                                                  REPO_ROOT / 'benchmarks/bench_train.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_help_and_bad_arguments():
    out = subprocess.run([sys.executable, 'benchmarks/bench_train.py', '--help'], cwd=REPO_ROOT,
                         capture_output=True, text=True)
    assert out.returncode == 0
    for option in ('--config', '--size', '--steps', '--rounds', '--variants', '--profile-steps'):
        assert option in out.stdout
    bench = _bench_train()
    for argv, message in ((['--steps', '0'], '--steps must be >= 1'),
                          (['--steps', '3', '--skip', '3'], '--skip must be in [0, --steps)'),
                          (['--variants', 'mmcv', 'mmcv'], 'repeats a name'),
                          (['--variants', 'cuda'], "invalid choice: 'cuda'")):
        with pytest.raises(SystemExit) as exc:
            bench.parse_args(argv)
        assert exc.value.code == 2, argv


@pytest.mark.slow
def test_tiny_run_variants_give_the_same_losses(tmp_path, capsys):
    bench = _bench_train()
    out = tmp_path / 'bench'
    assert bench.main(['--size', '128', '--steps', '2', '--skip', '1', '--rounds', '1',
                       '--profile-steps', '1', '--out', str(out),
                       '--variants', 'mmcv', 'parallel']) == 0
    results = json.loads((out / 'results.json').read_text())
    mmcv, parallel = (results['variants'][v] for v in ('mmcv', 'parallel'))
    assert len(mmcv['runs'][0]['loss']) == 2
    # the same model, data and seed: RoIAlign computed in parallel changes no loss
    assert mmcv['runs'][0]['losses'] == parallel['runs'][0]['losses']
    assert parallel['max_abs_loss_diff_vs_mmcv'] == 0.0
    for res in (mmcv, parallel):
        assert res['s_per_step'] > 0 and 0 < res['cores'] <= results['torch_threads'] + 1
        assert res['profile']['top'] and 0 < res['profile']['roi_share'] < 1
    assert 'roi_align' in (out / 'profile_parallel.txt').read_text()
    assert (out / 'losses.png').stat().st_size > 10_000
    assert '| parallel |' in capsys.readouterr().out
