"""The main job: the paper's whole method on data the project makes itself, in minutes on a CPU.

Each step is the real tool a user would run (a subprocess; its command is in the report):

1. ``data_prep/make_synthetic_luna16.py``  LUNA16-shaped scans, annotations, label volumes
   (skipped with ``--data-root``: a real LUNA16 download)
2. ``data_prep/luna16_to_coco.py``          3 slices per nodule -> COCO, split by scan
3. ``data_prep/luna16_to_patches.py``       50x50 nodule / normal patches, the same split
4. ``tools/train.py`` + ``tools/test.py``   ResNet-18 patch classifier (mmpretrain),
                                            ``configs/patch_cls/resnet18_1xb64_lung-patch_demo.py``
5. ``tools/train.py``                       Mask R-CNN R18-FPN whose backbone is that
                                            classifier's, fine-tuned heads -> 3+ -> all,
                                            ``configs/lung/demo/mask_rcnn_r18_fpn_staged_demo.py``
6. ``tools/test.py --eval segm``            COCO segm AP / AP50, Matterport mAP@0.5, Dice
7. ``tools/infer_scan.py``                  whole-scan inference on every test scan
8. false-positive reduction (beyond the paper): ``tools/infer_scan.py`` on 6 of the
   training scans -> ``data_prep/candidates_to_views.py`` (3-view images of its
   candidates, of the training nodules and of vessels on every training scan) ->
   ``tools/train.py`` ResNet-20 (``configs/fp_reduction/``) ->
   ``tools/rescore_candidates.py`` on the test candidates
9. ``tools/eval_luna16.py``                 FROC / CPM with intervals of the detector alone
                                            and after rescoring; diameter agreement
10. ``OUT/REPORT.md``                       commands, seconds (wall and CPU) per step,
                                            figures: loss curve, overlays, FROC, Bland-Altman

No network is needed (no weights are downloaded: the backbone comes from step 4).
Runs are resumable: a step whose outputs exist is skipped (``--restart`` redoes all).
A step whose tool is not in this checkout is skipped with a message, and the report
says so.

Side by side (``--workers 2``, the default): one process of this small detector keeps
about one core busy, so the patch classifier's test runs beside the detector's training,
and steps 6-7 run on one core beside step 8's inference, views and training on the
other (``Parallel``; their output goes to ``OUT/logs/``, their latest lines are printed
as they run). Measured with the defaults on 2 idle cores (benchmarks/RESULTS.md, "The
main job"): 9.9 min wall, 16.7 min of CPU time on the VM of 2026-12-01 (on an earlier,
1.5x slower VM the 2-epoch patch classifier's demo took 11.0 min side by side, 12.7 min
one step at a time); the issue's budget is 15 min.

Example::

    python tools/run_demo.py --out work_dirs/demo
    python tools/run_demo.py --out work_dirs/luna16 --data-root data/LUNA16 --image-size 512
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from projects.lung_nodule.demo.report import DemoRun, StepRecord, write_report  # noqa: E402

PATCH_CONFIG = 'configs/patch_cls/resnet18_1xb64_lung-patch_demo.py'
DET_CONFIG = 'configs/lung/demo/mask_rcnn_r18_fpn_staged_demo.py'
FPR_CONFIG = 'configs/fp_reduction/resnet20_1xb64_candidate-views.py'
#: Fractions of the staged schedule (heads | 3+ | all), the real config's 1:2:1.
STAGE_FRACTIONS = (('heads', 0.0), ('3+', 0.25), ('all', 0.75))
#: The learning rate drops x0.1 for the last 15% of the steps (as the demo config).
LR_STEP_FRACTION = 0.85

#: What --toy sets: every step runs, in about a minute of 2 CPU cores.
TOY = dict(num_scans=6, shape=(16, 256, 256), split=(0.5, 0.2, 0.3), patch_counts=(256, 64, 64),
           patch_epochs=1, iters=6, fpr_epochs=1)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line arguments; each help says what the option costs on 2 CPU cores."""
    parser = argparse.ArgumentParser(
        description='The paper\'s whole method (patch classifier -> its backbone in Mask '
                    'R-CNN -> staged fine-tune -> test, whole-scan inference, false-positive '
                    'reduction, FROC) on '
                    'synthetic LUNA16, ending in OUT/REPORT.md. Measured with the defaults: '
                    'about 10 min on 2 idle CPU cores (17 min of CPU time).',
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument('--out', type=Path, default=Path('work_dirs/demo'), help='output folder')
    parser.add_argument('--data-root', type=Path, default=None,
                        help='a real LUNA16 root (subset*/, annotations.csv, optional '
                             'annotations_excluded.csv): skips the synthetic step; cost grows '
                             'with its size (888 scans: hours for the data steps alone)')
    parser.add_argument('--num-scans', type=int, default=40,
                        help='synthetic scans, ~4 nodules each (~0.5 CPU s each to make, ~1 s '
                             'to convert; each test scan also costs ~7 s of inference on 2 cores)')
    parser.add_argument('--shape', type=int, nargs=3, default=(48, 256, 256),
                        metavar=('Z', 'Y', 'X'),
                        help='voxels per synthetic scan (>= 256 in-plane for 50 px patches; '
                             'time of every step grows with Y*X, inference with Z)')
    parser.add_argument('--preset', default=None,
                        help='make_synthetic_luna16.py --preset (default: its default, the '
                             'harder scans; "basic": the first generator\'s)')
    parser.add_argument('--split', type=float, nargs=3, default=(0.55, 0.1, 0.35),
                        metavar=('TRAIN', 'VAL', 'TEST'),
                        help='fractions of scans per split (same scan distribution in all)')
    parser.add_argument('--image-size', type=int, default=None,
                        help='slice size the detector trains and tests at (default: the '
                             'synthetic in-plane size, 512 with --data-root; 512 costs ~4x 256)')
    parser.add_argument('--patch-counts', type=int, nargs=3, default=(3000, 500, 1000),
                        metavar=('TRAIN', 'VAL', 'TEST'),
                        help='patches per split, 1:1 (training: ~25 ms of 2 cores per patch '
                             'and epoch)')
    parser.add_argument('--patch-epochs', type=int, default=8,
                        help='patch classifier epochs (~22 s each on 2 idle cores with 3000 '
                             'patches; the detector starting from its backbone gains up to 8)')
    parser.add_argument('--iters', type=int, default=650,
                        help='Mask R-CNN steps of two 160 px crops (~0.45 s each on 2 idle '
                             'cores while only the heads train, ~0.65 s from stage 3+ on); '
                             'the stages take 1/4, 1/2 and 1/4 of them. 1300 adds 4-5 min '
                             'and ~0.06 test AP50 (benchmarks/RESULTS.md)')
    parser.add_argument('--fpr-epochs', type=int, default=6,
                        help='epochs of the false-positive reduction classifier (ResNet-20 on '
                             '~2,200 3-view images: ~14 s each on 2 cores)')
    parser.add_argument('--fpr-scans', type=int, default=6,
                        help='training scans the detector runs on for the classifier\'s '
                             'normal class (evenly spread; ~6 s of inference each)')
    parser.add_argument('--fpr-background', type=int, default=45,
                        help='more normal views per training scan, on vessels and other lung '
                             'structures away from the nodules (candidates_to_views.py '
                             '--background; ~0.5 s of 1 core per scan; 45 x 22 scans are 990 '
                             'views, ~45%% of the classifier\'s training set)')
    parser.add_argument('--seed', type=int, default=0,
                        help='seed of the synthetic data and the split')
    parser.add_argument('--train-seed', type=int, default=0,
                        help='seed of both trainings (initialisation, sampling, augmentation)')
    parser.add_argument('--workers', type=int, default=2,
                        help='processes of the data steps; 2+: the steps after the patch '
                             'classifier run in two lanes side by side, each with half of '
                             'them (4+: inference in shards, tools/dist_infer.sh); 1: one '
                             'step at a time (~1.5 min longer on 2 cores)')
    parser.add_argument('--toy', action='store_true',
                        help='every step at toy size (about a minute; for tests): ' + ', '.join(
                            f'--{k.replace("_", "-")} {v}' for k, v in TOY.items()))
    parser.add_argument('--restart', action='store_true',
                        help='redo every step (default: skip steps whose outputs exist)')
    args = parser.parse_args(argv)
    if args.toy:
        for key, value in TOY.items():
            setattr(args, key, value)
    if (args.iters < 4 or min(args.patch_epochs, args.fpr_epochs) < 1 or args.num_scans < 2
            or args.fpr_background < 0 or args.fpr_scans < 1):
        parser.error('need --iters >= 4, --patch-epochs >= 1, --fpr-epochs >= 1, '
                     '--num-scans >= 2, --fpr-background >= 0 and --fpr-scans >= 1')
    if args.data_root is None and min(args.shape[1:]) < 256:
        parser.error(f'--shape {args.shape}: the 50x50 patch export needs >= 256 px in-plane')
    if args.image_size is None:
        args.image_size = 512 if args.data_root is not None else max(args.shape[1:])
    return args


@dataclass
class Step:
    """One tool run of the demo and the files that show it has run."""

    key: str
    title: str
    cmd: list[str]
    outputs: list[Path]
    tool: Path = field(default=None)  # the script; a missing one skips the step
    #: makes an input of ``cmd`` from earlier steps' outputs, just before it runs
    prepare: Callable[[], None] | None = None
    #: the step (key) whose outputs it reads; when that one could not run, neither can this
    needs: str | None = None

    def done(self) -> bool:
        return all(p.exists() for p in self.outputs)


def _py(tool: str, *args) -> list[str]:
    return [sys.executable, tool, *(str(a) for a in args)]


def infer_command(processes: int, config: Path, checkpoint: Path, *args) -> list[str]:
    """``tools/infer_scan.py CONFIG CHECKPOINT ARGS``; with 2+ processes
    ``tools/dist_infer.sh`` (shards merged), which takes the process count after the
    checkpoint.

    Why shards on a CPU: a slice batch of this small detector keeps about one core busy
    (its operators are too small for torch's threads), so two one-thread processes, each
    on every other scan, finish the test split in 91 s instead of 121 s on 2 cores
    (benchmarks/RESULTS.md, "The main job"). The demo gives each of its two lanes half
    the workers, so on 2 cores each lane's inference is one process.
    """
    if processes < 2:
        return _py('tools/infer_scan.py', config, checkpoint, *args)
    return ['env', f'PYTHON={sys.executable}', 'bash', 'tools/dist_infer.sh', str(config),
            str(checkpoint), str(processes), *(str(a) for a in args)]


@dataclass
class Parallel:
    """Steps that run side by side, one lane each, a lane's steps in order.

    Why: a training step of the small detector, or a slice batch of its inference, keeps
    about one core busy (its operators are too small for torch's threads), so on 2 cores
    two one-thread processes do twice the work of one two-thread process
    (benchmarks/RESULTS.md, "The main job"). With one worker the lanes run one after the
    other.
    """

    lanes: list[list[Step]]
    #: torch/OpenMP threads of each lane's processes (None: the machine's default)
    threads: list[int | None]


class StepFailed(RuntimeError):
    """A step's tool exited with an error or did not write its outputs."""


class Runner:
    """Runs the steps and keeps their records in ``OUT/steps.json``.

    A step is skipped when its outputs exist, its record shows it ran with the same
    command, and no step it reads from ran again (``dirty``: a step before it, or before
    it in its lane). Steps running side by side write their output to ``OUT/logs/KEY.log``,
    and their latest lines are printed every ``heartbeat`` seconds.
    """

    def __init__(self, out: Path, restart: bool, heartbeat: float = 20.0) -> None:
        self.out = out
        self.record_file = out / 'steps.json'
        self.records: dict[str, StepRecord] = {}
        if self.record_file.exists() and not restart:
            for key, value in json.loads(self.record_file.read_text()).items():
                self.records[key] = StepRecord(**value)
        self.restart = restart
        self.heartbeat = heartbeat
        self.lock = threading.Lock()
        self.running: dict[str, Path] = {}  # step key -> log file, of steps in lanes

    def _save(self) -> None:
        with self.lock:
            tmp = self.record_file.with_suffix('.json.tmp')
            tmp.write_text(json.dumps({k: asdict(v) for k, v in self.records.items()},
                                      indent=2))
            tmp.replace(self.record_file)

    def record(self, key: str, record: StepRecord) -> None:
        with self.lock:
            self.records[key] = record
        self._save()

    def run(self, step: Step, number: str, dirty: bool, log: Path | None = None,
            threads: int | None = None) -> str:
        """Run ``step`` unless it is done: 'ran', 'done' (skipped) or 'missing' (no tool).

        ``log``: write the tool's output there instead of the terminal. ``threads``: its
        torch/OpenMP threads. Raises :class:`StepFailed`.
        """
        header = f'\n=== [{number}] {step.title}'
        command = ' '.join(shlex.quote(c) for c in step.cmd)
        if step.tool is not None and not (REPO_ROOT / step.tool).exists():
            print(f'{header}: SKIPPED, {step.tool} is not in this checkout', flush=True)
            self.record(step.key, StepRecord(step.title, command, None, None, 'missing tool'))
            return 'missing'
        previous = self.records.get(step.key)
        if (not self.restart and not dirty and step.done() and previous is not None
                and previous.status == 'ran' and previous.command == command):
            print(f'{header}: outputs exist, skipped (--restart redoes it)', flush=True)
            return 'done'
        where = f' (beside other steps; its output: {log})' if log else ''
        print(f'{header}{where}\n$ {command}', flush=True)
        if step.prepare is not None:
            step.prepare()
        env = None
        if threads is not None:
            env = {**os.environ, 'OMP_NUM_THREADS': str(threads), 'MKL_NUM_THREADS': str(threads)}
        began, start = time.time(), time.perf_counter()
        if log is None:
            proc = subprocess.Popen(step.cmd, cwd=REPO_ROOT, env=env)
        else:
            log.parent.mkdir(parents=True, exist_ok=True)
            with self.lock:
                self.running[step.key] = log
            with log.open('w') as sink:
                proc = subprocess.Popen(step.cmd, cwd=REPO_ROOT, env=env, stdout=sink,
                                        stderr=subprocess.STDOUT)
        # wait4: this process's own CPU time (and its children's), also when steps run
        # side by side, where the runner's RUSAGE_CHILDREN would mix them
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.perf_counter() - start
        with self.lock:
            self.running.pop(step.key, None)
        if proc.returncode != 0:
            tail = f'; its output: {log}' if log else ''
            raise StepFailed(f'demo step "{step.title}" failed with exit code '
                             f'{proc.returncode}{tail}; command: {command}')
        missing = [str(p) for p in step.outputs if not p.exists()]
        if missing:
            raise StepFailed(f'demo step "{step.title}" finished but did not write {missing}')
        cpu = usage.ru_utime + usage.ru_stime
        self.record(step.key, StepRecord(step.title, command, round(seconds, 1), round(cpu, 1),
                                         'ran', round(began, 1)))
        print(f'=== [{number}] {step.title}: {seconds:.0f} s wall, {cpu:.0f} s CPU', flush=True)
        return 'ran'

    def print_progress(self) -> None:
        """The latest line of each step running beside others."""
        with self.lock:
            running = dict(self.running)
        for key, log in running.items():
            print(f'  [{key}] {_last_line(log)}', flush=True)


_ANSI_ESCAPE = re.compile(r'\x1b\[[0-9;]*[A-Za-z]')  # cursor moves of nested progress bars


def _last_line(log: Path, width: int = 150) -> str:
    """The last non-empty line of a log (progress bars redraw with carriage returns)."""
    try:
        with log.open('rb') as f:
            f.seek(max(0, log.stat().st_size - 4096))
            text = f.read().decode('utf-8', 'replace')
    except OSError:
        return ''
    text = _ANSI_ESCAPE.sub('', text).replace('\r', '\n')
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:width] if lines else '(no output yet)'


