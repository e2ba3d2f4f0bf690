"""The main job (tools/run_demo.py): its configs, the backbone hand-over, and a toy run."""
import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from mmengine.config import Config, DictAction
from mmengine.registry import DefaultScope
from mmengine.runner.checkpoint import _load_checkpoint_with_prefix

from mmdet.registry import MODELS as DET_MODELS
from mmdet.utils import register_all_modules as register_mmdet


def _run_demo_module(repo_root, monkeypatch):
    monkeypatch.syspath_prepend(str(repo_root / 'tools'))
    sys.modules.pop('run_demo', None)
    import run_demo
    return run_demo


def test_detector_options_point_the_demo_config_at_the_run(repo_root, tmp_path, monkeypatch):
    run_demo = _run_demo_module(repo_root, monkeypatch)
    cfg = Config.fromfile(str(repo_root / run_demo.DET_CONFIG))
    assert cfg.model.backbone.depth == 18 and cfg.model.neck.in_channels == [64, 128, 256, 512]
    assert cfg.load_from is None
    assert cfg.model.backbone.init_cfg.type == 'Pretrained'
    assert cfg.model.backbone.init_cfg.prefix == 'backbone.'

    parser = argparse.ArgumentParser()
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    opts = run_demo.detector_cfg_options(tmp_path / 'coco', tmp_path / 'cls.pth', iters=200,
                                         image_size=320, seed=7)
    cfg.merge_from_dict(parser.parse_args(['--cfg-options', *opts]).cfg_options)
    assert cfg.model.backbone.init_cfg.checkpoint == str(tmp_path / 'cls.pth')
    assert cfg.train_cfg.max_iters == 200 and cfg.randomness.seed == 7
    hook = next(h for h in cfg.custom_hooks if h.type == 'StagedUnfreezeHook')
    assert [s.name for s in hook.stages] == ['heads', '3+', 'all']
    assert [s.begin for s in hook.stages] == [0, 50, 150] and not hook.by_epoch
    assert cfg.param_scheduler[1].milestones == [170]
    assert cfg.default_hooks.checkpoint.interval == 200
    for split in ('train', 'val', 'test'):
        dataset = cfg[f'{split}_dataloader'].dataset
        if split == 'train':  # the LUNA16 slices inside the CopyPaste wrapper
            assert dataset.type == 'MultiImageMixDataset'
            dataset = dataset.dataset
        assert dataset.data_root == f'{tmp_path / "coco"}/'
        assert [t.scale for t in dataset.pipeline if t.type == 'Resize'] == [(320, 320)]
    for split in ('val', 'test'):
        evaluator = cfg[f'{split}_evaluator'][0]
        assert evaluator.type == 'CocoMetric'
        assert evaluator.ann_file == f'{tmp_path / "coco"}/annotations/instances_{split}.json'


def test_the_demo_trains_the_schedule_of_its_config(repo_root, monkeypatch):
    """tools/train.py on the demo config by hand trains what the demo trains."""
    run_demo = _run_demo_module(repo_root, monkeypatch)
    cfg = Config.fromfile(str(repo_root / run_demo.DET_CONFIG))
    iters = run_demo.parse_args([]).iters
    assert cfg.train_cfg.max_iters == iters
    hook = next(h for h in cfg.custom_hooks if h.type == 'StagedUnfreezeHook')
    assert [s.begin for s in hook.stages] == [
        run_demo.stage_begin(fraction, iters) for _, fraction in run_demo.STAGE_FRACTIONS]
    assert cfg.param_scheduler[1].milestones == [int(iters * run_demo.LR_STEP_FRACTION)]
    patch_cfg = Config.fromfile(str(repo_root / run_demo.PATCH_CONFIG))
    epochs = run_demo.parse_args([]).patch_epochs
    assert patch_cfg.train_cfg.max_epochs == patch_cfg.param_scheduler.T_max == epochs
    assert cfg.patch_classifier.endswith(f'/epoch_{epochs}.pth')


def test_patch_classifier_backbone_loads_into_the_demo_detector(repo_root, tmp_path):
    """Every tensor of the detector's ResNet-18 comes from the classifier, none left over."""
    from mmpretrain.models import ImageClassifier  # noqa: F401  (registers mmpretrain)
    from mmpretrain.registry import MODELS as CLS_MODELS

    cls_cfg = Config.fromfile(str(repo_root / 'configs/patch_cls/resnet18_1xb64_lung-patch_demo.py'))
    # in mmpretrain's scope: earlier tests may leave mmdet as the default scope
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        classifier = CLS_MODELS.build(cls_cfg.model)
    torch.save({'state_dict': classifier.state_dict()}, tmp_path / 'cls.pth')

    register_mmdet()
    det_cfg = Config.fromfile(str(repo_root / 'configs/lung/demo/mask_rcnn_r18_fpn_staged_demo.py'))
    backbone_cfg = det_cfg.model.backbone.copy()
    backbone_cfg.init_cfg = None
    backbone = DET_MODELS.build(backbone_cfg)
    loaded = _load_checkpoint_with_prefix('backbone.', str(tmp_path / 'cls.pth'), 'cpu')
    result = backbone.load_state_dict(loaded, strict=False)
    assert not result.missing_keys and not result.unexpected_keys
    for name, tensor in backbone.state_dict().items():
        assert torch.equal(tensor, classifier.state_dict()[f'backbone.{name}']), name


def test_inference_runs_in_shards_from_two_workers(repo_root, monkeypatch):
    run_demo = _run_demo_module(repo_root, monkeypatch)
    one = run_demo.infer_command(1, 'cfg.py', 'w.pth', 'luna', '--out', 'o')
    assert one == [sys.executable, 'tools/infer_scan.py', 'cfg.py', 'w.pth', 'luna', '--out', 'o']
    two = run_demo.infer_command(2, 'cfg.py', 'w.pth', 'luna', '--out', 'o')
    assert two == ['env', f'PYTHON={sys.executable}', 'bash', 'tools/dist_infer.sh', 'cfg.py',
                   'w.pth', '2', 'luna', '--out', 'o']


