"""data_prep/luna16_to_patches.py on synthetic LUNA16 scans (issue 3, acceptance 4)."""
import csv
import json
from collections import Counter, defaultdict
from pathlib import Path

import cv2
import numpy as np
import pytest

from data_prep import luna16_to_coco, luna16_to_patches
from data_prep.luna16_to_patches import dihedral
from data_prep.make_synthetic_luna16 import make_synthetic_luna16
from projects.lung_nodule.ct import LungMask, hu_to_uint8, read_scan

from tests.ct_reference import read_annotations_csv, sphere_mask_from_world

SPLITS = ('train', 'val', 'test')
COUNTS = (300, 100, 100)


# the hard preset holds more nodules: 6 scans had too few nodule-free lung blocks for the
# 150 negatives of the train split
NUM_SCANS = 7


@pytest.fixture(scope='module')
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp('synth_patches')
    make_synthetic_luna16(root, num_scans=NUM_SCANS, seed=21, shape=(40, 256, 256))  # lungs > 50 px
    common = ['--luna-root', str(root), '--annotations', str(root / 'annotations.csv')]
    assert luna16_to_coco.main(common + ['--out', str(root / 'coco')]) == 0
    out = root / 'patches'
    assert luna16_to_patches.main(common + ['--out', str(out), '--splits', str(root / 'coco' / 'splits.csv'),
                                            '--counts', *map(str, COUNTS), '--workers', '2']) == 0
    with open(out / 'manifest.csv', newline='') as handle:
        manifest = list(csv.DictReader(handle))
    return root, out, manifest


def _entry(root: Path, uid: str, z: int) -> dict:
    scan = read_scan(root / 'subset0' / f'{uid}.mhd')
    return {'z_index': z, **scan.geometry.as_dict()}


def test_folders_balanced_and_sized(exported):
    root, out, manifest = exported
    counts = Counter((row['split'], row['label']) for row in manifest)
    for split, total in zip(SPLITS, COUNTS):
        n_pos, n_neg = counts[(split, 'nodule')], counts[(split, 'normal')]
        assert n_pos == n_neg > 0  # 1:1 per split
        assert n_pos <= total // 2
        for label in ('nodule', 'normal'):
            files = sorted((out / split / label).glob('*.png'))
            assert len(files) == counts[(split, label)]
    assert counts[('train', 'nodule')] == COUNTS[0] // 2  # enough positives after x20
    for row in manifest[::17]:
        png = cv2.imread(str(out / row['file']), cv2.IMREAD_UNCHANGED)
        assert png.dtype == np.uint8 and png.shape == (50, 50)


def test_same_split_as_the_slices(exported):
    root, out, manifest = exported
    coco_split = dict(csv.reader(open(root / 'coco' / 'splits.csv')))
    assert (out / 'splits.csv').read_text() == (root / 'coco' / 'splits.csv').read_text()
    for row in manifest:
        assert coco_split[row['seriesuid']] == row['split']


def test_every_positive_centre_pixel_is_nodule(exported):
    """Checked against spheres computed here from the world coordinates of annotations.csv."""
    root, out, manifest = exported
    nodules = read_annotations_csv(root / 'annotations.csv')
    cache = {}
    positives = [r for r in manifest if r['label'] == 'nodule']
    transforms = Counter(r['transform'] for r in positives)
    assert len(transforms) == 8  # flips and rotations used
    for row in positives:
        uid, z, r, c = row['seriesuid'], int(row['z_index']), int(row['row']), int(row['col'])
        if (uid, z) not in cache:
            entry = _entry(root, uid, z)
            scan = read_scan(root / 'subset0' / f'{uid}.mhd')
            rows, cols = scan.array.shape[1:]
            cache[(uid, z)] = np.logical_or.reduce(
                [sphere_mask_from_world(entry, rows, cols, centre, d) for centre, d in nodules[uid]])
        assert cache[(uid, z)][r, c], row


def test_patch_pixels_are_the_transformed_slice_window(exported):
    root, out, manifest = exported
    scans = {}
    for row in manifest[::5]:
        uid, z, r, c = row['seriesuid'], int(row['z_index']), int(row['row']), int(row['col'])
        if uid not in scans:
            scan = read_scan(root / 'subset0' / f'{uid}.mhd')
            scans[uid] = (scan, LungMask(scan.array, scan.geometry.spacing_xyz))
        scan, lungs = scans[uid]
        image = hu_to_uint8(scan.array[z])
        image[~lungs.slice(z)] = 0
        padded = np.pad(image, 30)
        window = padded[r + 30 - 25:r + 30 + 26, c + 30 - 25:c + 30 + 26]  # 51x51 around the centre
        t = int(row['transform']) if row['transform'] else 0
        expected = dihedral(window, t)[:50, :50]
        png = cv2.imread(str(out / row['file']), cv2.IMREAD_UNCHANGED)
        np.testing.assert_array_equal(png, expected)


