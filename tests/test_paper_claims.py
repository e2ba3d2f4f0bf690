"""tools/experiments/paper_claims.py at toy size, and the pieces its tables are made of."""
from __future__ import annotations

import json
import pickle
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from projects.lung_nodule.evaluation.false_positives import count_false_positives
from projects.lung_nodule.experiments.table import format_figure, replace_section

REPO_ROOT = Path(__file__).resolve().parents[1]
FIGURE_LABELS = ('COCO segm AP50', 'COCO segm AP', 'Matterport mAP@0.5', 'nodule Dice',
                 'CPM (whole scans)', 'FP per test slice')


def _rle(mask: np.ndarray) -> dict:
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {'size': rle['size'], 'counts': rle['counts'].decode()}


def _square(top: int, left: int, size: int = 6, shape=(32, 32)) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    mask[top:top + size, left:left + size] = True
    return mask


def test_false_positives_match_one_to_one_by_score(tmp_path):
    """Slice 1: nodule found twice (one TP, one duplicate FP) + a low score ignored;
    slice 2: one detection far from its nodule (FP, nodule missed)."""
    coco = {'images': [{'id': 1, 'height': 32, 'width': 32}, {'id': 2, 'height': 32, 'width': 32}],
            'annotations': [{'id': 1, 'image_id': 1, 'segmentation': _rle(_square(4, 4))},
                            {'id': 2, 'image_id': 2, 'segmentation': _rle(_square(20, 20))}]}
    (tmp_path / 'coco.json').write_text(json.dumps(coco))
    enc = lambda m: mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))  # noqa: E731
    preds = [
        {'img_id': 1, 'pred_instances': {
            'scores': np.array([0.6, 0.9, 0.3]),
            'masks': [enc(_square(4, 5)), enc(_square(4, 4)), enc(_square(10, 10))]}},
        {'img_id': 2, 'pred_instances': {'scores': np.array([0.8]),
                                         'masks': [enc(_square(2, 2))]}},
    ]
    with open(tmp_path / 'pred.pkl', 'wb') as handle:
        pickle.dump(preds, handle)
    counts = count_false_positives(tmp_path / 'coco.json', tmp_path / 'pred.pkl')
    assert (counts.slices, counts.detections, counts.true_positives, counts.false_positives) \
        == (2, 3, 1, 2)
    assert counts.fp_per_slice == 1.0 and counts.recall == 0.5
    # both 6x6 nodules (36 px) fall in the 20-50 px band: one found, one missed
    bands = {(b.low, b.high): (b.ground_truth, b.found) for b in counts.by_area}
    assert bands.pop((20, 50)) == (2, 1) and set(bands.values()) == {(0, 0)}
    assert (300, None) in bands
    json.dumps(counts.as_dict(), allow_nan=False)  # strict JSON: the open band is None
    # at any score the 0.3 detection counts too, but it lies on no nodule
    every = count_false_positives(tmp_path / 'coco.json', tmp_path / 'pred.pkl', score_thr=0.0)
    assert (every.detections, every.true_positives) == (4, 1)
    with open(tmp_path / 'pred.pkl', 'wb') as handle:
        pickle.dump(preds[:1], handle)
    with pytest.raises(ValueError, match='no prediction for 1 image'):
        count_false_positives(tmp_path / 'coco.json', tmp_path / 'pred.pkl')



def test_false_positives_ignore_detections_on_excluded_findings(tmp_path):
    """A detection inside an ``iscrowd`` region (an excluded finding) is not a false
    positive and no ground truth; a nodule inside that region is still one."""
    region = _square(14, 14, size=12)
    coco = {'images': [{'id': 1, 'height': 32, 'width': 32}],
            'annotations': [{'id': 1, 'image_id': 1, 'segmentation': _rle(_square(2, 2))},
                            {'id': 2, 'image_id': 1, 'segmentation': _rle(region), 'iscrowd': 1},
                            {'id': 3, 'image_id': 1, 'segmentation': _rle(_square(20, 20))}]}
    (tmp_path / 'coco.json').write_text(json.dumps(coco))
    enc = lambda m: mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))  # noqa: E731
    # on the region (ignored), on nothing (FP), the nodule inside the region (TP)
    preds = [{'img_id': 1, 'pred_instances': {
        'scores': np.array([0.9, 0.8, 0.7]),
        'masks': [enc(_square(15, 15)), enc(_square(2, 24)), enc(_square(20, 20))]}}]
    with open(tmp_path / 'pred.pkl', 'wb') as handle:
        pickle.dump(preds, handle)
    counts = count_false_positives(tmp_path / 'coco.json', tmp_path / 'pred.pkl')
    assert (counts.ground_truth, counts.detections, counts.true_positives,
            counts.false_positives) == (2, 2, 1, 1)

