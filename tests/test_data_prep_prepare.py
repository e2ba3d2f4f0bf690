"""data_prep/luna16_prepare.py: the one-pass export equals the two commands (issue 9)."""
import json
from pathlib import Path

import numpy as np
import pytest

from data_prep import luna16_prepare, luna16_to_coco, luna16_to_patches
from data_prep.common import ScanSource
from data_prep.make_synthetic_luna16 import make_synthetic_luna16
from projects.lung_nodule.ct import ScanReadError

COUNTS = ['--counts', '60', '20', '20']


def _differences(a: Path, b: Path) -> list[str]:
    """Files that differ between two output trees (``.npz`` by array: the zip members
    carry their write time; ``summary.json`` without its timings)."""
    files_a = {p.relative_to(a) for p in a.rglob('*') if p.is_file()}
    files_b = {p.relative_to(b) for p in b.rglob('*') if p.is_file()}
    out = [f'only in one: {rel}' for rel in sorted(files_a ^ files_b)]
    for rel in sorted(files_a & files_b):
        if rel.name == 'summary.json':
            x, y = (json.loads((root / rel).read_text()) for root in (a, b))
            same = {**x, 'seconds': None} == {**y, 'seconds': None}
        elif rel.suffix == '.npz':
            with np.load(a / rel) as x, np.load(b / rel) as y:
                same = x.files == y.files and all(np.array_equal(x[k], y[k]) and x[k].dtype == y[k].dtype
                                                  for k in x.files)
        else:
            same = (a / rel).read_bytes() == (b / rel).read_bytes()
        if not same:
            out.append(str(rel))
    return out


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp('prepare')
    make_synthetic_luna16(root, num_scans=4, seed=5, shape=(24, 128, 128))
    return root


@pytest.mark.slow
@pytest.mark.parametrize('mode, excluded', [('blank', True), ('filter', False)])
def test_one_pass_equals_two_commands(data, tmp_path, mode, excluded):
    common = ['--luna-root', str(data), '--annotations', str(data / 'annotations.csv'),
              '--lung-mask-mode', mode]
    if excluded:  # ignore regions on the slices, no normal patch on an excluded finding
        common += ['--excluded', str(data / 'annotations_excluded.csv')]
    two, one = tmp_path / 'two', tmp_path / 'one'
    assert luna16_to_coco.main(common + ['--out', str(two / 'coco')]) == 0
    assert luna16_to_patches.main(common + COUNTS + ['--out', str(two / 'patches'),
                                                     '--splits', str(two / 'coco' / 'splits.csv')]) == 0
    assert luna16_prepare.main(common + COUNTS + ['--coco-out', str(one / 'coco'),
                                                  '--patches-out', str(one / 'patches'),
                                                  '--workers', '2']) == 0
    assert len(list((one / 'coco' / 'images').rglob('*.png'))) > 0
    assert len(list((one / 'patches').rglob('*.png'))) > 0
    assert _differences(two, one) == []


def test_resumes_each_export_alone(data, tmp_path):
    """A re-run redoes only the scans that either export lacks, and only that export."""
    args = ['--luna-root', str(data), '--annotations', str(data / 'annotations.csv'), *COUNTS,
            '--coco-out', str(tmp_path / 'coco'), '--patches-out', str(tmp_path / 'patches')]
    assert luna16_prepare.main(args) == 0
    records = sorted((tmp_path / 'patches' / '.scans').glob('*.json'))
    records[0].unlink()
    assert luna16_prepare.main(args) == 0
    coco = json.loads((tmp_path / 'coco' / 'summary.json').read_text())['counts']
    patches = json.loads((tmp_path / 'patches' / 'summary.json').read_text())['counts']
    assert coco['scans_resumed'] == 4 and coco['scans_processed'] == 4
    assert patches['scans_resumed'] == 3 and patches['scans_processed'] == 4
    assert records[0].is_file()


def test_same_out_folder_refused(data, tmp_path, capsys):
    with pytest.raises(SystemExit):
        luna16_prepare.parse_args(['--luna-root', str(data), '--annotations', 'a.csv',
                                   '--coco-out', str(tmp_path), '--patches-out', str(tmp_path)])
    assert 'must be different folders' in capsys.readouterr().err


def test_scan_source_reads_once_and_repeats_its_error(data, tmp_path):
    path = sorted(data.rglob('*.mhd'))[0]
    source = ScanSource(path)
    assert source.scan is source.scan and source.lungs is source.lungs
    broken = tmp_path / path.name
    broken.write_text(path.read_text())  # header without its .raw
    bad = ScanSource(broken)
    for _ in range(2):
        with pytest.raises(ScanReadError, match=broken.name):
            bad.scan
