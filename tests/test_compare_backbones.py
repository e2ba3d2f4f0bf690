"""tools/compare_backbones.py: the --quick run writes Table I from the runs' logs."""
import ast
import csv
import re
import subprocess
import sys

import cv2
import pytest
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmpretrain.registry import MODELS

import projects.lung_nodule.registry  # noqa: F401  (registers our modules, checkpoint loader)

from tests.tiny_patches import write_tiny_patches

TOOL = 'tools/compare_backbones.py'
TABLE_I = ('LeNet5', 'AlexNet', 'VGG16', 'ResNet18', 'ResNet20', 'ResNet50',
           'ResNet101')
NODULE = 1  # index of `nodule` in classes=('normal', 'nodule')


def _run(repo_root, *args, timeout=900):
    return subprocess.run([sys.executable, TOOL, *args], cwd=repo_root,
                          capture_output=True, text=True, timeout=timeout)


def _test_metrics_from_log(log_file: str) -> dict:
    """The metrics of the last ``Epoch(test)`` line of an mmengine log."""
    with open(log_file) as f:
        lines = [line for line in f if 'Epoch(test)' in line]
    assert lines, f'no test result in {log_file}'
    line = lines[-1]
    metrics = {}
    for key in ('accuracy/top1', 'roc/auc'):
        metrics[key] = float(re.search(re.escape(key) + r': ([\d.]+)',
                                       line).group(1))
    for key in ('single-label/precision_classwise',
                'single-label/recall_classwise'):
        metrics[key] = ast.literal_eval(
            re.search(re.escape(key) + r': (\[[^\]]*\])', line).group(1))
    return metrics


def test_help_and_bad_data_root(repo_root, tmp_path):
    result = _run(repo_root, '--help', timeout=300)
    assert result.returncode == 0, result.stderr
    for option in ('--quick', '--networks', '--epochs', '--data-root'):
        assert option in result.stdout
    result = _run(repo_root, '--data-root', str(tmp_path / 'nowhere'),
                  timeout=300)
    assert result.returncode == 2
    assert 'missing patch folder' in result.stderr
    assert str(tmp_path / 'nowhere') in result.stderr


def test_epochs_stretch_the_cosine_schedule(repo_root, tmp_path):
    sys.path.insert(0, str(repo_root / 'tools'))
    try:
        import compare_backbones
    finally:
        sys.path.remove(str(repo_root / 'tools'))
    write_tiny_patches(tmp_path, per_class={'train': 1, 'val': 1, 'test': 1})
    args = compare_backbones.parse_args(
        ['--data-root', str(tmp_path), '--epochs', '3', '--batch-size', '5'])
    cfg = compare_backbones.build_config(
        str(repo_root / 'configs/patch_cls/resnet20_1xb64_lung-patch.py'),
        args, str(tmp_path / 'work'))
    assert cfg.train_cfg.max_epochs == 3
    assert cfg.param_scheduler.T_max == 3
    assert cfg.train_dataloader.batch_size == 5
    assert cfg.test_dataloader.dataset.data_root == str(tmp_path)


@pytest.mark.slow
def test_quick_run_writes_the_table_from_the_logs(repo_root, tmp_path):
    data_root = write_tiny_patches(
        tmp_path / 'patches', per_class={'train': 4, 'val': 2, 'test': 3})
    out_dir = tmp_path / 'table'
    result = _run(repo_root, '--quick', '--data-root', str(data_root),
                  '--work-dir', str(tmp_path / 'work'), '--out-dir',
                  str(out_dir), '--batch-size', '4', '--num-workers', '0')
    assert result.returncode == 0, result.stderr[-3000:]

    with open(out_dir / 'backbone_comparison.csv') as f:
        rows = list(csv.DictReader(f))
    assert tuple(row['network'] for row in rows) == TABLE_I
    markdown = (out_dir / 'backbone_comparison.md').read_text()
    chart = cv2.imread(str(out_dir / 'backbone_comparison.png'))
    assert chart is not None and chart.shape[0] > 100 and chart.shape[1] > 100

    init_default_scope('mmpretrain')
    for row in rows:
        # every figure is the one the Runner logged for this network's test
        logged = _test_metrics_from_log(row['log_file'])
        assert float(row['accuracy']) == pytest.approx(
            logged['accuracy/top1'] / 100, abs=1e-4)
        assert float(row['precision']) == pytest.approx(
            logged['single-label/precision_classwise'][NODULE] / 100,
            abs=1e-4)
        assert float(row['recall']) == pytest.approx(
            logged['single-label/recall_classwise'][NODULE] / 100, abs=1e-4)
        assert float(row['auc']) == pytest.approx(
            logged['roc/auc'] / 100, abs=1e-4)
        assert int(row['epochs']) == 1
        assert int(row['train_samples']) == 8
        assert int(row['test_samples']) == 6
        assert float(row['train_time_s']) > 0
        assert f"| {row['network']} | {float(row['accuracy']):.4f} |" in markdown
        # parameters: those of the model the config builds
        assert row['config'].startswith('configs/patch_cls/')
        cfg = Config.fromfile(str(repo_root / row['config']))
        model = MODELS.build(cfg.model)
        assert int(row['params']) == sum(p.numel() for p in model.parameters())
    params = {row['network']: int(row['params']) for row in rows}
    assert params['ResNet20'] == 271_954
    assert params['LeNet5'] < params['ResNet20'] < params['ResNet18'] \
        < params['ResNet50'] < params['ResNet101']
    assert float(next(r for r in rows if r['network'] == 'ResNet101')
                 ['paper_accuracy']) == pytest.approx(0.965945)
