#!/usr/bin/env python
"""LUNA16 -> 50x50 nodule / normal patches for the backbone comparison (paper, III-B).

* **Positives**: on each nodule's slices (the same 3 nearest slices as the COCO export),
  blocks on a ``--stride`` grid anchored at the pixel nearest the nodule centre, kept
  when the block's centre pixel ``[P//2, P//2]`` (``[25, 25]`` for 50x50) is nodule, so
  every nodule gives at least one. Each is expanded ``--expand`` times (the original plus
  flips/rotations of the 8 dihedral symmetries combined with shifts of up to
  ``--max-shift`` px) and every variant still has a nodule pixel at its centre: the
  transforms act on an odd-sized window around the centre pixel, which they leave in
  place, and a shift is used only when its new centre pixel is nodule.
* **Negatives**: non-overlapping blocks of a ``P``-pixel grid, at least
  ``--min-lung-fraction`` lung and without any nodule pixel (of any nodule, however
  small its cross-section), from the nodule slices and ``--neg-slices`` other lung
  slices of every scan, scans without nodules included. With ``--excluded``, a block on
  an excluded finding is not a negative either: LUNA16 scores those as neither nodule nor
  normal (its list holds nodules under 3 mm and lesions not all readers called nodules).
* Per split, ``--counts`` is the total number of patches, half of each class: 1:1
  exactly (fewer of both when either class runs short, with a warning).
* The split is the slice export's (``--splits OUT_COCO/splits.csv``), or computed the
  same way from ``--split``/``--split-seed``.

Images are windowed like the COCO slices ([-1024, 800] HU -> 8-bit), masked by the same
``--lung-mask-mode`` as the slices the detector is trained on (``blank``: the outside of
the lungs set to 0; ``filter``: kept; ``--no-lung-mask`` is the old name of ``filter``),
recorded in ``OUT/info.json``. Output, readable by mmpretrain's ``CustomDataset``
(classes from folder names)::

    OUT/{train,val,test}/{nodule,normal}/*.png   50x50 single-channel 8-bit PNGs
    OUT/manifest.csv     split,label,file,seriesuid,z_index,row,col,transform
                         (row, col: the slice pixel at the patch centre)
    OUT/splits.csv, OUT/summary.json, OUT/info.json  {"lung_mask_mode": ...}

Resumable: the per-scan candidates are cached in ``OUT/.scans/`` (``.npz`` + a ``.json``
record written last); selection and PNG writing are redone on every run.

``data_prep/luna16_prepare.py`` runs the slice and the patch export in one pass (each scan
read and its lung mask made once; the same outputs).

Example::

    python data_prep/luna16_to_patches.py --luna-root data/LUNA16 \\
        --annotations data/LUNA16/annotations.csv --out data/luna16_patches \\
        --splits data/luna16_coco/splits.csv --workers 2
"""
from __future__ import annotations

import argparse
import csv
import io
import logging
import math
import re
import sys
import time
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

if __package__ in (None, ''):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from data_prep.common import (SPLITS, LunaInputs, RunSummary, ScanJobBase, ScanSource,
                              add_excluded_arg, add_input_args, add_lung_mask_args, add_run_args,
                              add_split_args, atomic_write_bytes, atomic_write_json,
                              atomic_write_text, encode_png, load_inputs, process_scans,
                              read_excluded, resolve_lung_mask_mode, run_cli, splits_for_inputs,
                              write_splits_csv)
from projects.lung_nodule.ct import (LocatedNodule, NoduleAnnotation, ScanGeometry,
                                     ScanReadError, locate_nodules, nodule_masks_on_slice,
                                     select_nodule_slices, slice_to_uint8)
from projects.lung_nodule.ct.slice_image import DEFAULT_LUNG_MASK_MODE

__all__ = ['CLASSES', 'EXCLUDED_EFFECT', 'PatchOptions', 'PatchScanJob', 'add_patch_options',
           'check_patch_options', 'collect_scan_patches', 'convert', 'dihedral', 'main',
           'parse_args', 'patch_jobs', 'patch_options', 'start_patch_output', 'write_patches']