def test_negatives_are_lung_blocks_without_nodule(exported):
    root, out, manifest = exported
    nodules = read_annotations_csv(root / 'annotations.csv')
    scans, nodule_px = {}, {}
    negatives = [r for r in manifest if r['label'] == 'normal']
    blocks_of_slice = defaultdict(list)
    for row in negatives:
        uid, z, r, c = row['seriesuid'], int(row['z_index']), int(row['row']), int(row['col'])
        if uid not in scans:
            scan = read_scan(root / 'subset0' / f'{uid}.mhd')
            scans[uid] = (scan, LungMask(scan.array, scan.geometry.spacing_xyz))
        scan, lungs = scans[uid]
        if (uid, z) not in nodule_px:
            rows, cols = scan.array.shape[1:]
            entry = _entry(root, uid, z)
            nodule_px[(uid, z)] = np.logical_or.reduce(
                [np.zeros((rows, cols), bool)]
                + [sphere_mask_from_world(entry, rows, cols, centre, d) for centre, d in nodules.get(uid, [])])
        block = (slice(r - 25, r + 25), slice(c - 25, c + 25))
        assert lungs.slice(z)[block].mean() >= 0.5
        assert not nodule_px[(uid, z)][block].any()
        blocks_of_slice[(uid, z)].append((r, c))
    for blocks in blocks_of_slice.values():  # non-overlapping within a slice
        for i, (r, c) in enumerate(blocks):
            for r2, c2 in blocks[i + 1:]:
                assert max(abs(r - r2), abs(c - c2)) >= 50
    assert set(scans) - set(nodules), 'negatives must also come from scans without nodules'


def test_mmpretrain_custom_dataset_loads_the_folders(exported):
    root, out, manifest = exported
    from mmpretrain.datasets import CustomDataset
    for split in SPLITS:
        dataset = CustomDataset(data_root=str(out / split), pipeline=[])
        assert dataset.CLASSES == ('nodule', 'normal') or tuple(dataset.metainfo['classes']) == ('nodule', 'normal')
        labels = Counter(int(dataset.get_data_info(i)['gt_label']) for i in range(len(dataset)))
        assert labels[0] == labels[1] == sum(1 for r in manifest if r['split'] == split) // 2


def test_resume_reuses_candidates(exported, tmp_path):
    root, out, manifest = exported
    common = ['--luna-root', str(root), '--annotations', str(root / 'annotations.csv'),
              '--out', str(out), '--splits', str(root / 'coco' / 'splits.csv'),
              '--counts', *map(str, COUNTS)]
    assert luna16_to_patches.main(common) == 0
    summary = json.loads((out / 'summary.json').read_text())['counts']
    assert summary['scans_resumed'] == summary['scans_processed'] == NUM_SCANS
    with open(out / 'manifest.csv', newline='') as handle:
        assert list(csv.DictReader(handle)) == manifest


def _blocks_on_findings(root: Path, manifest: list[dict], findings: dict) -> int:
    """Normal patches that hold a pixel of one of ``findings`` (seriesuid -> [(centre, d)])."""
    hits = 0
    for row in manifest:
        uid = row['seriesuid']
        if row['label'] != 'normal' or uid not in findings:
            continue
        z, r, c = int(row['z_index']), int(row['row']), int(row['col'])
        entry = _entry(root, uid, z)
        rows, cols = read_scan(root / 'subset0' / f'{uid}.mhd').array.shape[1:]
        block = (slice(r - 25, r + 25), slice(c - 25, c + 25))
        hits += any(sphere_mask_from_world(entry, rows, cols, centre, d)[block].any()
                    for centre, d in findings[uid])
    return hits


def test_excluded_findings_give_no_normal_patch(exported, tmp_path):
    """``--excluded``: no normal patch on a finding LUNA16 leaves out of its scoring (a
    diameter of -1 drawn as 10 mm); without the option the synthetic masses give some; the
    nodule candidates stay as they were; a bad row is named."""
    root, out, manifest = exported
    findings = read_annotations_csv(root / 'annotations_excluded.csv')
    assert _blocks_on_findings(root, manifest, findings) > 0  # what the option prevents
    uid = next(u for u, n in sorted(read_annotations_csv(root / 'annotations.csv').items()) if n)
    centre = next(iter(read_annotations_csv(root / 'annotations.csv')[uid]))[0]
    beside = (centre[0] + 40.0, centre[1], centre[2])  # in the lung, on the nodule's slices
    excluded = tmp_path / 'annotations_excluded.csv'
    excluded.write_text((root / 'annotations_excluded.csv').read_text()
                        + f'{uid},{beside[0]},{beside[1]},{beside[2]},-1\n{uid},nan,0,0,5\n')
    out2 = tmp_path / 'patches'
    assert luna16_to_patches.main([
        '--luna-root', str(root), '--annotations', str(root / 'annotations.csv'),
        '--out', str(out2), '--splits', str(root / 'coco' / 'splits.csv'),
        '--counts', *map(str, COUNTS), '--workers', '2', '--excluded', str(excluded)]) == 0
    with open(out2 / 'manifest.csv', newline='') as handle:
        manifest2 = list(csv.DictReader(handle))
    findings.setdefault(uid, []).append((beside, 10.0))
    assert _blocks_on_findings(root, manifest2, findings) == 0
    summary = json.loads((out2 / 'summary.json').read_text())
    before = json.loads((out / 'summary.json').read_text())
    assert summary['counts']['positive_bases'] == before['counts']['positive_bases']
    assert summary['counts']['excluded_rows'] == sum(map(len, findings.values()))
    assert summary['counts']['negative_blocks_on_excluded'] > 0
    bad_line = len(excluded.read_text().splitlines())
    assert any(f'line {bad_line}' in w and 'coordinates' in w for w in summary['problems'])
