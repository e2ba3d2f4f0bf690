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

Example::

    python benchmarks/bench_data_prep.py --num-scans 6 --shape 300 512 512
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--out', type=Path, default=REPO / 'work_dirs' / 'bench_data_prep')
    parser.add_argument('--num-scans', type=int, default=8)
    parser.add_argument('--shape', type=int, nargs=3, default=[300, 512, 512], metavar=('Z', 'Y', 'X'))
    parser.add_argument('--workers', type=int, nargs='+', default=[1, 2])
    parser.add_argument('--seed', type=int, default=0)
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
