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

Example::

    python benchmarks/bench_data_prep.py --num-scans 6 --shape 300 512 512
"""
from __future__ import annotations

import argparse
import datetime
import json
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--out', type=Path, default=REPO / 'work_dirs' / 'bench_data_prep')
    parser.add_argument('--num-scans', type=int, default=8)
    parser.add_argument('--shape', type=int, nargs=3, default=[300, 512, 512], metavar=('Z', 'Y', 'X'))
    parser.add_argument('--workers', type=int, nargs='+', default=[1, 2])
    parser.add_argument('--seed', type=int, default=0)
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
    return 0


if __name__ == '__main__':
    sys.exit(main())