logger = logging.getLogger('data_prep')
CLASSES = ('nodule', 'normal')
EXCLUDED_EFFECT = 'no normal patch is drawn on one'
RECORD_VERSION = 2  # 2: lung mask with per-lung convex hull; lung-mask modes
_PATCH_NAME = re.compile(r'^.+_z\d{4,}_r\d+_c\d+(_t\d)?\.png$')


@dataclass(frozen=True)
class PatchOptions:
    """Options that shape the per-scan candidates (part of the resume fingerprint)."""

    patch: int = 50
    stride: int = 10
    max_shift: int = 3
    slices_per_nodule: int = 3
    neg_slices: int = 8
    min_lung_fraction: float = 0.5
    lung_mask_mode: str = DEFAULT_LUNG_MASK_MODE
    seed: int = 0


@dataclass(frozen=True)
class PatchScanJob(ScanJobBase):
    """One scan to collect candidates from."""

    negative_quota: int
    options: PatchOptions
    excluded: tuple[NoduleAnnotation, ...] = ()  # no negative block on these

    def fingerprint(self) -> str:
        """Hash of everything the scan's candidates depend on."""
        # the excluded findings only when there are some: exports made before the
        # option existed stay valid
        extra = ({'excluded': [(n.coord_xyz, n.diameter_mm) for n in self.excluded]}
                 if self.excluded else {})
        return self.input_fingerprint(version=RECORD_VERSION, quota=self.negative_quota,
                                      options=asdict(self.options), **extra)

    @property
    def arrays_path(self) -> Path:
        """The scan's candidate arrays."""
        return self.out_dir / '.scans' / f'{self.seriesuid}.npz'

    def outputs_exist(self, record: dict[str, Any]) -> bool:
        """Whether the candidate arrays of a finished scan are still there."""
        return self.arrays_path.is_file()


def dihedral(array: np.ndarray, t: int) -> np.ndarray:
    """One of the 8 rotations/flips of a square array (``t`` in 0..7; 0 = identity).

    ``t % 4`` quarter turns, then a left-right flip when ``t >= 4``. On an odd-sized
    array every one of them leaves the centre pixel in place.
    """
    out = np.rot90(array, t % 4)
    return np.fliplr(out) if t >= 4 else out


def _crop(image: np.ndarray, row: int, col: int, half: int) -> np.ndarray:
    """``(2*half+1)`` square centred on ``(row, col)``, zero-padded outside the image."""
    size = 2 * half + 1
    out = np.zeros((size, size), dtype=image.dtype)
    r0, c0 = row - half, col - half
    rs, cs = max(r0, 0), max(c0, 0)
    re_, ce = min(r0 + size, image.shape[0]), min(c0 + size, image.shape[1])
    if rs < re_ and cs < ce:
        out[rs - r0:re_ - r0, cs - c0:ce - c0] = image[rs:re_, cs:ce]
    return out


def _block_sums(mask: np.ndarray, r0: int, c0: int, nr: int, nc: int, p: int) -> np.ndarray:
    """Set pixels of each ``p x p`` block of a grid starting at ``(r0, c0)``: int ``(nr, nc)``."""
    window = mask[r0:r0 + nr * p, c0:c0 + nc * p]
    return window.reshape(nr, p, nc, p).sum(axis=(1, 3))


def _blocks_clear_of(findings: Sequence[LocatedNodule], z: int, geometry: ScanGeometry,
                     grid: tuple[int, int, int, int, int]) -> np.ndarray:
    """Blocks of ``grid`` (the arguments of :func:`_block_sums` after the mask) without a
    pixel of ``findings`` on slice ``z``: bool ``(nr, nc)``."""
    cut = nodule_masks_on_slice(findings, z, geometry)
    if not cut:
        return np.ones(grid[2:4], dtype=bool)
    return _block_sums(np.logical_or.reduce([m for _, m in cut]), *grid) == 0


def _uid_seed(seed: int, uid: str) -> list[int]:
    return [seed, zlib.crc32(uid.encode())]


