"""The demo's derived config is the staged config, offline, shortened, on native-size slices."""
import sys

from mmengine.config import Config


def test_demo_config_is_offline_staged_and_native_size(repo_root, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(repo_root / 'tools'))
    sys.modules.pop('run_demo', None)
    import run_demo

    out = run_demo.write_demo_config(tmp_path / 'coco', 128, (1, 2, 3), tmp_path / 'demo.py')
    cfg = Config.fromfile(str(out))
    assert cfg.load_from is None and cfg.model.backbone.init_cfg is None
    assert cfg.train_cfg.max_epochs == 6
    hook = next(h for h in cfg.custom_hooks if h.type == 'StagedUnfreezeHook')
    assert [s.begin for s in hook.stages] == [0, 1, 3]
    assert [s.name for s in hook.stages] == ['heads', '3+', 'all']
    for split in ('train', 'val', 'test'):
        dataset = cfg[f'{split}_dataloader'].dataset
        assert dataset.data_root == f'{tmp_path / "coco"}/'
        assert [t.scale for t in dataset.pipeline if t.type == 'Resize'] == [(128, 128)]
    assert cfg.test_evaluator[0].type == 'CocoMetric'
    assert cfg.test_evaluator[0].ann_file == f'{tmp_path / "coco"}/annotations/instances_test.json'
    assert cfg.val_evaluator[0].ann_file == f'{tmp_path / "coco"}/annotations/instances_val.json'