class Plan:
    """Runs the demo's steps and parallel groups in order, minding what each needs."""

    def __init__(self, runner: Runner, items: list[Step | Parallel], workers: int,
                 label: str = '') -> None:
        self.runner = runner
        self.items = items
        self.workers = workers
        self.label = label  # put before the step numbers, e.g. an experiment's arm and seed
        self.steps: list[Step] = []  # in the order of their numbers
        for item in items:
            self.steps += ([s for lane in item.lanes for s in lane]
                           if isinstance(item, Parallel) else [item])
        self.ran: set[str] = set()  # steps whose outputs exist (ran now or before)

    def _number(self, step: Step) -> str:
        number = f'{self.steps.index(step) + 1}/{len(self.steps)}'
        return f'{self.label} {number}' if self.label else number

    def _lane(self, steps: list[Step], dirty: bool, logs: bool,
              threads: int | None = None) -> bool:
        """Run ``steps`` in order; True when one of them ran (later readers must rerun)."""
        for step in steps:
            if step.needs is not None and step.needs not in self.ran:
                print(f'\n=== {step.title}: skipped, it needs the step "{step.needs}"',
                      flush=True)
                self.runner.record(step.key, StepRecord(step.title, ' '.join(step.cmd), None,
                                                        None, f'needs {step.needs}'))
                continue
            log = self.runner.out / 'logs' / f'{step.key}.log' if logs else None
            status = self.runner.run(step, self._number(step), dirty, log, threads)
            dirty = dirty or status == 'ran'
            if status != 'missing':
                self.ran.add(step.key)
        return dirty

    def execute(self) -> None:
        """Run everything; exits with the first failure once every lane has stopped."""
        dirty = False
        try:
            for item in self.items:
                if isinstance(item, Step):
                    dirty = self._lane([item], dirty, logs=False)
                elif self.workers < 2:  # one lane after the other, each from the same state
                    dirty = any([self._lane(lane, dirty, logs=False) for lane in item.lanes])
                else:
                    dirty = self._parallel(item, dirty)
        except StepFailed as err:
            sys.exit(str(err))

    def _parallel(self, group: Parallel, dirty: bool) -> bool:
        results: list[bool | StepFailed] = [dirty] * len(group.lanes)

        def lane(i: int) -> None:
            try:
                results[i] = self._lane(group.lanes[i], dirty, True, group.threads[i])
            except StepFailed as err:  # the other lanes finish what they started
                results[i] = err

        threads = [threading.Thread(target=lane, args=(i,), daemon=True)
                   for i in range(len(group.lanes))]
        for thread in threads:
            thread.start()
        while alive := [thread for thread in threads if thread.is_alive()]:
            alive[0].join(self.runner.heartbeat)
            if any(thread.is_alive() for thread in threads):
                self.runner.print_progress()
        failed = [r for r in results if isinstance(r, StepFailed)]
        if failed:
            raise failed[0]
        return any(results)