def collect_scan_patches(job: PatchScanJob, source: ScanSource | None = None) -> dict[str, Any]:
    """Collect a scan's positive contexts and negative blocks; cache them in ``OUT/.scans``.

    Never raises for bad input: a failed scan is returned with ``status='failed'``.

    Args:
        job: The scan and where its candidates go.
        source: The scan as read, with its lung mask, when another export of the same
            pass shares them (see :class:`data_prep.common.ScanSource`); else read here.
    """
    opts = job.options
    half = opts.patch // 2
    context_half = half + opts.max_shift
    try:
        job.record_path.unlink(missing_ok=True)
        source = source or ScanSource(job.mhd_path)
        scan = source.scan
        geometry = scan.geometry
        located, problems = locate_nodules(geometry, job.nodules, job.mhd_path)
        located_excluded, excluded_problems = locate_nodules(
            geometry, job.excluded, job.mhd_path, source='annotations_excluded')
        problems += excluded_problems
        num_slices, rows, cols = geometry.shape_zyx
        lungs = source.lungs
        nodule_slices = select_nodule_slices(located, num_slices, opts.slices_per_nodule)
        images: dict[int, np.ndarray] = {}

        def image_of(z: int) -> np.ndarray:
            if z not in images:
                images[z] = slice_to_uint8(scan, z, lungs, mode=opts.lung_mask_mode)
            return images[z]

        # Positives.
        pos_ctx, pos_mask, pos_meta = [], [], []
        given = set()
        for z in nodule_slices:
            cut = nodule_masks_on_slice(located, z, geometry)
            if not cut:
                continue
            union = np.logical_or.reduce([m for _, m in cut])
            seen: set[tuple[int, int]] = set()
            for nodule, mask in cut:
                cx, cy = nodule.centre_index_xyz[:2]
                r0, c0 = int(math.floor(cy + 0.5)), int(math.floor(cx + 0.5))
                ys, xs = np.nonzero(mask)
                reach = max(abs(ys - r0).max(), abs(xs - c0).max()) // opts.stride + 1
                for i in range(-reach, reach + 1):
                    for j in range(-reach, reach + 1):
                        r, c = r0 + i * opts.stride, c0 + j * opts.stride
                        if not (0 <= r < rows and 0 <= c < cols) or not union[r, c] or (r, c) in seen:
                            continue
                        seen.add((r, c))
                        if mask[r, c]:
                            given.add(nodule.annotation.nodule_id)
                        pos_ctx.append(_crop(image_of(z), r, c, context_half))
                        pos_mask.append(_crop(union, r, c, context_half))
                        pos_meta.append((z, r, c))
        for nodule in located:
            if nodule.annotation.nodule_id not in given:
                problems.append(f'annotations line {nodule.annotation.line}: nodule '
                                f'{nodule.annotation.nodule_id} gives no positive patch (no '
                                f'nodule pixel at a grid point of its slices)')
        # Negatives: the nodule slices and other lung slices.
        rng = np.random.default_rng(_uid_seed(opts.seed, job.seriesuid))
        area = lungs.coarse_area_mm2()
        lung_slices = [z for z in np.flatnonzero(area >= 0.25 * area.max()) if z not in nodule_slices] \
            if area.max() > 0 else []
        others = sorted(rng.choice(lung_slices, size=min(opts.neg_slices, len(lung_slices)),
                                   replace=False).tolist()) if lung_slices else []
        p = opts.patch
        candidates, on_excluded = [], 0
        for z in sorted(set(nodule_slices) | set(others)):
            # A fresh grid offset per slice: blocks of one slice never overlap, and
            # different slices sample different positions.
            off_r, off_c = (int(v) for v in rng.integers(0, p, size=2))
            lung = lungs.slice(z)
            # All blocks of the grid at once (row-major order, as a loop over rows then
            # columns would give): lung fraction = lung pixels / block pixels, in float64,
            # as ``block.mean()`` computes it.
            grid_r, grid_c = range(off_r, rows - p + 1, p), range(off_c, cols - p + 1, p)
            if not grid_r or not grid_c:
                continue
            grid = (off_r, off_c, len(grid_r), len(grid_c), p)
            keep = _block_sums(lung, *grid) / (p * p) >= opts.min_lung_fraction
            keep &= _blocks_clear_of(located, z, geometry, grid)
            clear = _blocks_clear_of(located_excluded, z, geometry, grid)
            on_excluded += int((keep & ~clear).sum())
            keep &= clear
            candidates += [(z, grid_r[i], grid_c[j]) for i, j in np.argwhere(keep).tolist()]
        take = rng.permutation(len(candidates))[:job.negative_quota]
        neg = [candidates[i] for i in sorted(take)]
        neg_img = [image_of(z)[r:r + p, c:c + p] for z, r, c in neg]
        arrays = {
            'pos_ctx': np.array(pos_ctx, dtype=np.uint8).reshape(-1, 2 * context_half + 1, 2 * context_half + 1),
            'pos_mask': np.array(pos_mask, dtype=bool).reshape(-1, 2 * context_half + 1, 2 * context_half + 1),
            'pos_meta': np.array(pos_meta, dtype=np.int32).reshape(-1, 3),
            'neg_img': np.array(neg_img, dtype=np.uint8).reshape(-1, p, p),
            'neg_meta': np.array([(z, r + half, c + half) for z, r, c in neg], dtype=np.int32).reshape(-1, 3),
        }
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        atomic_write_bytes(job.arrays_path, buffer.getvalue())
        counts = {'nodules': len(job.nodules), 'nodules_located': len(located),
                  'nodules_outside_volume': len(job.nodules) - len(located),
                  'positive_bases': len(pos_meta), 'negative_candidates': len(candidates),
                  'negative_blocks_on_excluded': on_excluded,
                  'negatives_kept': len(neg), 'nodules_without_positive': len(located) - len(given)}
        record = {'fingerprint': job.fingerprint(), 'seriesuid': job.seriesuid,
                  'counts': counts, 'problems': problems}
        atomic_write_json(job.record_path, record)
        return {'seriesuid': job.seriesuid, 'status': 'done', 'record': record}
    except (ScanReadError, ValueError, MemoryError) as exc:
        reason = str(exc)
    except Exception as exc:  # one bad scan must not stop the run
        reason = f'{type(exc).__name__}: {exc}'
    job.arrays_path.unlink(missing_ok=True)
    return {'seriesuid': job.seriesuid, 'status': 'failed', 'reason': reason}


