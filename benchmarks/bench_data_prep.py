#!/usr/bin/env python
"""Benchmark of the LUNA16 converters on full-size synthetic scans (issue 3).

Measures, for ``data_prep/luna16_to_coco.py`` and ``data_prep/luna16_to_patches.py``
with ``--workers 1`` and ``--workers 2``: wall time of the command, of its work after
the imports, seconds per scan of the per-scan phase (from ``OUT/summary.json``), and peak
resident memory (largest single process, and the whole process tree sampled every
50 ms). Each run starts from an empty output folder (no resuming). Then, in this process,
the numpy memory peak of one scan's jobs (tracemalloc). Prints Markdown tables for
``benchmarks/RESULTS.md``.

Target (issue 3): no full-volume float64 copy (a 512x512x300 int16 scan is 150 MiB; a
float64 copy would be 600 MiB), under 2 s per scan with 2 workers, i.e. the 888 LUNA16
scans in under 30 minutes on 2 cores.

Lung mask (issue 10): per scan, in process, the time of the lung mask of
``projects/lung_nodule/ct/lung.py`` against the one it replaced (checked out of git at
``OLD_LUNG_MASK_REV`` into a temporary module), for the COCO export's slices (3 per
nodule) and, to put them in proportion, the scan's read and its slice images; target
within 1.5x per scan. And the share of lesion pixels inside either mask on the chest
phantom of the tests (tests/lung_phantom.py). ``--lung-mask-only`` runs just these.

Before/after (issue 9, point 2), ``--baseline-ref REV``: the converters' code at ``REV``
(``data_prep/`` from ``git archive``, with the working tree's ``projects/`` except
``ct/lung.py``, taken at ``--baseline-lung-ref``) against today's, in one run, interleaved (before, after, before,
after, ...): before = ``luna16_to_coco.py`` then ``luna16_to_patches.py --splits``; after
= the one-pass ``luna16_prepare.py`` (and, for reference, today's two commands). Per run:
wall and CPU time (user + sys of the command and its workers, imports included), scan
phase s/scan, the load average; the extrapolation to LUNA16's 888 scans (from the wall
time as measured, and from the CPU time on 2 otherwise idle cores); and the read floor:
seconds per scan over the time to read one scan from the page cache (``read_scan``,
measured in the same run). The outputs of every run are compared with the first
baseline's, file by file (the ``.npz`` by array, ``summary.json`` without its seconds).

Example::

    python benchmarks/bench_data_prep.py --num-scans 6 --shape 300 512 512
    python benchmarks/bench_data_prep.py --num-scans 6 --baseline-ref fcc4f4e~1 --repeats 2
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
# The last commit with the threshold + closing lung mask (before the per-lung hull).
OLD_LUNG_MASK_REV = 'ae3b920~1'


def _tree_rss_bytes(pid: int) -> tuple[int, int]:
    """(sum, max) RSS over ``pid`` and its descendants, from /proc (Linux)."""
    total = largest = 0
    stack = [pid]
    while stack:
        p = stack.pop()
        try:
            with open(f'/proc/{p}/status') as handle:
                for line in handle:
                    if line.startswith('VmRSS:'):
                        rss = int(line.split()[1]) * 1024
                        total += rss
                        largest = max(largest, rss)
                        break
            for task in os.listdir(f'/proc/{p}/task'):
                with open(f'/proc/{p}/task/{task}/children') as handle:
                    stack += [int(c) for c in handle.read().split()]
        except (FileNotFoundError, ProcessLookupError, PermissionError, ValueError):
            continue
    return total, largest


def run_measured(command: list[str]) -> dict:
    """Run a command; wall time and peak tree / single-process RSS."""
    peak = {'tree': 0, 'proc': 0}
    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True)
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            total, largest = _tree_rss_bytes(process.pid)
            peak['tree'] = max(peak['tree'], total)
            peak['proc'] = max(peak['proc'], largest)
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, stderr = process.communicate()
    done.set()
    sampler.join()
    wall = time.perf_counter() - start
    if process.returncode != 0:
        raise SystemExit(f'{" ".join(command)} failed ({process.returncode}):\n{stderr[-3000:]}')
    return {'wall_s': wall, 'peak_tree_mib': peak['tree'] / 2 ** 20,
            'peak_proc_mib': peak['proc'] / 2 ** 20}


def traced_peak_per_scan(data: Path, num: int) -> list[tuple[str, float, float, float]]:
    """In-process: numpy memory peak (tracemalloc) of one scan's slice and patch jobs.

    numpy reports its allocations to tracemalloc; SimpleITK's own int16 buffer (the volume
    as read) is not traced and is listed separately. A float64 copy of the volume would
    show as a peak of 8 bytes per voxel.
    """
    import tracemalloc

    from data_prep import luna16_to_coco, luna16_to_patches
    from data_prep.common import RunSummary, load_inputs

    inputs = load_inputs(data, data / 'annotations.csv', RunSummary())
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for uid in sorted(inputs.scans)[:num]:
            common = dict(seriesuid=uid, mhd_path=inputs.scans[uid],
                          nodules=tuple(inputs.nodules[uid]), out_dir=Path(tmp))
            coco_job = luna16_to_coco.ScanJob(**common, split='train',
                                              options=luna16_to_coco.CocoOptions())
            patch_job = luna16_to_patches.PatchScanJob(**common, negative_quota=40,
                                                       options=luna16_to_patches.PatchOptions())
            peaks = []
            for func, job in ((luna16_to_coco.export_scan, coco_job),
                              (luna16_to_patches.collect_scan_patches, patch_job)):
                tracemalloc.start()
                result = func(job)
                peaks.append(tracemalloc.get_traced_memory()[1] / 2 ** 20)
                tracemalloc.stop()
                assert result['status'] == 'done', result
            size = os.path.getsize(inputs.scans[uid].with_suffix('.raw')) / 2 ** 20
            rows.append((uid, size, peaks[0], peaks[1]))
    return rows


def _old_lung_module():
    """The replaced ``ct/lung.py``, from git, imported as a module of its own."""
    import importlib.util

    source = subprocess.run(['git', 'show', f'{OLD_LUNG_MASK_REV}:projects/lung_nodule/ct/lung.py'],
                            cwd=REPO, check=True, capture_output=True, text=True).stdout
    folder = Path(tempfile.mkdtemp(prefix='old_lung_'))
    path = folder / 'old_lung_mask.py'
    path.write_text(source)
    spec = importlib.util.spec_from_file_location('old_lung_mask', path)
    module = importlib.util.module_from_spec(spec)
    sys.modules['old_lung_mask'] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    shutil.rmtree(folder)
    return module


def lung_mask_times(data: Path, num: int, repeats: int = 3) -> list[tuple]:
    """Per scan: seconds to read it, to make its slice images (window + PNG), and the
    old and the new lung mask (3D steps + the COCO export's slices), best of ``repeats``
    (old and new alternate, so that both meet the same load)."""
    from data_prep.common import RunSummary, encode_png, load_inputs
    from projects.lung_nodule.ct import (hu_to_uint8, locate_nodules, read_scan,
                                         select_nodule_slices)
    from projects.lung_nodule.ct.lung import LungMask

    old = _old_lung_module()
    inputs = load_inputs(data, data / 'annotations.csv', RunSummary())
    rows = []
    for uid in sorted(inputs.scans)[:num]:
        start = time.perf_counter()
        scan = read_scan(inputs.scans[uid])
        read_s = time.perf_counter() - start
        located, _ = locate_nodules(scan.geometry, inputs.nodules[uid], inputs.scans[uid])
        slices = select_nodule_slices(located, scan.geometry.shape_zyx[0], 3)
        start = time.perf_counter()
        for z in slices:
            encode_png(hu_to_uint8(scan.array[z]))
        images_s = time.perf_counter() - start
        best = {'old': math.inf, 'new': math.inf}
        for _ in range(repeats):
            for name, cls in (('old', old.LungMask), ('new', LungMask)):
                start = time.perf_counter()
                cls(scan.array, scan.geometry.spacing_xyz).slices(slices)
                best[name] = min(best[name], time.perf_counter() - start)
        rows.append((uid, len(slices), read_s, images_s, best['old'], best['new']))
        print(f'...{uid[-8:]}: {len(slices)} slices, read {read_s:.2f} s, images {images_s:.2f} s, '
              f'mask old {best["old"]:.2f} s, new {best["new"]:.2f} s', flush=True)
    return rows


def lesions_kept() -> list[tuple]:
    """Per lesion of the tests' chest phantom: share of its (in-lung) pixels inside the
    old and the new mask, over all its slices and on its worst slice; and the area each
    mask adds beyond the true lungs (mean over slices showing lung)."""
    import numpy as np

    from projects.lung_nodule.ct.lung import LungMask
    from tests.lung_phantom import make_chest_phantom

    old = _old_lung_module()
    phantom = make_chest_phantom()
    nz = phantom.volume.shape[0]
    masks = {name: cls(phantom.volume, phantom.spacing_xyz).slices(range(nz))
             for name, cls in (('old', old.LungMask), ('new', LungMask))}
    rows = []
    for name, lesion in phantom.lesions.items():
        zs = np.flatnonzero(lesion.any(axis=(1, 2)))
        row = [name]
        for mask in masks.values():
            row.append((lesion & mask).sum() / lesion.sum())
            row.append(min((lesion[z] & mask[z]).sum() / lesion[z].sum() for z in zs))
        rows.append(tuple(row))
    true_area = phantom.lungs.sum(axis=(1, 2))
    shown = true_area >= 0.1 * true_area.max()
    added = [float(np.mean((m & ~phantom.lungs).sum(axis=(1, 2))[shown] / true_area[shown]))
             for m in masks.values()]
    rows.append(('area added beyond the true lungs (mean over slices)', added[0], None, added[1], None))
    return rows


def print_lung_mask_tables(times: list[tuple], kept: list[tuple]) -> None:
    """Markdown tables of :func:`lung_mask_times` and :func:`lesions_kept`."""
    print()
    print('| scan | slices | read (s) | slice images (s) | old mask (s) | new mask (s) '
          '| mask new/old | per scan new/old (read + images + mask) |')
    print('|---|---|---|---|---|---|---|---|')
    for uid, n, read_s, images_s, old_s, new_s in times:
        base = read_s + images_s
        print(f'| ...{uid[-8:]} | {n} | {read_s:.2f} | {images_s:.2f} | {old_s:.2f} | {new_s:.2f} '
              f'| {new_s / old_s:.2f} | {(base + new_s) / (base + old_s):.2f} |')
    print()
    print('| lesion (tests/lung_phantom.py) | old: all slices | old: worst slice | new: all slices '
          '| new: worst slice |')
    print('|---|---|---|---|---|')
    for name, *values in kept:
        cells = ['' if v is None else f'{100 * v:.1f}%' for v in values]
        print(f'| {name} | ' + ' | '.join(cells) + ' |')


LUNA16_SCANS = 888
# The converters' last version before the one-pass command and the shared ScanSource,
# and the lung mask's last version before its speed-only changes (OpenCV EDT).
BASELINE_REF = 'fcc4f4e~1'
BASELINE_LUNG_REF = '50babe3~1'


def _short(ref: str) -> str:
    return subprocess.run(['git', 'rev-parse', '--short', ref], cwd=REPO, capture_output=True,
                          text=True).stdout.strip()


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _export_tree(ref: str, lung_ref: str, folder: Path) -> Path:
    """``data_prep/`` at ``ref``, the working tree's ``projects/`` with ``ct/lung.py`` at
    ``lung_ref``, in ``folder``."""
    archive = subprocess.run(['git', 'archive', ref, 'data_prep'], cwd=REPO, check=True,
                             capture_output=True).stdout
    subprocess.run(['tar', '-x', '-C', str(folder)], input=archive, check=True)
    shutil.copytree(REPO / 'projects', folder / 'projects',
                    ignore=shutil.ignore_patterns('__pycache__'))
    lung = 'projects/lung_nodule/ct/lung.py'
    (folder / lung).write_bytes(subprocess.run(['git', 'show', f'{lung_ref}:{lung}'], cwd=REPO,
                                               check=True, capture_output=True).stdout)
    return folder


def _same_outputs(a: Path, b: Path) -> int:
    """Files of ``b`` that differ from ``a`` (or are missing from either): ``.npz`` by
    array (zip members carry their write time), ``summary.json`` without ``seconds``."""
    import numpy as np

    files_a = {p.relative_to(a) for p in a.rglob('*') if p.is_file()}
    files_b = {p.relative_to(b) for p in b.rglob('*') if p.is_file()}
    bad = len(files_a ^ files_b)
    for rel in files_a & files_b:
        if rel.name == 'summary.json':
            x, y = (json.loads((root / rel).read_text()) for root in (a, b))
            x.pop('seconds'), y.pop('seconds')
            bad += x != y
        elif rel.suffix == '.npz':
            with np.load(a / rel) as x, np.load(b / rel) as y:
                bad += x.files != y.files or not all(
                    x[k].dtype == y[k].dtype and np.array_equal(x[k], y[k]) for k in x.files)
        else:
            bad += (a / rel).read_bytes() != (b / rel).read_bytes()
    return bad


def _read_floor(data: Path, num: int, repeats: int = 3) -> tuple[float, float]:
    """Mean over scans of the best (wall, CPU) seconds of ``read_scan`` from the page cache."""
    from projects.lung_nodule.ct import read_scan

    walls, cpus = [], []
    for path in sorted(data.rglob('*.mhd'))[:num]:
        best = (math.inf, math.inf)
        for _ in range(repeats):
            wall, cpu = time.perf_counter(), time.process_time()
            read_scan(path).array.sum(dtype='int64')  # touch every voxel
            best = min(best, (time.perf_counter() - wall, time.process_time() - cpu))
        walls.append(best[0])
        cpus.append(best[1])
    return sum(walls) / len(walls), sum(cpus) / len(cpus)


def before_after(data: Path, out: Path, num: int, ref: str, lung_ref: str, repeats: int,
                 workers: int) -> None:
    """Baseline converters at ``ref`` against today's (see the module docstring)."""
    common = ['--luna-root', str(data), '--annotations', str(data / 'annotations.csv'),
              '--workers', str(workers)]
    counts = ['--counts', '2400', '800', '800']
    with tempfile.TemporaryDirectory(prefix='bench_baseline_') as tmp:
        old_tree = _export_tree(ref, lung_ref, Path(tmp))
        old = [sys.executable, str(old_tree / 'data_prep/luna16_to_coco.py')], \
            [sys.executable, str(old_tree / 'data_prep/luna16_to_patches.py')]
        new = [sys.executable, 'data_prep/luna16_to_coco.py'], \
            [sys.executable, 'data_prep/luna16_to_patches.py']

        def two_commands(coco: list[str], patches: list[str], o: Path) -> list[list[str]]:
            return [coco + [*common, '--out', str(o / 'coco')],
                    patches + [*common, *counts, '--out', str(o / 'patches'),
                               '--splits', str(o / 'coco/splits.csv')]]

        variants = {  # name -> output folder -> commands (each writes OUT/coco/summary.json)
            'before: luna16_to_coco.py + luna16_to_patches.py': lambda o: two_commands(*old, o),
            'after: luna16_prepare.py (one pass)': lambda o: [
                [sys.executable, 'data_prep/luna16_prepare.py', *common, *counts,
                 '--coco-out', str(o / 'coco'), '--patches-out', str(o / 'patches')]],
            'after: luna16_to_coco.py + luna16_to_patches.py': lambda o: two_commands(*new, o),
        }
        rows = []
        reference = None
        for rep in range(repeats):
            for name, commands in variants.items():
                folder = out / f'run{rep}_{len(rows) % len(variants)}'
                shutil.rmtree(folder, ignore_errors=True)
                load = os.getloadavg()[0]
                cpu0, wall, scans_s = _children_cpu(), 0.0, 0.0
                for command in commands(folder):
                    wall += run_measured(command)['wall_s']
                # Scan phase: the two commands' own, or the one pass's (in both summaries).
                seconds = [json.loads((folder / part / 'summary.json').read_text())['seconds']['scans']
                           for part in ('coco', 'patches')]
                scans_s = sum(seconds) if len(commands(folder)) == 2 else seconds[0]
                cpu = _children_cpu() - cpu0
                reference = reference or folder
                diff = _same_outputs(reference, folder)
                rows.append((rep, name, wall, cpu, len(commands(folder)), scans_s, load, diff))
                print(f'{name} [{rep}]: wall {wall:.1f} s, CPU {cpu:.1f} s, scan phase {scans_s:.1f} s, '
                      f'load {load:.1f}, files differing from the first baseline: {diff}', flush=True)
    read_wall, read_cpu = _read_floor(data, num)
    cpu0 = _children_cpu()
    for _ in range(3):
        subprocess.run([sys.executable, 'data_prep/luna16_to_coco.py', '--help'], cwd=REPO, check=True,
                       capture_output=True)
    startup = (_children_cpu() - cpu0) / 3
    print()
    print(f'Date {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; {os.cpu_count()} '
          f'cores ({platform.processor() or platform.machine()}); {num} synthetic scans; '
          f'--workers {workers}; baseline: data_prep/ at {ref} ({_short(ref)}), ct/lung.py at '
          f'{lung_ref} ({_short(lung_ref)}); '
          f'read floor (read_scan from the page cache, mean of best of 3): {read_wall:.2f} s wall, '
          f'{read_cpu:.2f} s CPU per scan; a command\'s start-up (imports, `--help`) {startup:.2f} s CPU.')
    print()
    print('| run | code | wall (s) | CPU (s) | load avg at start | scan phase s/scan (wall) '
          '| CPU s/scan (start-up excluded) | LUNA16 888 scans, as measured (min) '
          '| LUNA16 on 2 idle cores, from CPU (min) | wall s/scan / read wall '
          '| CPU s/scan / read CPU | files differing |')
    print('|---|---|---|---|---|---|---|---|---|---|---|---|')
    for rep, name, wall, cpu, num_commands, scans_s, load, diff in rows:
        per_scan, cpu_scan = scans_s / num, (cpu - num_commands * startup) / num
        print(f'| {rep} | {name} | {wall:.1f} | {cpu:.1f} | {load:.1f} | {per_scan:.2f} | {cpu_scan:.2f} '
              f'| {LUNA16_SCANS * per_scan / 60:.1f} | {LUNA16_SCANS * cpu_scan / 2 / 60:.1f} '
              f'| {per_scan / read_wall:.1f} | {cpu_scan / read_cpu:.1f} | {diff} |')


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--out', type=Path, default=REPO / 'work_dirs' / 'bench_data_prep')
    parser.add_argument('--num-scans', type=int, default=8)
    parser.add_argument('--shape', type=int, nargs=3, default=[300, 512, 512], metavar=('Z', 'Y', 'X'))
    parser.add_argument('--workers', type=int, nargs='+', default=[1, 2])
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--baseline-ref', default=None, metavar='REV',
                        help=f'only the before/after comparison of the converters: their code at '
                             f'REV (e.g. {BASELINE_REF}, the last before the one-pass command) '
                             f'against today\'s, interleaved')
    parser.add_argument('--baseline-lung-ref', default=BASELINE_LUNG_REF, metavar='REV',
                        help='ct/lung.py of the baseline (the rest of projects/ is the working '
                             'tree\'s)')
    parser.add_argument('--repeats', type=int, default=2,
                        help='rounds of the --baseline-ref comparison')
    parser.add_argument('--lung-mask-only', action='store_true',
                        help='only the old-vs-new lung mask figures (no converter runs)')
    args = parser.parse_args()

    data = args.out / 'luna'
    stamp = data / f'.made_{args.num_scans}_{args.seed}_{"x".join(map(str, args.shape))}'
    if not stamp.is_file():
        shutil.rmtree(data, ignore_errors=True)
        t0 = time.perf_counter()
        subprocess.run([sys.executable, 'data_prep/make_synthetic_luna16.py', '--out', str(data),
                        '--num-scans', str(args.num_scans), '--seed', str(args.seed),
                        '--shape', *map(str, args.shape), '--workers', '2'], cwd=REPO, check=True)
        print(f'generated {args.num_scans} scans in {time.perf_counter() - t0:.1f} s', flush=True)
        stamp.touch()
    if args.baseline_ref:
        before_after(data, args.out / 'before_after', args.num_scans, args.baseline_ref,
                     args.baseline_lung_ref, args.repeats, max(args.workers))
        return 0
    if args.lung_mask_only:
        print(f'Date {datetime.date.today().isoformat()}; {os.cpu_count()} cores; load average '
              f'{os.getloadavg()[0]:.1f}; {args.num_scans} synthetic scans of '
              f'{args.shape[2]}x{args.shape[1]}x{args.shape[0]} (x y z).', flush=True)
        print_lung_mask_tables(lung_mask_times(data, args.num_scans), lesions_kept())
        return 0
    rows = []
    for script, extra in (('luna16_to_coco.py', []),
                          ('luna16_to_patches.py', ['--counts', '2400', '800', '800'])):
        for workers in args.workers:
            out = args.out / f'{script.split(".")[0]}_w{workers}'
            shutil.rmtree(out, ignore_errors=True)
            load = os.getloadavg()[0]
            result = run_measured([sys.executable, f'data_prep/{script}', '--luna-root', str(data),
                                   '--annotations', str(data / 'annotations.csv'), '--out', str(out),
                                   '--workers', str(workers), *extra])
            seconds = json.loads((out / 'summary.json').read_text())['seconds']
            per_scan = seconds['scans'] / args.num_scans
            rows.append((script, workers, result['wall_s'], seconds['total'], per_scan,
                         result['peak_proc_mib'], result['peak_tree_mib'], load))
            print(f'{script} --workers {workers}: command {result["wall_s"]:.1f} s, work '
                  f'{seconds["total"]:.1f} s, {per_scan:.2f} s/scan, peak {result["peak_proc_mib"]:.0f} '
                  f'MiB/process, {result["peak_tree_mib"]:.0f} MiB total (load {load:.1f})', flush=True)
    traced = traced_peak_per_scan(data, 2)
    print()
    print(f'Date {datetime.date.today().isoformat()}; {os.cpu_count()} cores '
          f'({platform.processor() or platform.machine()}); {args.num_scans} synthetic scans of '
          f'{args.shape[2]}x{args.shape[1]}x{args.shape[0]} (x y z) int16.')
    print()
    print('| command | workers | command wall (s) | work, after imports (s) | s/scan (scan phase) '
          '| peak RSS, largest process (MiB) | peak RSS, all processes (MiB) | load avg at start |')
    print('|---|---|---|---|---|---|---|---|')
    for script, workers, wall, total, per_scan, proc, tree, load in rows:
        print(f'| {script} | {workers} | {wall:.1f} | {total:.1f} | {per_scan:.2f} | {proc:.0f} '
              f'| {tree:.0f} | {load:.1f} |')
    print()
    print('| scan | .raw (MiB, int16) | numpy peak, slice export (MiB) | numpy peak, patch candidates (MiB) |')
    print('|---|---|---|---|')
    for uid, size, coco_peak, patch_peak in traced:
        print(f'| ...{uid[-8:]} | {size:.0f} | {coco_peak:.0f} | {patch_peak:.0f} |')
    print_lung_mask_tables(lung_mask_times(data, args.num_scans), lesions_kept())
    return 0


if __name__ == '__main__':
    sys.exit(main())