def patch_cfg_options(patch_root: Path, epochs: int, seed: int) -> list[str]:
    """``--cfg-options`` of the patch classifier config for this run."""
    opts = [f'{split}_dataloader.dataset.data_root={patch_root}/'
            for split in ('train', 'val', 'test')]
    return opts + [f'train_cfg.max_epochs={epochs}', f'param_scheduler.T_max={epochs}',
                   f'randomness.seed={seed}']


def detector_dataset_key(split: str) -> str:
    """Config key of the demo detector's LUNA16 COCO dataset of ``split``: the training
    one sits inside the MultiImageMixDataset that feeds CopyPaste."""
    return ('train_dataloader.dataset.dataset' if split == 'train'
            else f'{split}_dataloader.dataset')


def detector_cfg_options(coco_root: Path, backbone: Path, iters: int, image_size: int,
                         seed: int) -> list[str]:
    """``--cfg-options`` of the demo Mask R-CNN config for this run (reusable: issue 14).

    Points the data loaders and evaluators at ``coco_root``, the backbone at the patch
    classifier's checkpoint, and scales the schedule (stages, lr step, checkpoint) to
    ``iters`` steps.
    """
    opts = [f'model.backbone.init_cfg.checkpoint={backbone}']
    for split in ('train', 'val', 'test'):
        opts.append(f'{detector_dataset_key(split)}.data_root={coco_root}/')
        index = 2 if split == 'train' else 1  # Resize's place in each pipeline
        opts.append(f'{detector_dataset_key(split)}.pipeline.{index}.scale='
                    f'({image_size},{image_size})')
    for split in ('val', 'test'):
        opts.append(f'{split}_evaluator.0.ann_file={coco_root}/annotations/instances_{split}.json')
    opts += [f'train_cfg.max_iters={iters}', f'default_hooks.checkpoint.interval={iters}',
             f'param_scheduler.1.end={iters}',
             f'param_scheduler.1.milestones=[{int(iters * LR_STEP_FRACTION)}]',
             f'randomness.seed={seed}',
             # at least 4 logged points for the loss curve, even in a toy run
             f'default_hooks.logger.interval={max(1, min(10, iters // 4))}']
    opts += [f'custom_hooks.0.stages.{i}.begin={stage_begin(fraction, iters)}'
             for i, (_, fraction) in enumerate(STAGE_FRACTIONS)]
    return opts