def _variants(mask_ctx: np.ndarray, expand: int, max_shift: int,
              rng: np.random.Generator) -> list[tuple[int, int, int]]:
    """``expand`` distinct ``(t, dy, dx)`` whose centre pixel is nodule; identity first."""
    centre = mask_ctx.shape[0] // 2
    valid = [(t, dy, dx) for t in range(8) for dy in range(-max_shift, max_shift + 1)
             for dx in range(-max_shift, max_shift + 1)
             if (t, dy, dx) != (0, 0, 0) and mask_ctx[centre + dy, centre + dx]]
    picked = [valid[i] for i in rng.permutation(len(valid))[:max(expand - 1, 0)]]
    return [(0, 0, 0)] + picked


def _variant_patch(ctx: np.ndarray, t: int, dy: int, dx: int, patch: int) -> np.ndarray:
    """The ``patch``-sized variant ``(t, dy, dx)`` of a positive context crop."""
    half = patch // 2
    centre = ctx.shape[0] // 2
    window = ctx[centre + dy - half:centre + dy + half + 1, centre + dx - half:centre + dx + half + 1]
    return np.ascontiguousarray(dihedral(window, t)[:patch, :patch])


def _write_split(out_dir: Path, split: str, scans: list[str], opts: PatchOptions, expand: int,
                 count: int, summary: RunSummary, manifest: list[list]) -> set[Path]:
    """Select 1:1 patches of one split and write them; returns the files written."""
    rng = np.random.default_rng([opts.seed, SPLITS.index(split), 7])
    positives, negatives = [], []  # (uid, index, variant)
    data = {}
    for uid in scans:
        with np.load(out_dir / '.scans' / f'{uid}.npz') as arrays:
            data[uid] = {k: arrays[k] for k in arrays.files}
        vrng = np.random.default_rng(_uid_seed(opts.seed + 1, uid))
        for i, mask_ctx in enumerate(data[uid]['pos_mask']):
            for variant in _variants(mask_ctx, expand, opts.max_shift, vrng):
                positives.append((uid, i, variant))
        negatives += [(uid, i, None) for i in range(len(data[uid]['neg_img']))]
    per_class = min(count // 2, len(positives), len(negatives))
    if per_class < count // 2:
        summary.warn(f'{split}: asked for {count // 2} patches per class, only {per_class} '
                     f'(positives available {len(positives)}, negatives {len(negatives)})')
    written: set[Path] = set()
    for label, pool in (('nodule', positives), ('normal', negatives)):
        chosen = sorted(rng.permutation(len(pool))[:per_class])
        folder = out_dir / split / label
        for k in chosen:
            uid, i, variant = pool[k]
            if variant is None:
                z, row, col = (int(v) for v in data[uid]['neg_meta'][i])
                image, t = data[uid]['neg_img'][i], None
                name = f'{uid}_z{z:04d}_r{row:03d}_c{col:03d}.png'
            else:
                t, dy, dx = variant
                z, row, col = (int(v) for v in data[uid]['pos_meta'][i])
                row, col = row + dy, col + dx
                image = _variant_patch(data[uid]['pos_ctx'][i], t, dy, dx, opts.patch)
                name = f'{uid}_z{z:04d}_r{row:03d}_c{col:03d}_t{t}.png'
            path = folder / name
            atomic_write_bytes(path, encode_png(image))
            written.add(path)
            manifest.append([split, label, f'{split}/{label}/{name}', uid, z, row, col,
                             '' if t is None else t])
        summary.counts[f'patches_{split}_{label}'] = len(chosen)
    return written


def patch_jobs(args: argparse.Namespace, inputs: LunaInputs, splits: dict[str, str],
               out_dir: Path, excluded: dict[str, list[NoduleAnnotation]] | None = None
               ) -> list[PatchScanJob]:
    """One job per scan with a split; each split's negative quota spread over its scans
    (``excluded`` from :func:`~data_prep.common.read_excluded`)."""
    options = patch_options(args)
    excluded = excluded or {}
    counts = dict(zip(SPLITS, args.counts))
    scans_per_split = {s: sum(1 for v in splits.values() if v == s) for s in SPLITS}
    jobs = []
    for uid in sorted(splits):
        split = splits[uid]
        quota = math.ceil(2.0 * (counts[split] // 2) / max(scans_per_split[split], 1))
        jobs.append(PatchScanJob(seriesuid=uid, mhd_path=inputs.scans[uid],
                                 nodules=tuple(inputs.nodules[uid]), out_dir=out_dir,
                                 negative_quota=quota, options=options,
                                 excluded=tuple(excluded.get(uid, ()))))
    return jobs


def patch_options(args: argparse.Namespace) -> PatchOptions:
    """:class:`PatchOptions` from :func:`add_patch_options`' arguments."""
    return PatchOptions(patch=args.patch, stride=args.stride, max_shift=args.max_shift,
                        neg_slices=args.neg_slices, min_lung_fraction=args.min_lung_fraction,
                        lung_mask_mode=args.lung_mask_mode, seed=args.seed)


def write_patches(args: argparse.Namespace, records: dict[str, dict], splits: dict[str, str],
                  out_dir: Path, summary: RunSummary) -> None:
    """Select the patches of every split from the scans' candidates and write them, the
    manifest; stale patches removed."""
    options = patch_options(args)
    counts = dict(zip(SPLITS, args.counts))
    manifest: list[list] = []
    written: set[Path] = set()
    start = time.perf_counter()
    for split in SPLITS:
        uids = sorted(u for u in records if splits[u] == split)
        written |= _write_split(out_dir, split, uids, options, args.expand, counts[split],
                                summary, manifest)
    summary.seconds['select_and_write'] = time.perf_counter() - start
    stale = 0
    for split in SPLITS:
        for label in CLASSES:
            folder = out_dir / split / label
            folder.mkdir(parents=True, exist_ok=True)
            for path in folder.glob('*.png'):
                if _PATCH_NAME.match(path.name) and path not in written:
                    path.unlink()
                    stale += 1
    summary.counts['stale_patches_removed'] = stale
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator='\n')
    writer.writerow(['split', 'label', 'file', 'seriesuid', 'z_index', 'row', 'col', 'transform'])
    writer.writerows(manifest)
    atomic_write_text(out_dir / 'manifest.csv', buffer.getvalue())


def start_patch_output(out_dir: Path, lung_mask_mode: str, splits: dict[str, str]) -> None:
    """Create the output folder with its ``info.json`` and ``splits.csv``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out_dir / 'info.json', {'lung_mask_mode': lung_mask_mode}, indent=1)
    write_splits_csv(out_dir / 'splits.csv', splits)


def convert(args: argparse.Namespace, summary: RunSummary) -> bool:
    """The whole patch export (arguments of :func:`parse_args`); whether anything was done."""
    luna_root, out_dir = args.luna_root, args.out
    inputs = load_inputs(luna_root, args.annotations, summary)
    if not inputs.scans:
        summary.warn(f'no <seriesuid>.mhd found under {luna_root}')
        return False
    splits = splits_for_inputs(inputs, args, summary, args.splits)
    if not splits:
        summary.warn('no scan has a split')
        return False
    start_patch_output(out_dir, args.lung_mask_mode, splits)
    jobs = patch_jobs(args, inputs, splits, out_dir, read_excluded(args.excluded, summary))
    records = process_scans(jobs, collect_scan_patches, args, summary,
                            desc='scans -> patch candidates')
    write_patches(args, records, splits, out_dir, summary)
    return bool(records)


def add_patch_options(parser: argparse.ArgumentParser) -> None:
    """The options of the patch export (besides inputs, splits and the lung mask mode)."""
    parser.add_argument('--patch', type=int, default=50, help='patch size in pixels')
    parser.add_argument('--stride', type=int, default=10, help='grid step of positive blocks')
    parser.add_argument('--expand', type=int, default=20,
                        help='variants per positive block (original + flips/rotations/shifts)')
    parser.add_argument('--max-shift', type=int, default=3, help='largest shift of a variant (px)')
    parser.add_argument('--counts', type=int, nargs=3, default=[24000, 8000, 8000],
                        metavar=('TRAIN', 'VAL', 'TEST'),
                        help='patches per split, both classes together (1:1)')
    parser.add_argument('--neg-slices', type=int, default=8,
                        help='lung slices per scan, besides the nodule slices, for negatives')
    parser.add_argument('--min-lung-fraction', type=float, default=0.5,
                        help='a negative block must be at least this fraction lung')
    parser.add_argument('--seed', type=int, default=0, help='seed of the patch sampling')


def check_patch_options(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse values of :func:`add_patch_options`' arguments that cannot work."""
    if args.patch < 3 or args.stride < 1 or args.expand < 1 or args.max_shift < 0:
        parser.error('need --patch >= 3, --stride >= 1, --expand >= 1, --max-shift >= 0')
    if min(args.counts) < 0 or not 0 <= args.min_lung_fraction <= 1:
        parser.error('--counts must be >= 0 and --min-lung-fraction in [0, 1]')


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line arguments."""
    parser = argparse.ArgumentParser(
        description='LUNA16 -> PxP nodule/normal patches (mmpretrain CustomDataset folders), '
                    '1:1 per split.', formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_input_args(parser)
    parser.add_argument('--splits', type=Path, default=None,
                        help='splits.csv of the COCO export (recommended); else the split is '
                             'computed from --split/--split-seed like luna16_to_coco.py does')
    add_split_args(parser)
    add_patch_options(parser)
    add_excluded_arg(parser, EXCLUDED_EFFECT)
    add_lung_mask_args(parser, f'blank: pixels outside the lung mask set to 0; filter: kept. Use '
                               f'the mode of the COCO export the detector is trained on (default '
                               f'{DEFAULT_LUNG_MASK_MODE})',
                       'old name of --lung-mask-mode filter')
    add_run_args(parser)
    args = parser.parse_args(argv)
    check_patch_options(parser, args)
    resolve_lung_mask_mode(parser, args)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code (see ``--strict``)."""
    return run_cli(convert, parse_args(argv), 'luna16_to_patches')

if __name__ == '__main__':
    sys.exit(main())
