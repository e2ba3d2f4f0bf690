#!/usr/bin/env python
"""Benchmark of whole-scan inference (issue 11): seconds per full-size scan by stage,
against the network's own time through mmdet's plain ``inference_detector``.

One synthetic scan of 512x512x300 (``make_synthetic_luna16.py --shape 300 512 512``)
goes through :class:`projects.lung_nodule.apis.NoduleInferencer` (reading, lung mask,
slice images, network, linking + measurement) and the per-scan writer; then the same
slice images through ``mmdet.apis.inference_detector``, one slice per call, as a user of
mmdet would run them. The pipeline's overhead is everything but ``network``, as a
fraction of the plain network time (target: <= 10%).

On a shared 2-core CPU an untrained R101 Mask R-CNN takes ~20 s per 512x512 slice (it
keeps 100 detections per slice and runs the mask head on each), so ``--max-slices K``
runs the pipeline on K evenly spaced lung slices of the scan (reading, the lung mask and
writing are per scan and measured as they are) and scales the per-slice stages (slice
images, network, linking + measurement) to all lung slices; the plain path is timed on the same
K slices. The JSON says which figures are measured and which scaled.

Then ``torch.profiler`` on one batch forward: the top entries by self CPU time (on a GPU,
with ``--device cuda [--amp]``: by self GPU time). The detection count is reported: the
mask head runs on every kept detection, and an untrained (randomly initialised) model
keeps up to ``max_per_img`` (100) per slice.

Example::

    python benchmarks/bench_infer.py --out work_dirs/bench_infer --batch-size 2 --max-slices 16
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import projects.lung_nodule.registry  # noqa: E402,F401

CONFIG = REPO / 'configs/lung/mask_rcnn_r101_fpn_all.py'
# the profile's clock, by "on a GPU": the key of its rows and the table's column
PROFILE_CLOCK = {False: ('self_cpu', 'self CPU'), True: ('self_device', 'self GPU')}


def _scan(data: Path, shape: list[int]) -> Path:
    found = sorted(data.glob('subset*/*.mhd'))
    if found:
        return found[0]
    from data_prep.make_synthetic_luna16 import make_synthetic_luna16
    make_synthetic_luna16(data, num_scans=1, seed=0, shape=shape)
    return sorted(data.glob('subset*/*.mhd'))[0]


def _random_checkpoint(config: Path, path: Path) -> Path:
    """Weights of a randomly initialised model (no trained checkpoint, no download)."""
    from mmdet.apis import init_detector
    from mmengine.config import Config
    cfg = Config.fromfile(str(config))
    cfg.model.backbone.init_cfg = None
    torch.manual_seed(0)
    model = init_detector(cfg, checkpoint=None, device='cpu')
    model.init_weights()
    torch.save({'state_dict': model.state_dict(),
                'meta': {'dataset_meta': {'classes': ('nodule', )}}}, path)
    return path


def _profile(predictor, images: np.ndarray, zs: list[int], top: int,
             cuda: bool) -> list[dict]:
    """Top ops of one batch forward: by self CPU time, or on a GPU by self device time
    (the kernels' own; the CPU time there is mostly launching them)."""
    from torch.profiler import ProfilerActivity, profile
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        predictor(images, zs)

    def own(event) -> float:  # microseconds
        return event.self_device_time_total if cuda else event.self_cpu_time_total

    events = sorted(prof.key_averages(), key=own, reverse=True)
    total = sum(own(e) for e in events)
    key = PROFILE_CLOCK[cuda][0]
    return [{'name': e.key, 'calls': e.count, f'{key}_s': own(e) / 1e6,
             f'{key}_share': own(e) / total if total else 0.0} for e in events[:top]]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--out', type=Path, required=True, help='work folder (scan, outputs, JSON)')
    parser.add_argument('--data', type=Path, default=None,
                        help='synthetic LUNA16 root to use or make (default: OUT/data)')
    parser.add_argument('--shape', type=int, nargs=3, default=[300, 512, 512])
    parser.add_argument('--config', type=Path, default=CONFIG)
    parser.add_argument('--checkpoint', type=Path, default=None,
                        help='trained weights (default: a randomly initialised model)')
    parser.add_argument('--batch-size', type=int, default=2)
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--amp', action='store_true',
                        help='float16 autocast forward, as tools/infer_scan.py --amp (CUDA only)')
    parser.add_argument('--max-slices', type=int, default=0,
                        help='run K evenly spaced lung slices and scale to all (0: all)')
    parser.add_argument('--profile-top', type=int, default=15)
    args = parser.parse_args(argv)

    from mmdet.apis import inference_detector
    from projects.lung_nodule.apis.nodule_inferencer import NoduleInferencer
    from projects.lung_nodule.apis.outputs import write_scan_outputs
    from projects.lung_nodule.ct.slice_image import slice_to_uint8

    args.out.mkdir(parents=True, exist_ok=True)
    scan_path = _scan(args.data or args.out / 'data', args.shape)
    checkpoint = args.checkpoint
    random_init = checkpoint is None
    if random_init:
        checkpoint = _random_checkpoint(args.config, args.out / 'random_init.pth')
    inferencer = NoduleInferencer(str(args.config), checkpoint, device=args.device,
                                  batch_size=args.batch_size, amp=args.amp)
    predictor = inferencer.predictor
    # warm-up forward (lazy initialisations, allocator)
    predictor(np.zeros((1, 512, 512), np.uint8), [0])

    # per-slice detection counts, recorded from inside the pipeline's own calls
    counts: list[int] = []
    original = predictor.__class__.__call__

    def counting(self, images, zs, scan=None):
        out = original(self, images, zs, scan)
        counts.extend(len(p.scores) for p in out)
        return out

    predictor.__class__.__call__ = counting
    start = time.perf_counter()
    prepared = inferencer.prepare(scan_path)
    all_lung_slices = list(prepared.lung_slices)
    if args.max_slices and args.max_slices < len(all_lung_slices):
        picked_index = np.linspace(0, len(all_lung_slices) - 1, args.max_slices).round()
        prepared.lung_slices = [all_lung_slices[int(i)] for i in picked_index]
    result = inferencer.run(prepared, progress=True)
    record = write_scan_outputs(result, args.out / 'outputs' / result.scan_id,
                                inferencer.score_thr, str(scan_path))
    measured_total = time.perf_counter() - start
    predictor.__class__.__call__ = original
    measured = record['timings']
    zs = result.slices_used
    scale = len(all_lung_slices) / len(zs)
    # per scan, measured as they are: reading and the lung mask run on the whole scan,
    # and writing depends on the (at most 100) nodules and the volume, not on slices
    per_scan_stages = ('read', 'lung_mask', 'write')
    timings = {stage: seconds if stage in per_scan_stages else seconds * scale
               for stage, seconds in measured.items()}
    total = sum(timings.values())
    picked = zs
    lungs = None
    if inferencer.lung_mask_mode == 'blank':
        from projects.lung_nodule.ct.lung import LungMask
        lungs = LungMask(result.scan.array, result.scan.geometry.spacing_xyz)
    images = [slice_to_uint8(result.scan, z, lungs, mode=inferencer.lung_mask_mode)
              for z in picked]
    model = predictor.model
    plain_start = time.perf_counter()
    with torch.autocast('cuda', dtype=torch.float16, enabled=args.amp):
        for image in images:
            inference_detector(model, np.repeat(image[:, :, None], 3, axis=2))
    plain_picked = time.perf_counter() - plain_start
    plain_all = plain_picked / len(picked) * len(all_lung_slices)

    batch = np.stack(images[len(images) // 2:len(images) // 2 + args.batch_size])
    cuda = torch.device(args.device).type == 'cuda'
    profile = _profile(predictor, batch, list(range(len(batch))), args.profile_top, cuda)

    overhead = total - timings['network']
    report = {
        'date': datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
        'machine': f'{platform.node()} {platform.machine()}, {os.cpu_count()} CPUs, '
                   f'torch {torch.__version__}, {torch.get_num_threads()} threads'
                   + (f', {torch.cuda.get_device_name(args.device)}' if cuda else ''),
        'load_average_start': os.getloadavg(),
        'command': 'python benchmarks/bench_infer.py ' + ' '.join(argv or sys.argv[1:]),
        'scan': str(scan_path), 'shape_zyx': list(result.scan.array.shape),
        'spacing_xyz': list(result.scan.geometry.spacing_xyz),
        'model': 'randomly initialised' if random_init else str(checkpoint),
        'batch_size': args.batch_size, 'device': args.device, 'amp': args.amp,
        'lung_mask_mode': inferencer.lung_mask_mode,
        'slices_total': int(result.scan.array.shape[0]),
        'slices_with_lung': len(all_lung_slices), 'slices_run': len(zs),
        'seconds_measured_on_slices_run': measured, 'seconds_measured_total': measured_total,
        'scaled_to_all_lung_slices': scale != 1.0,
        'detections_per_slice_mean': float(np.mean(counts)) if counts else 0.0,
        'detections_total': int(sum(counts)),
        'candidates': len(result.candidates),
        'seconds_total': total, 'seconds_by_stage': timings,
        'seconds_overhead': overhead,
        'plain_inference_detector': {'slices_timed': len(picked), 'seconds_timed': plain_picked,
                                     'seconds_all_lung_slices': plain_all},
        'overhead_vs_plain_network': overhead / plain_all,
        'profile_top': profile,
    }
    (args.out / 'bench_infer.json').write_text(json.dumps(report, indent=1) + '\n')
    print(json.dumps({k: v for k, v in report.items() if k != 'profile_top'}, indent=1))
    print('\n| stage | seconds |\n|---|---|')
    for stage, seconds in timings.items():
        print(f'| {stage} | {seconds:.2f} |')
    print(f'| **total** | **{total:.2f}** |')
    key, label = PROFILE_CLOCK[cuda]
    print(f'\n| op | calls | {label} (s) | share |\n|---|---|---|---|')
    for row in profile:
        print(f"| `{row['name']}` | {row['calls']} | {row[f'{key}_s']:.3f} | "
              f"{100 * row[f'{key}_share']:.1f}% |")
    return 0


if __name__ == '__main__':
    sys.exit(main())