@pytest.mark.slow
def test_toy_demo_writes_every_artefact_of_the_report(repo_root, tmp_path):
    out = tmp_path / 'demo'
    cmd = [sys.executable, 'tools/run_demo.py', '--toy', '--out', str(out)]
    proc = subprocess.run(cmd, cwd=repo_root, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    report = (out / 'REPORT.md').read_text()
    assert 'synthetic data' in report
    steps = json.loads((out / 'steps.json').read_text())
    assert steps['det_train']['status'] == 'ran' and steps['det_train']['seconds'] > 0
    for key in ('synthetic', 'coco', 'patches', 'patch_train', 'patch_test', 'det_test'):
        assert steps[key]['status'] == 'ran', key
        assert steps[key]['cpu_seconds'] is not None
    # every figure the report links exists, and the figures it must have are linked
    links = re.findall(r'!\[[^\]]*\]\(([^)]+)\)', report)
    for link in links:
        assert (out / link).is_file(), link
    linked = {Path(link).name for link in links}
    assert 'loss_curve.png' in linked
    assert any(name.startswith('overlay_') for name in linked)
    tools_present = (repo_root / 'tools/infer_scan.py').exists()
    if tools_present:
        assert {'froc.png', 'bland_altman.png'} <= linked
        assert steps['eval']['status'] == 'ran'
        assert 'CPM' in report
        # the default 2 workers: after training, two lanes side by side, one process
        # each (the test-scan inference beside the false-positive reduction's)
        assert 'tools/infer_scan.py' in steps['infer']['command']

        def overlap(a, b):
            return (min(steps[a]['started'] + steps[a]['seconds'],
                        steps[b]['started'] + steps[b]['seconds'])
                    - max(steps[a]['started'], steps[b]['started']))
        assert overlap('det_train', 'patch_test') > 0 and overlap('det_test', 'infer_train') > 0
        assert (out / 'logs/infer.log').is_file() and (out / 'logs/fpr_train.log').is_file()
        # the report's steps table names the steps each ran beside (by number)
        row = next(line for line in report.splitlines() if line.startswith('| 7 | Mask R-CNN'))
        assert '9' in row.split('|')[5].strip().split(', ')  # 7 det_test beside 9 infer_train
        assert json.loads((out / 'eval/metrics.json').read_text())['data_label'] == \
            'synthetic data'
        # false-positive reduction: candidates of a few training scans, their views,
        # the classifier, the rescored test candidates, and the FROC before and after
        for key in ('infer_train', 'fpr_views', 'fpr_train', 'rescore', 'eval_detector'):
            assert steps[key]['status'] == 'ran', key
        train_scans = [line for line in (out / 'luna16_coco/splits.csv').read_text().splitlines()
                       if line.endswith(',train')]
        fpr_scans = (out / 'fp_reduction_scans.csv').read_text().splitlines()[1:]
        assert len(fpr_scans) == min(6, len(train_scans))  # --fpr-scans 6
        views = json.loads((out / 'fp_views/summary.json').read_text())['counts']
        assert views['views_background'] > 0  # vessels of every training scan
        assert len(list((out / 'fp_views/train/normal').glob('*.png'))) == views['views_normal']
        header = (out / 'infer/candidates_rescored.csv').read_text().splitlines()[0]
        assert header.endswith('detector_probability,classifier_probability')
        assert 'FROC of the detector alone' in report and 'detector alone:' in report
        assert (out / 'eval_detector/metrics.json').is_file()
        froc_rows = [line for line in report.splitlines()
                     if line.startswith(('| detector alone |', '| after false-positive'))]
        assert len(froc_rows) == 2 and all(row.count('|') == 10 for row in froc_rows)
    else:
        assert steps['infer']['status'] == 'missing tool'
        assert '## Not run' in report
    metrics = json.loads((out / 'mask_rcnn_test/test_metrics.json').read_text())
    assert 'coco/segm_mAP_50' in metrics
    # the bound of AP50: test-slice masks found at any score, by area, all masks counted
    section = report.split('## Where the detector misses (test slices)', 1)[1]
    rows = [line for line in section.split('\n## ', 1)[0].splitlines()
            if line.startswith('| ') and not line.startswith('| cross-section')]
    test_masks = len(json.loads((out / 'luna16_coco/annotations/instances_test.json')
                                .read_text())['annotations'])
    assert len(rows) == 5 and sum(int(row.split('|')[2]) for row in rows) == test_masks
    # and the reference: the synthetic labels' true footprints on the same slices
    reference = re.search(r'the true footprints: AP50 ([0-9.]+)', report)
    assert reference and 0 < float(reference.group(1)) <= 1
    assert 'footprints, each a detection of score 1' in section
    patch = json.loads((out / 'patch_cls_test/test_metrics.json').read_text())
    assert 0 <= patch['accuracy/top1'] <= 100
    assert f"{patch['accuracy/top1']:.1f}%" in report

    # resumable: a second run skips every finished step and writes the report again
    again = subprocess.run(cmd, cwd=repo_root, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    # ... and says when the run began, not when it was resumed (the toy takes > 1 minute)
    started = re.compile(r'^Started (.+ UTC)\.', re.M)
    assert started.search((out / 'REPORT.md').read_text()).group(1) == \
        started.search(report).group(1)
    assert again.stdout.count('outputs exist, skipped') == sum(
        1 for s in steps.values() if s['status'] == 'ran')
