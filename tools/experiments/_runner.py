"""Runner shared by the multi-seed experiments (paper_claims.py, lung_mask_modes.py).

An experiment is a few *arms* (a detector config, its lung-mask mode, whether its
backbone starts from the patch classifier) times a few seeds, all on the demo's data and
model size. It reuses ``tools/run_demo.py`` (its step runner, its ``--cfg-options`` of the
demo configs), so each run is the real tools a user would run:

``OUT/shared/``            made once, shared by every run (run_demo.py's layout):
                           ``luna16/`` synthetic scans, ``luna16_coco_<mode>/`` the COCO
                           export per lung-mask mode needed, ``luna16_patches/``, and
                           ``patch_cls/`` the ResNet-18 patch classifier
``OUT/runs/<arm>/seed<k>/`` one run: ``train/`` (tools/train.py, validation every
                           iters/--val-points steps, ``vis_data/scalars.json``),
                           ``test/`` (tools/test.py --eval segm --out predictions.pkl),
                           ``infer/`` + ``eval/`` (tools/infer_scan.py, eval_luna16.py),
                           and last ``metrics.json``, the figures of the tables

Resumable: a finished step (its outputs and its record in the folder's ``steps.json``)
is skipped, and a run whose ``metrics.json`` exists is not touched; a killed run goes on
where it stopped (a killed training restarts that training). After every run the
results section is rewritten, so a partial table exists while the experiment goes on.
"""
from __future__ import annotations

import argparse
import datetime
import json
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

REPO_ROOT = Path(__file__).resolve().parents[2]
for _path in (REPO_ROOT, REPO_ROOT / 'tools'):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

import run_demo  # noqa: E402  (tools/run_demo.py: Step, Runner, the demo's cfg-options)
from projects.lung_nodule.ct.slice_image import DEFAULT_LUNG_MASK_MODE  # noqa: E402
from projects.lung_nodule.experiments.curves import plot_val_curves  # noqa: E402
from projects.lung_nodule.experiments.table import (load_runs, per_run_table,  # noqa: E402
                                                    replace_section, summary_table)

#: ``(key in metrics.json figures, label)`` in table order.
FIGURES = (('segm_ap50', 'COCO segm AP50'), ('segm_ap', 'COCO segm AP'),
           ('matterport_map50', 'Matterport mAP@0.5'), ('dice', 'nodule Dice'),
           ('cpm', 'CPM (whole scans)'), ('fp_per_slice', 'FP per test slice'))
#: figure key -> key in tools/test.py's test_metrics.json
TEST_METRIC_KEYS = {'segm_ap50': 'coco/segm_mAP_50', 'segm_ap': 'coco/segm_mAP',
                    'matterport_map50': 'matterport/mask_mAP_50', 'dice': 'nodule/dice'}
#: validation scalars plotted (mmengine writes them at each validation of a training)
CURVE_KEYS = (('coco/segm_mAP_50', 'val COCO segm AP50'),
              ('matterport/mask_mAP_50', 'val Matterport mAP@0.5'))
#: detections from this score count as shown to a reader (tools/infer_scan.py's default)
FP_SCORE_THR = 0.5


@dataclass(frozen=True)
class Arm:
    """One arm: what differs from the others."""

    name: str
    description: str
    config: str = run_demo.DET_CONFIG
    lung_mask_mode: str = DEFAULT_LUNG_MASK_MODE
    #: the backbone starts from the patch classifier (its checkpoint is passed)
    patch_backbone: bool = True
    #: the config defines its own stages (the demo's stage begins are not passed)
    own_stages: bool = False