def test_replace_section_keeps_the_rest(tmp_path):
    path = tmp_path / 'R.md'
    path.write_text('# Results\n\nother section\n')
    replace_section(path, 'exp', 'first')
    replace_section(path, 'exp', 'second')
    text = path.read_text()
    assert text.startswith('# Results\n\nother section\n')
    assert text.count('<!-- exp:begin -->') == 1 and 'second' in text and 'first' not in text
    path.write_text(text.replace('<!-- exp:end -->', ''))
    with pytest.raises(ValueError, match='markers of section "exp" are broken'):
        replace_section(path, 'exp', 'third')


def _table_rows(section: str, header_start: str) -> list[list[str]]:
    lines = section.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header_start))
    rows = []
    for line in lines[start:]:
        if not line.startswith('|'):
            break
        rows.append([cell.strip() for cell in line.strip('|').split('|')])
    return rows


@pytest.mark.slow
def test_paper_claims_toy_table_traces_to_run_metrics(tmp_path):
    results = tmp_path / 'RESULTS.md'
    results.write_text('# Benchmarks\n\nkept as is\n')
    out = tmp_path / 'exp'
    cmd = [sys.executable, 'tools/experiments/paper_claims.py', '--toy', '--seeds', '1',
           '--arms', 'staged_patch', 'all_patch', '--no-cpm', '--out', str(out),
           '--results', str(results)]
    proc = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    text = results.read_text()
    assert text.startswith('# Benchmarks\n\nkept as is\n')
    section = text.split('<!-- paper-claims:begin -->')[1].split('<!-- paper-claims:end -->')[0]
    assert 'Status: complete' in section and 'paper_claims.py --toy' in section

    summary = _table_rows(section, '| figure |')
    assert summary[0] == ['figure', 'staged_patch', 'all_patch']
    assert [row[0] for row in summary[2:]] == list(FIGURE_LABELS)
    per_run = _table_rows(section, '| arm | seed |')
    assert per_run[0] == ['arm', 'seed', *FIGURE_LABELS, 'run dir']
    assert sorted(row[0] for row in per_run[2:]) == ['all_patch', 'staged_patch']
    for row in per_run[2:]:
        run_dir = Path(row[-1].strip('`'))
        assert run_dir == out.resolve() / 'runs' / row[0] / 'seed0'
        metrics = json.loads((run_dir / 'metrics.json').read_text())
        keys = ('segm_ap50', 'segm_ap', 'matterport_map50', 'dice', 'cpm', 'fp_per_slice')
        assert row[2:-1] == [format_figure(metrics['figures'][k]) for k in keys]
        # the figures are the tools' own files, not recomputed
        test_metrics = json.loads((run_dir / 'test/test_metrics.json').read_text())
        assert metrics['figures']['segm_ap50'] == test_metrics['coco/segm_mAP_50']
        assert metrics['figures']['cpm'] is None and 'no-cpm' in metrics['missing']['cpm']
        # the summary cell of a single seed lists that seed's value
        cell = summary[2][summary[0].index(row[0])]
        assert f's0: {row[2]}' in cell
        # validation rows carry the training step (the curves' x axis)
        scalars = Path(metrics['sources']['scalars']).read_text().splitlines()
        steps = [json.loads(line)['step'] for line in scalars
                 if 'coco/segm_mAP_50' in json.loads(line)]
        assert steps == [3, 6]
    png = re.search(r'!\[validation curves\]\(([^)]+)\)', section).group(1)
    assert (results.parent / png).stat().st_size > 10_000

    # resumable: a second invocation trains nothing and rewrites the one section
    again = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count('metrics.json exists, skipped') == 2
    assert 'tools/train.py' not in again.stdout
    assert results.read_text().count('<!-- paper-claims:begin -->') == 1
