"""Bad input for the LUNA16 converters (issue 3, "Bad input"; acceptance 5).

Each case: a clear message naming the file or row, the other scans still processed, no
partial file left behind, a non-zero exit only when nothing could be done or --strict.
"""
import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from data_prep import luna16_to_coco, luna16_to_patches
from data_prep import make_synthetic_luna16 as make_synthetic_luna16_module
from data_prep.make_synthetic_luna16 import make_synthetic_luna16

REPO = Path(__file__).resolve().parents[1]
SHAPE = (20, 64, 64)


@pytest.fixture(scope='module')
def clean_set(tmp_path_factory):
    root = tmp_path_factory.mktemp('bad_input_src')
    scans = make_synthetic_luna16(root, num_scans=5, seed=7, shape=SHAPE)
    return root, scans


@pytest.fixture
def damaged(clean_set, tmp_path):
    """A copy with one scan of each kind of damage and bad CSV rows; returns (root, facts)."""
    src, scans = clean_set
    root = tmp_path / 'luna'
    shutil.copytree(src, root)
    subset = root / 'subset0'
    uids = [s.seriesuid for s in scans]
    bad = uids[1:4]
    (subset / f'{bad[0]}.raw').unlink()                                    # missing .raw
    raw = subset / f'{bad[1]}.raw'
    raw.write_bytes(raw.read_bytes()[:1000])                               # truncated .raw
    (subset / f'{bad[2]}.mhd').write_text('NDims = 3\nDimSize = 64 64\n')  # unreadable header
    good = scans[0]
    assert good.nodules
    csv_path = root / 'annotations.csv'
    lines = csv_path.read_text().splitlines()
    header, body = lines[0], lines[1:]
    extra = [
        '1.2.3.404,10.0,20.0,30.0,5.0',                                   # no such scan
        f'{good.seriesuid},99999.0,0.0,0.0,6.0',                          # centre outside
        f'{good.seriesuid},1.0,2.0,3.0,nan',                              # NaN diameter
        f'{good.seriesuid},1.0,2.0,3.0,-4.0',                             # negative diameter
        f'{good.seriesuid},1.0,2.0',                                      # too few fields
        f'{good.seriesuid},abc,2.0,3.0,5.0',                              # not a number
        '../../etc/passwd,1.0,2.0,3.0,5.0',                               # path separators
        'subset0/evil,1.0,2.0,3.0,5.0',
    ]
    csv_path.write_text('\n'.join([header, *body, *extra]) + '\n')
    first_extra = len(body) + 2  # 1-based line number of the first extra row
    facts = {'bad': bad, 'good': good.seriesuid, 'line': {
        'missing_scan': first_extra, 'outside': first_extra + 1, 'nan': first_extra + 2,
        'negative': first_extra + 3, 'fields': first_extra + 4, 'number': first_extra + 5,
        'dotdot': first_extra + 6, 'slash': first_extra + 7}}
    return root, facts


def _args(root: Path, out: Path, *extra: str) -> list[str]:
    return ['--luna-root', str(root), '--annotations', str(root / 'annotations.csv'),
            '--out', str(out), *extra]


def _check_messages(problems: list[str], skipped: dict, facts: dict, root: Path) -> None:
    bad, line = facts['bad'], facts['line']
    text = '\n'.join(problems)
    assert f'{bad[0]}.raw is missing' in skipped[bad[0]]
    assert f'{bad[1]}.raw: truncated' in skipped[bad[1]]
    assert f'{bad[2]}.mhd: header has no ElementType' in skipped[bad[2]]
    assert f'seriesuid 1.2.3.404 (line {line["missing_scan"]}) has no scan' in text
    assert f'annotations line {line["outside"]}: nodule centre (99999.0, 0.0, 0.0)' in text
    assert f'line {line["nan"]}: diameter_mm is not a finite number: \'nan\'' in text
    assert f'line {line["negative"]}: diameter_mm must be positive, got -4.0' in text
    assert f'line {line["fields"]}: expected 5 fields, got 3' in text
    assert f'line {line["number"]}: coordX is not a finite number: \'abc\'' in text
    assert f'line {line["dotdot"]}: seriesuid \'../../etc/passwd\' contains a path separator' in text
    assert f'line {line["slash"]}: seriesuid \'subset0/evil\' contains a path separator' in text


def test_coco_bad_input_messages_other_scans_no_partial_files(damaged, tmp_path, caplog):
    root, facts = damaged
    out = tmp_path / 'coco'
    caplog.set_level(logging.WARNING, logger='data_prep')
    assert luna16_to_coco.main(_args(root, out)) == 0
    summary = json.loads((out / 'summary.json').read_text())
    _check_messages(summary['problems'], summary['skipped_scans'], facts, root)
    assert summary['counts']['scans_processed'] == 2  # the two good scans
    # warnings went through logging, naming the rows
    assert f'line {facts["line"]["nan"]}' in caplog.text
    bad = facts['bad']
    produced = [p.name for p in out.rglob('*') if p.is_file()]
    assert not any(uid in name for uid in bad for name in produced)
    assert not any(name.endswith('.tmp') for name in produced)
    assert not (tmp_path / 'etc').exists() and not list(out.rglob('evil*'))
    images = [im for s in ('train', 'val', 'test') for im in
              json.loads((out / 'annotations' / f'instances_{s}.json').read_text())['images']]
    assert any(im['seriesuid'] == facts['good'] for im in images)
    # --strict turns the same problems into a non-zero exit
    assert luna16_to_coco.main(_args(root, tmp_path / 'coco_strict', '--strict')) == 1


