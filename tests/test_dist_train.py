"""tools/dist_train.sh with 2 gloo processes on the CPU through the three stages.

Built with every stage trainable and DDP's find_unused_parameters=True, the ranks
all-reduce the gradients of the parameters unfrozen last, so every parameter is
identical on both ranks at the end, while those parameters did move.
Then tools/dist_test.sh evaluates the checkpoint on 2 processes.
"""
import json
import os
import socket
import subprocess
import sys

import pytest
import torch

from tests.test_staged_unfreeze_hook import expected_trainable, tiny_staged_cfg


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def _run_script(args, cwd, env) -> str:
    proc = subprocess.run(['bash', *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return proc.stdout + proc.stderr


@pytest.mark.slow
def test_dist_train_two_gloo_ranks_stay_identical(repo_root, tiny_coco_root, tmp_path):
    dump_dir = tmp_path / 'dump'
    dump_dir.mkdir()
    # 2 train images on 2 ranks, batch 1: one iteration per epoch; epochs 0 | 1 | 2
    cfg = tiny_staged_cfg(
        repo_root, tiny_coco_root,
        'optim_wrapper.optimizer.lr=0.01', 'train_cfg.max_epochs=3',
        'custom_hooks.0.stages.1.begin=1', 'custom_hooks.0.stages.2.begin=2')
    cfg.custom_imports.imports.append('tests.rank_params_dump')
    cfg.custom_hooks.append(dict(type='RankParamsDumpHook', out_dir=str(dump_dir)))
    cfg_file = tmp_path / 'staged_tiny.py'
    cfg.dump(str(cfg_file))

    env = dict(os.environ, PYTHON=sys.executable, PORT=str(_free_port()), OMP_NUM_THREADS='1')
    work_dir = tmp_path / 'work'
    log = _run_script(['tools/dist_train.sh', str(cfg_file), '2', '--work-dir', str(work_dir)],
                      repo_root, env)
    assert "stage 3/3 'all'" in log

    init = [torch.load(dump_dir / f'rank{r}_init.pth') for r in (0, 1)]
    final = [torch.load(dump_dir / f'rank{r}_final.pth') for r in (0, 1)]
    names = list(final[0])
    different = [n for n in names if not torch.equal(final[0][n], final[1][n])]
    assert not different, f'{len(different)} parameters differ between ranks: {different[:5]}'
    assert all(torch.equal(init[0][n], init[1][n]) for n in names)

    # unfrozen only in the last stage: stem and layer1 (trained one step there)
    last = expected_trainable(names, 'all') - expected_trainable(names, '3+')
    assert last and all(n.startswith(('backbone.conv1', 'backbone.bn1', 'backbone.layer1'))
                        for n in last)
    # every weight moved; a bias may have had an exactly-zero gradient in the one step
    # (zero_init_residual: a block's bn2.weight starts at 0, so its bn1 gets no gradient)
    unchanged = [n for n in last if torch.equal(init[0][n], final[0][n])]
    assert not [n for n in unchanged if not n.endswith('.bias')], unchanged[:5]
    assert len(unchanged) < len(last) / 4, f'unfrozen last but never updated: {unchanged}'

    # the checkpoint evaluates on 2 processes as well
    env['PORT'] = str(_free_port())
    test_dir = tmp_path / 'test'
    _run_script(['tools/dist_test.sh', str(cfg_file), str(work_dir / 'epoch_3.pth'), '2',
                 '--eval', 'segm', '--work-dir', str(test_dir)], repo_root, env)
    metrics = json.loads((test_dir / 'test_metrics.json').read_text())
    assert {'coco/segm_mAP', 'coco/segm_mAP_50'} <= set(metrics)