def stage_begin(fraction: float, iters: int) -> int:
    """First step of a stage that starts at ``fraction`` of the run."""
    return int(round(fraction * iters))


def write_fpr_scans(splits_csv: Path, out_csv: Path, count: int) -> None:
    """``out_csv``: ``count`` training scans of ``splits_csv``, evenly spread over them
    (sorted by seriesuid), as ``train``: the scans whose detector candidates teach the
    false-positive reduction."""
    from data_prep.common import read_splits_csv, write_splits_csv
    train = sorted(uid for uid, split in read_splits_csv(splits_csv).items() if split == 'train')
    n = min(count, len(train))
    write_splits_csv(out_csv, {train[i * len(train) // n]: 'train' for i in range(n)})


def _test_scans(splits_csv: Path) -> int:
    lines = splits_csv.read_text().splitlines()[1:] if splits_csv.exists() else []
    return sum(1 for line in lines if line.rsplit(',', 1)[-1].strip() == 'test')


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    runner = Runner(out, args.restart)
    synthetic = args.data_root is None
    luna = out / 'luna16' if synthetic else args.data_root.resolve()
    annotations = luna / 'annotations.csv'
    excluded = luna / 'annotations_excluded.csv'
    coco, patches = out / 'luna16_coco', out / 'luna16_patches'
    patch_dir, det_dir = out / 'patch_cls', out / 'mask_rcnn'
    det_test_dir, infer_dir, eval_dir = out / 'mask_rcnn_test', out / 'infer', out / 'eval'
    detector_eval_dir = out / 'eval_detector'
    splits_csv = coco / 'splits.csv'
    patch_ckpt = patch_dir / f'epoch_{args.patch_epochs}.pth'
    det_ckpt = det_dir / f'iter_{args.iters}.pth'
    det_config_used = det_dir / Path(DET_CONFIG).name  # mmengine dumps the merged config here
    predictions = det_test_dir / 'predictions.pkl'
    split_args = ['--split', *args.split, '--split-seed', args.seed]
    # the steps after training run in two lanes side by side (Parallel), each lane's
    # tools with half the workers
    lane_workers = max(1, args.workers // 2)

    # LUNA16's excluded findings: ignore regions on the COCO slices, ignored hits in the FROC
    excluded_args = ['--excluded', excluded] if excluded.exists() or synthetic else []
    steps: list[Step] = []
    if synthetic:
        preset = ['--preset', args.preset] if args.preset else []
        steps.append(Step('synthetic', 'synthetic LUNA16 scans', _py(
            'data_prep/make_synthetic_luna16.py', '--out', luna, '--num-scans', args.num_scans,
            '--seed', args.seed, '--shape', *args.shape, '--workers', args.workers, *preset),
            [annotations]))
    steps += [
        Step('coco', 'LUNA16 -> COCO slices (split by scan)', _py(
            'data_prep/luna16_to_coco.py', '--luna-root', luna, '--annotations', annotations,
            *excluded_args, '--out', coco, *split_args, '--workers', args.workers),
            [coco / 'annotations/instances_test.json', splits_csv]),
        Step('patches', 'LUNA16 -> 50x50 patches (same split)', _py(
            'data_prep/luna16_to_patches.py', '--luna-root', luna, '--annotations', annotations,
            '--out', patches, '--splits', splits_csv, '--counts', *args.patch_counts,
            # negatives from 32 lung slices per scan (not 8): enough normal blocks for
            # the 1:1 balance from a few dozen 256 px scans. No --excluded: the synthetic
            # ones are masses, and without them as normal patches the means over seeds
            # moved by less than the spread of seeds, seed 0's size error above 1.5 mm
            # (benchmarks/RESULTS.md, session 16)
            '--neg-slices', 32, '--workers', args.workers), [patches / 'manifest.csv']),
        Step('patch_train', 'patch classifier: train ResNet-18 (mmpretrain)', _py(
            'tools/train.py', PATCH_CONFIG, '--work-dir', patch_dir, '--cfg-options',
            *patch_cfg_options(patches, args.patch_epochs, args.train_seed)), [patch_ckpt]),
        Step('patch_test', 'patch classifier: test split accuracy / AUC', _py(
            'tools/test.py', PATCH_CONFIG, patch_ckpt, '--work-dir', out / 'patch_cls_test',
            '--cfg-options', *patch_cfg_options(patches, args.patch_epochs, args.train_seed)),
            [out / 'patch_cls_test/test_metrics.json']),
        Step('det_train', 'Mask R-CNN R18-FPN, patch backbone, staged heads -> 3+ -> all', _py(
            'tools/train.py', DET_CONFIG, '--work-dir', det_dir, '--cfg-options',
            *detector_cfg_options(coco, patch_ckpt, args.iters, args.image_size,
                                  args.train_seed)), [det_ckpt, det_config_used]),
        Step('det_test', 'Mask R-CNN: test split, COCO segm / Matterport / Dice', _py(
            'tools/test.py', det_config_used, det_ckpt, '--eval', 'bbox', 'segm', '--work-dir',
            det_test_dir, '--out', predictions),
            [det_test_dir / 'test_metrics.json', predictions]),
        Step('infer', 'whole-scan inference on every test scan', infer_command(
            lane_workers, det_config_used, det_ckpt, luna, '--splits', splits_csv, '--split',
            'test', '--out', infer_dir), [infer_dir / 'candidates.csv'],
            tool=Path('tools/infer_scan.py')),
    ]
    # False-positive reduction (beyond the paper): the detector's candidates on a few
    # training scans, with vessels of every training scan, are the normal class of a
    # 3-view classifier, which then rescores the test candidates. A few: with the vessels,
    # ~550 false positives of 6 scans did as well as ~1,000 of 11 (CPM 0.481 against 0.487),
    # for half a minute less of inference (benchmarks/RESULTS.md).
    fpr_splits = out / 'fp_reduction_scans.csv'
    infer_train_dir, views, fpr_dir = out / 'infer_train', out / 'fp_views', out / 'fp_reduction'
    fpr_ckpt = fpr_dir / f'epoch_{args.fpr_epochs}.pth'
    fpr_config_used = fpr_dir / Path(FPR_CONFIG).name
    rescored = infer_dir / 'candidates_rescored.csv'
    steps += [
        Step('infer_train', 'false-positive reduction: inference on a few training scans',
             infer_command(lane_workers, det_config_used, det_ckpt, luna, '--splits', fpr_splits,
                           '--split', 'train', '--out', infer_train_dir),
             [infer_train_dir / 'candidates.csv'], tool=Path('tools/infer_scan.py'),
             prepare=lambda: write_fpr_scans(splits_csv, fpr_splits, args.fpr_scans)),
        Step('fpr_views', 'false-positive reduction: 3-view images of those candidates', _py(
            'data_prep/candidates_to_views.py', '--luna-root', luna, '--annotations', annotations,
            '--candidates', infer_train_dir / 'candidates.csv', '--splits', splits_csv,
            *excluded_args, '--background', args.fpr_background, '--seed', args.train_seed,
            '--workers', lane_workers, '--out', views),
            [views / 'info.json'], tool=Path('data_prep/candidates_to_views.py'),
            needs='infer_train'),
        Step('fpr_train', 'false-positive reduction: train ResNet-20 on the views (mmpretrain)',
             _py('tools/train.py', FPR_CONFIG, '--work-dir', fpr_dir, '--cfg-options',
                 f'train_dataloader.dataset.data_root={views}/',
                 f'train_cfg.max_epochs={args.fpr_epochs}',
                 f'param_scheduler.T_max={args.fpr_epochs}',
                 f'default_hooks.checkpoint.interval={args.fpr_epochs}',
                 f'randomness.seed={args.train_seed}'), [fpr_ckpt, fpr_config_used],
             needs='fpr_views'),
        Step('rescore', 'false-positive reduction: rescore the test candidates', _py(
            'tools/rescore_candidates.py', fpr_config_used, fpr_ckpt, infer_dir, '--views',
            views / 'info.json', '--out', rescored), [rescored],
            tool=Path('tools/rescore_candidates.py'), needs='fpr_train'),
    ]
    label_args = ['--data-label', 'synthetic data'] if synthetic else []

    def eval_command(candidates: Path, eval_out: Path, what: str) -> list[str]:
        return _py('tools/eval_luna16.py', '--annotations', annotations, '--candidates',
                   candidates, '--splits', splits_csv, '--split', 'test', '--nodules-dir',
                   infer_dir, '--out', eval_out, *excluded_args, *label_args,
                   '--candidates-label', what)

    steps += [
        Step('eval_detector', 'LUNA16 FROC / CPM of the detector alone',
             eval_command(infer_dir / 'candidates.csv', detector_eval_dir, 'the detector alone'),
             [detector_eval_dir / 'metrics.json'], tool=Path('tools/eval_luna16.py'),
             needs='infer'),
        Step('eval', 'LUNA16 FROC / CPM after false-positive reduction, diameter agreement',
             eval_command(rescored, eval_dir, 'detector + false-positive reduction'),
             [eval_dir / 'metrics.json'], tool=Path('tools/eval_luna16.py'), needs='rescore'),
    ]

    # After the patch classifier: its test beside the detector's training, then the
    # detector's test and test-scan inference beside the false-positive reduction's
    # inference, views and training (each lane on one core: Parallel says why).
    by_key = {step.key: step for step in steps}
    items: list[Step | Parallel] = [by_key[k] for k in ('synthetic', 'coco', 'patches',
                                                        'patch_train') if k in by_key]
    items += [
        Parallel([[by_key['det_train']], [by_key['patch_test']]], threads=[None, 1]),
        Parallel([[by_key['det_test'], by_key['infer']],
                  [by_key['infer_train'], by_key['fpr_views'], by_key['fpr_train']]],
                 threads=[lane_workers, lane_workers]),
        by_key['rescore'], by_key['eval_detector'], by_key['eval'],
    ]
    plan = Plan(runner, items, args.workers)
    started = datetime.datetime.now(datetime.timezone.utc)
    plan.execute()

    records = [runner.records[s.key] for s in plan.steps if s.key in runner.records]
    # a resumed run began when its first step did, not when it was resumed
    began = min((r.started for r in records if r.started is not None), default=None)
    if began is not None:
        started = min(started, datetime.datetime.fromtimestamp(began, datetime.timezone.utc))
    run = DemoRun(
        out=out, data_label='synthetic data' if synthetic else f'LUNA16 ({luna})',
        machine=_machine(), started_utc=started.strftime('%Y-%m-%d %H:%M UTC'),
        steps=records,
        coco_root=coco, splits_csv=splits_csv, test_scans=_test_scans(splits_csv),
        patch_metrics=out / 'patch_cls_test/test_metrics.json',
        det_metrics=det_test_dir / 'test_metrics.json', predictions=predictions,
        train_dir=det_dir, eval_dir=eval_dir, infer_dir=infer_dir,
        detector_eval_dir=detector_eval_dir, labels_dir=luna / 'labels' if synthetic else None,
        stage_begins=[(name, stage_begin(f, args.iters)) for name, f in STAGE_FRACTIONS],
        argv=list(sys.argv[1:] if argv is None else argv))
    report = write_report(run)
    print(f'\nDemo finished: {report}\n')
    print((out / 'HEADLINE.md').read_text())


def _machine() -> str:
    model = ''
    try:
        for line in Path('/proc/cpuinfo').read_text().splitlines():
            if line.startswith('model name'):
                model = line.split(':', 1)[1].strip()
                break
    except OSError:
        pass
    load = ', '.join(f'{v:.1f}' for v in os.getloadavg())
    return (f'{platform.node()}: {os.cpu_count()} CPU cores ({model or platform.processor()}), '
            f'{platform.system()} {platform.release()}, Python {platform.python_version()}; '
            f'load average at the end {load} (other jobs share the cores: times are upper '
            f'bounds)')


if __name__ == '__main__':
    main()