def test_patches_bad_input_messages_other_scans(damaged, tmp_path):
    root, facts = damaged
    out = tmp_path / 'patches'
    assert luna16_to_patches.main(_args(root, out, '--counts', '40', '20', '20')) == 0
    summary = json.loads((out / 'summary.json').read_text())
    _check_messages(summary['problems'], summary['skipped_scans'], facts, root)
    produced = [p.name for p in out.rglob('*') if p.is_file()]
    assert not any(uid in name for uid in facts['bad'] for name in produced)
    assert not any(name.endswith('.tmp') for name in produced)
    assert any(facts['good'] in name for name in produced)


def test_nothing_could_be_done_exits_non_zero(clean_set, tmp_path):
    src, scans = clean_set
    root = tmp_path / 'luna'
    (root / 'subset0').mkdir(parents=True)
    shutil.copy(src / 'annotations.csv', root / 'annotations.csv')
    for scan in scans[:2]:  # two scans, both with a truncated .raw
        shutil.copy(src / 'subset0' / f'{scan.seriesuid}.mhd', root / 'subset0')
        (root / 'subset0' / f'{scan.seriesuid}.raw').write_bytes(b'\0' * 10)
    assert luna16_to_coco.main(_args(root, tmp_path / 'out')) == 1
    assert luna16_to_patches.main(_args(root, tmp_path / 'out_p')) == 1
    summary = json.loads((tmp_path / 'out' / 'summary.json').read_text())
    assert len(summary['skipped_scans']) == 2


def test_unusable_csv_header_or_missing_root(clean_set, tmp_path, caplog):
    src, _ = clean_set
    bad_csv = tmp_path / 'annotations.csv'
    bad_csv.write_text('uid,x,y,z,d\n1,2,3,4,5\n')
    args = ['--luna-root', str(src), '--annotations', str(bad_csv), '--out', str(tmp_path / 'o')]
    assert luna16_to_coco.main(args) == 1
    assert f'{bad_csv}: header must be seriesuid,coordX,coordY,coordZ,diameter_mm' in caplog.text
    args = ['--luna-root', str(tmp_path / 'nowhere'), '--annotations', str(src / 'annotations.csv'),
            '--out', str(tmp_path / 'o2')]
    assert luna16_to_coco.main(args) == 1
    assert 'nowhere is not a directory' in caplog.text


def test_a_scan_that_fails_halfway_leaves_no_files(clean_set, tmp_path, monkeypatch):
    src, scans = clean_set
    calls = {'n': 0}
    real = luna16_to_coco.encode_png

    def flaky(image):
        calls['n'] += 1
        if calls['n'] == 2:  # the second slice of the first scan with nodules
            raise OSError('disk full (simulated)')
        return real(image)

    monkeypatch.setattr(luna16_to_coco, 'encode_png', flaky)
    out = tmp_path / 'coco'
    assert luna16_to_coco.main(_args(src, out)) == 0
    summary = json.loads((out / 'summary.json').read_text())
    (failed, reason), = summary['skipped_scans'].items()
    assert 'disk full (simulated)' in reason
    produced = [p.name for p in out.rglob('*') if p.is_file()]
    assert not any(failed in name for name in produced)
    assert not any(name.endswith('.tmp') for name in produced)


@pytest.mark.parametrize('module', [make_synthetic_luna16_module, luna16_to_coco, luna16_to_patches])
def test_every_script_has_help(module, capsys):
    with pytest.raises(SystemExit) as info:
        module.parse_args(['--help'])
    assert info.value.code == 0
    assert '--out' in capsys.readouterr().out


def test_script_runs_from_the_repo_root_with_workers(clean_set, tmp_path):
    """The real command line (sys.path set up by the script itself), 2 worker processes."""
    src, _ = clean_set
    out = tmp_path / 'coco'
    result = subprocess.run([sys.executable, 'data_prep/luna16_to_coco.py', *_args(src, out),
                             '--workers', '2'], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert 'luna16_to_coco' in result.stderr and 'scans_processed: 5' in result.stderr
    assert (out / 'annotations' / 'instances_train.json').is_file()


def test_bad_arguments_exit_2_naming_them(capsys):
    with pytest.raises(SystemExit) as info:
        luna16_to_coco.parse_args(['--luna-root', 'x'])
    assert info.value.code == 2
    assert 'required: --annotations, --out' in capsys.readouterr().err
    with pytest.raises(SystemExit):
        luna16_to_patches.parse_args(['--luna-root', 'x', '--annotations', 'a', '--out', 'o',
                                      '--patch', '2'])
    assert '--patch >= 3' in capsys.readouterr().err