def add_arguments(parser: argparse.ArgumentParser, seeds: int, iters: int,
                  marker: str) -> None:
    """Options common to the experiments; each help says its cost on 2 CPU cores."""
    parser.add_argument('--out', type=Path, default=Path(f'work_dirs/{marker}'),
                        help='experiment folder (shared data + one folder per run)')
    parser.add_argument('--seeds', type=int, default=seeds,
                        help='training seeds per arm (0..N-1); each run is one training')
    parser.add_argument('--iters', type=int, default=iters,
                        help='Mask R-CNN steps per run (the demo trains 900: ~10.5 min of 2 idle cores)')
    parser.add_argument('--val-points', type=int, default=6,
                        help='validations per training (the curves; each ~10-20 s)')
    parser.add_argument('--num-scans', type=int, default=40, help='synthetic scans')
    parser.add_argument('--shape', type=int, nargs=3, default=(48, 256, 256),
                        metavar=('Z', 'Y', 'X'), help='voxels per synthetic scan')
    parser.add_argument('--split', type=float, nargs=3, default=(0.55, 0.1, 0.35),
                        metavar=('TRAIN', 'VAL', 'TEST'), help='fractions of scans')
    parser.add_argument('--patch-counts', type=int, nargs=3, default=(3000, 500, 1000),
                        metavar=('TRAIN', 'VAL', 'TEST'), help='patches per split')
    parser.add_argument('--patch-epochs', type=int, default=2,
                        help='patch classifier epochs (~75 s each), trained once')
    parser.add_argument('--data-seed', type=int, default=0, help='seed of data and split')
    parser.add_argument('--workers', type=int, default=2, help='processes of the data steps')
    parser.add_argument('--no-cpm', action='store_true',
                        help='skip whole-scan inference + FROC (~1-2 min per run); CPM is '
                             'then recorded as not measured')
    parser.add_argument('--results', type=Path, default=REPO_ROOT / 'benchmarks/RESULTS.md',
                        help='markdown file whose section of this experiment is (re)written')
    parser.add_argument('--note', default='',
                        help='a line put above the table (e.g. why a run is shortened)')
    parser.add_argument('--toy', action='store_true',
                        help='toy size for tests (about a minute per run): ' + ', '.join(
                            f'--{k.replace("_", "-")} {v}' for k, v in run_demo.TOY.items()))


def finish_arguments(args: argparse.Namespace) -> argparse.Namespace:
    """Apply ``--toy`` (run_demo's toy sizes) and check the sizes."""
    if args.toy:
        for key, value in run_demo.TOY.items():
            setattr(args, key, value)
        args.val_points = 2
    if args.seeds < 1 or args.iters < 4 or args.val_points < 1:
        raise SystemExit('need --seeds >= 1, --iters >= 4 and --val-points >= 1')
    return args


class Experiment:
    """Shared data, the runs of every arm and seed, and the results section."""

    def __init__(self, args: argparse.Namespace, arms: Sequence[Arm], marker: str,
                 title: str, argv: Sequence[str]) -> None:
        self.args, self.arms, self.marker, self.title = args, list(arms), marker, title
        self.argv = list(argv)
        self.out = args.out.resolve()
        self.shared = self.out / 'shared'
        self.luna = self.shared / 'luna16'
        self.patches = self.shared / 'luna16_patches'
        self.patch_ckpt = self.shared / 'patch_cls' / f'epoch_{args.patch_epochs}.pth'
        self.started = datetime.datetime.now(datetime.timezone.utc)

    def coco_root(self, mode: str) -> Path:
        return self.shared / f'luna16_coco_{mode}'

    @property
    def splits_csv(self) -> Path:
        # every mode's export uses the same split (same scans, same --split-seed)
        return self.coco_root(self.arms[0].lung_mask_mode) / 'splits.csv'

    def run_dir(self, arm: Arm, seed: int) -> Path:
        return self.out / 'runs' / arm.name / f'seed{seed}'

    def arm_config_path(self, arm: Arm) -> Path:
        """Where :meth:`arm_config` keeps the arm's frozen config (nothing is written)."""
        return self.out / 'configs' / f'{arm.name}.py'

    def arm_config(self, arm: Arm) -> Path:
        """The arm's config as it was when the experiment first started (``OUT/configs/``).

        Every run of the experiment, resumed ones included, trains from this frozen copy
        (mmengine's merged dump), so an edit of the repository's configs while the
        experiment runs (they are tuned) cannot make its arms or seeds differ. Frozen on
        the first call.
        """
        path = self.arm_config_path(arm)
        if not path.exists():
            from mmengine.config import Config
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f'.{path.stem}.tmp.py')
            Config.fromfile(str(REPO_ROOT / arm.config)).dump(str(tmp))
            tmp.replace(path)
        return path

    # -- shared data ---------------------------------------------------------------------
    def shared_steps(self) -> list[run_demo.Step]:
        """Synthetic scans, the COCO export of each mode, patches, the patch classifier.

        The exports of the modes after the first come last: run_demo's Runner reruns every
        step after one that ran, and the patches only depend on the first export's split.
        """
        a = self.args
        py = run_demo._py
        annotations = self.luna / 'annotations.csv'
        steps = [run_demo.Step('synthetic', 'synthetic LUNA16 scans', py(
            'data_prep/make_synthetic_luna16.py', '--out', self.luna, '--num-scans',
            a.num_scans, '--seed', a.data_seed, '--shape', *a.shape, '--workers', a.workers),
            [annotations])]
        exports = [run_demo.Step(f'coco_{mode}', f'LUNA16 -> COCO slices ({mode})', py(
            'data_prep/luna16_to_coco.py', '--luna-root', self.luna, '--annotations',
            annotations, '--out', self.coco_root(mode), '--split', *a.split, '--split-seed',
            a.data_seed, '--lung-mask-mode', mode, '--workers', a.workers),
            [self.coco_root(mode) / 'annotations/instances_test.json',
             self.coco_root(mode) / 'splits.csv'])
            for mode in dict.fromkeys(arm.lung_mask_mode for arm in self.arms)]
        steps.append(exports[0])
        if any(arm.patch_backbone for arm in self.arms):
            patch_opts = run_demo.patch_cfg_options(self.patches, a.patch_epochs, a.data_seed)
            steps += [
                run_demo.Step('patches', 'LUNA16 -> 50x50 patches (same split)', py(
                    'data_prep/luna16_to_patches.py', '--luna-root', self.luna,
                    '--annotations', annotations, '--out', self.patches, '--splits',
                    self.splits_csv, '--counts', *a.patch_counts, '--neg-slices', 32,
                    '--workers', a.workers), [self.patches / 'manifest.csv']),
                run_demo.Step('patch_train', 'patch classifier: train ResNet-18', py(
                    'tools/train.py', run_demo.PATCH_CONFIG, '--work-dir',
                    self.shared / 'patch_cls', '--cfg-options', *patch_opts),
                    [self.patch_ckpt])]
        return steps + exports[1:]

    def make_shared(self) -> None:
        """Run (or skip, when done) the shared steps, in ``OUT/shared``."""
        run_demo.Plan(run_demo.Runner(self.shared, restart=False), self.shared_steps(),
                      workers=1, label='shared').execute()

    # -- one run -------------------------------------------------------------------------
    def cfg_options(self, arm: Arm, seed: int) -> list[str]:
        """The demo's options for this run, less what the arm's config sets itself."""
        a = self.args
        opts = run_demo.detector_cfg_options(self.coco_root(arm.lung_mask_mode),
                                             self.patch_ckpt, a.iters, max(a.shape[1:]), seed)
        if not arm.patch_backbone:
            opts = [o for o in opts if not o.startswith('model.backbone.init_cfg.')]
        if arm.own_stages:
            opts = [o for o in opts if not o.startswith('custom_hooks.0.stages.')]
        mode = arm.lung_mask_mode
        opts += [f'lung_mask_mode={mode}'] + [
            f'{run_demo.detector_dataset_key(split)}.lung_mask_mode={mode}'
            for split in ('train', 'val', 'test')]
        # validation rows of scalars.json stamped with the iteration, not the epoch (0)
        return opts + [f'train_cfg.val_interval={max(1, a.iters // a.val_points)}',
                       'default_hooks.logger.log_metric_by_epoch=False']

    def run_one(self, arm: Arm, seed: int) -> Path:
        """Train, test, infer and evaluate one run; write its ``metrics.json`` last."""
        from projects.lung_nodule.evaluation.false_positives import count_false_positives

        a = self.args
        run_dir = self.run_dir(arm, seed)
        metrics_file = run_dir / 'metrics.json'
        if metrics_file.exists():
            done_iters = json.loads(metrics_file.read_text()).get('iters')
            if done_iters != a.iters:
                raise SystemExit(f'{metrics_file}: a run of {done_iters} steps, not --iters '
                                 f'{a.iters}; give runs of another length another --out')
            print(f'=== {arm.name} seed {seed}: {metrics_file} exists, skipped', flush=True)
            return run_dir
        run_dir.mkdir(parents=True, exist_ok=True)
        runner = run_demo.Runner(run_dir, restart=False)
        py = run_demo._py
        train, test, infer, evald = (run_dir / n for n in ('train', 'test', 'infer', 'eval'))
        ckpt = train / f'iter_{a.iters}.pth'
        config = self.arm_config(arm)
        config_used = train / config.name
        predictions = test / 'predictions.pkl'
        coco = self.coco_root(arm.lung_mask_mode)
        steps = [
            run_demo.Step('train', f'train {arm.name} seed {seed}', py(
                'tools/train.py', config, '--work-dir', train, '--cfg-options',
                *self.cfg_options(arm, seed)), [ckpt, config_used]),
            run_demo.Step('test', f'test {arm.name} seed {seed}', py(
                'tools/test.py', config_used, ckpt, '--eval', 'segm', '--work-dir', test,
                '--out', predictions), [test / 'test_metrics.json', predictions])]
        missing: dict[str, str] = {}
        infer_tool, eval_tool = REPO_ROOT / 'tools/infer_scan.py', REPO_ROOT / 'tools/eval_luna16.py'
        if a.no_cpm:
            missing['cpm'] = 'not run (--no-cpm)'
        elif not (infer_tool.exists() and eval_tool.exists()):
            missing['cpm'] = 'tools/infer_scan.py or tools/eval_luna16.py not in this checkout'
        else:
            steps += [
                run_demo.Step('infer', f'whole-scan inference {arm.name} seed {seed}', py(
                    'tools/infer_scan.py', config_used, ckpt, self.luna, '--splits',
                    self.splits_csv, '--split', 'test', '--out', infer, '--no-progress'),
                    [infer / 'candidates.csv']),
                run_demo.Step('eval', f'FROC / CPM {arm.name} seed {seed}', py(
                    'tools/eval_luna16.py', '--annotations', self.luna / 'annotations.csv',
                    '--candidates', infer / 'candidates.csv', '--splits', self.splits_csv,
                    '--split', 'test', '--nodules-dir', infer, '--excluded',
                    self.luna / 'annotations_excluded.csv', '--out', evald),
                    [evald / 'metrics.json'])]
        run_demo.Plan(runner, steps, workers=1, label=f'{arm.name} seed {seed}').execute()

        test_metrics = json.loads((test / 'test_metrics.json').read_text())
        figures = {fig: test_metrics.get(key) for fig, key in TEST_METRIC_KEYS.items()}
        for fig, key in TEST_METRIC_KEYS.items():
            if figures[fig] is None:
                missing[fig] = f'no "{key}" in {test / "test_metrics.json"}'
        figures['cpm'] = None
        if 'cpm' not in missing:
            figures['cpm'] = json.loads((evald / 'metrics.json').read_text()).get('cpm')
        counts = count_false_positives(coco / 'annotations/instances_test.json', predictions,
                                       score_thr=FP_SCORE_THR)
        figures['fp_per_slice'] = counts.fp_per_slice
        scalars = sorted(train.glob('*/vis_data/scalars.json'))
        record = {
            'arm': arm.name, 'seed': seed, 'run_dir': str(run_dir), 'iters': a.iters,
            'config': arm.config, 'config_frozen': str(config), 'lung_mask_mode': arm.lung_mask_mode,
            'patch_backbone': arm.patch_backbone, 'figures': figures, 'missing': missing,
            'false_positives': counts.as_dict(),
            'sources': {'test_metrics': str(test / 'test_metrics.json'),
                        'predictions': str(predictions),
                        'froc_metrics': None if 'cpm' in missing else str(evald / 'metrics.json'),
                        'scalars': str(scalars[-1]) if scalars else None},
        }
        tmp = metrics_file.with_suffix('.json.tmp')
        tmp.write_text(json.dumps(record, indent=2))
        tmp.replace(metrics_file)
        print(f'=== {arm.name} seed {seed}: ' + ', '.join(
            f'{k} {v:.4f}' for k, v in figures.items() if v is not None), flush=True)
        return run_dir

    # -- results -------------------------------------------------------------------------
    def planned(self) -> list[tuple[Arm, int]]:
        return [(arm, seed) for seed in range(self.args.seeds) for arm in self.arms]

    def write_results(self) -> Path:
        """Rewrite this experiment's section of ``--results`` from the runs' metrics files."""
        a = self.args
        plan = self.planned()
        runs = load_runs([self.run_dir(arm, seed) for arm, seed in plan])
        results = a.results.resolve()
        png = results.parent / 'figures' / f'{self.marker}_val_curves.png'
        curves = {arm.name: [Path(r['sources']['scalars']) for r in runs
                             if r['arm'] == arm.name and r['sources'].get('scalars')]
                  for arm in self.arms}
        curves = {k: v for k, v in curves.items() if v}
        if curves:
            plot_val_curves(curves, CURVE_KEYS, png, f'{self.title}: validation split during '
                            f'training, {a.iters} steps (synthetic data)')
        done = len(runs)
        status = ('complete' if done == len(plan) else
                  f'**PARTIAL: {done} of {len(plan)} planned runs finished** (the others were '
                  'still running or not started when this was written)')
        command = ' '.join(shlex.quote(c) for c in
                           ['python', str(Path(sys.argv[0]).resolve().relative_to(REPO_ROOT)
                                          if Path(sys.argv[0]).resolve().is_relative_to(REPO_ROOT)
                                          else sys.argv[0]), *self.argv])
        shared = ''
        steps_json = self.shared / 'steps.json'
        if steps_json.exists():
            shared = '\n'.join(f"- {v['title']}: `{v['command'].replace(sys.executable, 'python')}`"
                               for v in json.loads(steps_json.read_text()).values())
        arms = '\n'.join(f'- `{arm.name}`: {arm.description} (`{arm.config}` as frozen in '
                         f'`{self.arm_config_path(arm)}`, lung mask mode `{arm.lung_mask_mode}`)'
                         for arm in self.arms)
        body = '\n'.join([
            f'### {self.title}', '',
            f'Status: {status}. Written {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} '
            f'UTC by `{command}` (started {self.started:%H:%M} UTC).', '',
            *([a.note, ''] if a.note else []),
            f'Machine: {run_demo._machine()}.', '',
            f'Plan: {len(self.arms)} arms x {a.seeds} seeds (training seeds 0..{a.seeds - 1}), '
            f'{a.iters} Mask R-CNN steps each, validation every {max(1, a.iters // a.val_points)} '
            f'steps; data seed {a.data_seed}, {a.num_scans} synthetic scans of '
            f'{"x".join(map(str, a.shape))} voxels, split {a.split}. Experiment folder '
            f'`{self.out}`.', '', arms, '',
            'Shared data and patch classifier (made once):', shared or '- (not made yet)', '',
            'Test split, each cell **mean** ± sample SD (each seed):', '',
            summary_table(runs, [arm.name for arm in self.arms], FIGURES), '',
            'Each run (figures from its `metrics.json`, made from `test/test_metrics.json` of '
            '`tools/test.py --eval segm`, `eval/metrics.json` of `tools/eval_luna16.py`, and '
            '`test/predictions.pkl`):', '',
            per_run_table(runs, FIGURES), '',
            f'FP per test slice: detections with score >= {FP_SCORE_THR} (the whole-scan '
            'default) not matched one-to-one, by score, to a ground-truth nodule mask of their '
            'slice at mask IoU >= 0.5, over the test slices of the COCO export '
            '(`projects/lung_nodule/evaluation/false_positives.py` on `tools/test.py --out '
            'predictions.pkl`). Test slices are the 3 slices per nodule, so this is the false '
            'positives beside nodules, not per scan.', '',
            *([f'![validation curves]({png.relative_to(results.parent)})', '']
              if curves and png.is_relative_to(results.parent) else []),
        ])
        replace_section(results, self.marker, body)
        copy = self.out / 'RESULTS_SECTION.md'
        copy.write_text(body + '\n')
        print(f'results: {results} (section "{self.marker}"), {done}/{len(plan)} runs', flush=True)
        return results

    def run_all(self) -> None:
        self.make_shared()
        for arm in self.arms:  # frozen before any run: all arms from the same sources
            self.arm_config(arm)
        for arm, seed in self.planned():
            self.run_one(arm, seed)
            self.write_results()
        self.write_results()
