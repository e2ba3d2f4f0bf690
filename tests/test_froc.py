"""LUNA16 FROC / CPM by the official script's rules, on cases computed by hand (issue 12).

Every expected number below is worked out in the comments from the rules of
``noduleCADEvaluationLUNA16.py``; none is produced by the code under test.
"""
import math

import numpy as np
import pytest

from projects.lung_nodule.evaluation.froc import (
    FROC_POINTS, cap_candidates, evaluate_froc, roc_curve, sensitivities_at)
from projects.lung_nodule.evaluation.froc import _interval
from projects.lung_nodule.evaluation.luna16_inputs import Candidate, Finding, read_candidates

KEYS = ('0.125', '0.25', '0.5', '1', '2', '4', '8')


def nodule(uid, xyz, diameter, excluded=False, line=2):
    return Finding(uid, tuple(map(float, xyz)), float(diameter), excluded, 'annotations.csv',
                   line, line - 1, float(diameter))


def mark(uid, xyz, p, line=2):
    return Candidate(uid, tuple(map(float, xyz)), float(p), 'candidates.csv', line)


def assert_points(result, expected):
    got = [result.sensitivity[k] for k in KEYS]
    assert got == pytest.approx(expected, abs=1e-12)
    assert result.cpm == pytest.approx(sum(expected) / 7, abs=1e-12)


# ---------------------------------------------------------------- roc_curve
def test_roc_curve_ties_form_one_step():
    # sorted: 0.9 (pos) | 0.8 (neg, pos: a tie) | 0.3 (neg, neg: a tie)
    # thresholds 0.9 -> tp 1 fp 0; 0.8 -> tp 2 fp 1; 0.3 -> tp 2 fp 3; (0, 0) prepended
    fpr, tpr, thr = roc_curve(np.array([1, 0, 1, 0, 0]), np.array([0.9, 0.8, 0.8, 0.3, 0.3]))
    assert fpr.tolist() == pytest.approx([0, 0, 1 / 3, 1])
    assert tpr.tolist() == pytest.approx([0, 0.5, 1, 1])
    assert thr[0] == np.inf and thr[1:].tolist() == [0.9, 0.8, 0.3]


def test_roc_curve_drops_collinear_points():
    # thresholds .9 (tp1,fp0) .8 (tp2,fp0) .7 (tp3,fp0) .6 (tp3,fp1): (tp2, fp0) lies on the
    # segment between its neighbours and is dropped, as scikit-learn's drop_intermediate does
    fpr, tpr, thr = roc_curve(np.array([1, 1, 1, 0]), np.array([0.9, 0.8, 0.7, 0.6]))
    assert fpr.tolist() == pytest.approx([0, 0, 0, 1])
    assert tpr.tolist() == pytest.approx([0, 1 / 3, 1, 1])
    assert thr[1:].tolist() == [0.9, 0.7, 0.6]


def test_roc_curve_without_negatives_gives_nan_rates():
    fpr, tpr, _ = roc_curve(np.array([1, 1]), np.array([0.5, 0.4]))
    assert np.isnan(fpr).all() and tpr[-1] == 1


# ---------------------------------------------------------------- the 100-mark cap
def test_cap_keeps_strictly_above_the_101st_and_drops_ties_at_the_cut():
    # 99 distinct marks above 0.5, then three at 0.4: the 101st highest is 0.4, so only
    # the 99 above it stay (fewer than 100)
    probs = np.r_[0.5 + 0.001 * np.arange(1, 100), [0.4, 0.4, 0.4]]
    keep = cap_candidates(probs)
    assert keep.sum() == 99 and not keep[-3:].any()
    # 101 distinct marks: the lowest goes, 100 stay; 100 marks: all stay
    assert cap_candidates(np.arange(101.0)).tolist() == [False] + [True] * 100
    assert cap_candidates(np.zeros(100)).all()


# ---------------------------------------------------------------- the crafted case
def crafted_case():
    """Five scans exercising every rule at once (positions in mm)."""
    findings = [
        # S1: A (r = 5), B (r = 3) and an excluded finding with diameter -1 -> 10 mm
        nodule('S1', (0, 0, 0), 10, line=2), nodule('S1', (20, 0, 0), 6, line=3),
        Finding('S1', (0.0, 50.0, 0.0), 10.0, True, 'annotations_excluded.csv', 2, 1, -1.0),
        # S2: C and D overlap (r = 4 each, 5 mm apart); F is never hit
        nodule('S2', (0, 0, 0), 8, line=4), nodule('S2', (5, 0, 0), 8, line=5),
        nodule('S2', (50, 50, 50), 5, line=6),
        # S4: G, whose only hit is cut by the 100-mark cap
        nodule('S4', (0, 0, 0), 10, line=7),
    ]
    marks = [
        mark('S1', (1, 0, 0), 0.9),      # hits A
        mark('S1', (0, 2, 0), 0.6),      # hits A again: ignored (not an FP)
        mark('S1', (23, 0, 0), 0.95),    # exactly on B's radius: not a hit -> FP
        mark('S1', (0, 52, 0), 0.99),    # on the excluded finding: ignored
        mark('S1', (21, 0, 0), 0.5),     # hits B
        mark('S1', (100, 100, 100), 0.7),  # FP
        mark('S2', (2.5, 0, 0), 0.8),    # inside C and D: detects both
        mark('S2', (-100, 0, 0), 0.8),   # FP tied with the C/D hit
        mark('S2', (-200, 0, 0), 0.3),   # FP
        mark('S3', (0, 0, 0), 0.95),     # S3 has no nodule: three FPs
        mark('S3', (10, 0, 0), 0.2),
        mark('S3', (20, 0, 0), 0.15),
    ]
    # S4: 102 marks. 99 FPs at 0.011 .. 0.109, the hit on G at 0.005, an FP tied with it,
    # an FP at 0.001. The 101st highest is 0.005: only the 99 FPs stay, G is missed.
    marks += [mark('S4', (100 + i, 100, 100), 0.01 + 0.001 * (i + 1)) for i in range(99)]
    marks += [mark('S4', (1, 0, 0), 0.005), mark('S4', (-100, 0, 0), 0.005),
              mark('S4', (-200, 0, 0), 0.001)]
    # S5: no nodule, no mark, but in the list: it counts in the FP divisor (5 scans)
    return ['S1', 'S2', 'S3', 'S4', 'S5'], findings, marks


def test_crafted_case_matches_the_hand_computation():
    scans, findings, marks = crafted_case()
    result = evaluate_froc(scans, findings, marks, bootstrap_samples=0)
    # Included nodules: A B C D F G = 6. Detected: A (0.9), B (0.5), C (0.8), D (0.8).
    # False positives: S1 0.95, 0.7; S2 0.8, 0.3; S3 0.95, 0.2, 0.15; S4 99 at <= 0.109.
    # Walking down the thresholds (FP/scan = FPs / 5, sensitivity = TPs / 6):
    #   0.95: 2 FP        -> (0.4, 0)
    #   0.9 : +A          -> (0.4, 1/6)
    #   0.8 : +C +D +1 FP -> (0.6, 3/6)   one step for the tie
    #   0.7 : +1 FP       -> (0.8, 3/6)
    #   0.5 : +B          -> (0.8, 4/6)
    #   0.3 : +1 FP       -> (1.0, 4/6)
    #   0.2, 0.15, then 99 FPs -> (1.4, 4/6) ... (21.2, 4/6)
    # Read-offs: 1/8 and 1/4 lie on (0,0)-(0.4,0): 0. 1/2 lies half-way on
    # (0.4,1/6)-(0.6,3/6): 2/6. 1, 2, 4, 8: 4/6.
    expected = [0, 0, 1 / 3, 2 / 3, 2 / 3, 2 / 3, 2 / 3]
    assert_points(result, expected)
    assert result.cpm == pytest.approx(3 / 7)  # (1/3 + 4 * 2/3) / 7
    counts = result.counts
    assert counts == {
        'scans': 5, 'scans_with_nodules': 3, 'nodules': 6, 'nodules_detected': 4,
        'excluded_findings': 1,
        'candidates': 114,  # 6 + 3 + 3 + 102 + 0
        'candidates_kept': 111,  # the cap drops 3 of S4's
        'candidates_dropped_by_cap': 3,
        'false_positives': 106,  # 2 + 2 + 3 + 99
        'candidates_on_excluded': 1,
        'double_hits': 1,  # A's second hit
    }
    # the curve ends at 106 / 5 FP per scan with 4 / 6
    assert result.fps[-1] == pytest.approx(21.2) and result.sens[-1] == pytest.approx(4 / 6)
    best = {n.finding.line: n.probability for m in result.matches for n in m.nodules}
    assert best == {2: 0.9, 3: 0.5, 4: 0.8, 5: 0.8, 6: None, 7: None}


def test_each_rule_changes_the_result_when_broken():
    """Counter-checks: the crafted case really depends on the rules it claims to test."""
    scans, findings, marks = crafted_case()
    # a mark just inside B's radius (2.999 mm) instead of on it becomes B's best hit (0.95)
    # and stops being an FP: 0.95 -> 1 FP + B -> (0.2, 1/6) ...
    moved = [mark('S1', (22.999, 0, 0), 0.95) if m.coord_xyz == (23.0, 0.0, 0.0) else m
             for m in marks]
    assert evaluate_froc(scans, findings, moved, 0).sensitivity['0.125'] > 0
    # without the excluded finding, the 0.99 mark is an FP and shifts the whole start
    included = [f for f in findings if not f.excluded]
    assert evaluate_froc(scans, included, marks, 0).sensitivity['0.5'] < 1 / 3
    # without S5 the divisor is 4: 1/2 FP per scan is then (0.5, 1/6)...(0.75, 3/6)
    assert evaluate_froc(scans[:4], findings, marks, 0).sensitivity['0.5'] == pytest.approx(1 / 6)


def test_cap_changes_the_read_off():
    # 20 scans. N1 (scan 0) hit at 0.99. Scan 1: 100 FPs at 0.02 .. 0.119 and N2's only
    # hit at 0.01, the 101st highest -> cut: N2 is missed. Curve: (0,0) -> (0, 1/2) ->
    # (100/20 = 5, 1/2); every read-off 1/2 (flat past 5). Without the cap N2 would
    # reach 1 at 5 FP/scan and 8 would read 1.
    scans = [f'U{i}' for i in range(20)]
    findings = [nodule('U0', (0, 0, 0), 10), nodule('U1', (0, 0, 0), 10, line=3)]
    marks = [mark('U0', (0, 0, 0), 0.99), mark('U1', (1, 0, 0), 0.01)]
    marks += [mark('U1', (100 + i, 0, 0), 0.02 + 0.001 * i) for i in range(100)]
    result = evaluate_froc(scans, findings, marks, 0)
    assert_points(result, [0.5] * 7)
    assert result.counts['nodules_detected'] == 1
    uncapped = evaluate_froc(scans, findings, marks, 0, max_marks=1000)
    assert uncapped.sensitivity['8'] == pytest.approx(1.0)


def test_flat_past_the_last_point():
    # 3 scans, 2 nodules. An FP at 0.9 -> (1/3, 0); N1's hit at 0.5 -> (1/3, 1/2); N2 never
    # hit. The curve ends at 1/3 FP/scan: 1/8 and 1/4 read 0 (on (0,0)-(1/3,0)), 1/2 .. 8
    # read 1/2 (flat). CPM = 5 * (1/2) / 7 = 5/14.
    scans = ['a', 'b', 'c']
    findings = [nodule('a', (0, 0, 0), 10), nodule('b', (0, 0, 0), 10, line=3)]
    marks = [mark('c', (0, 0, 0), 0.9), mark('a', (1, 1, 1), 0.5)]
    result = evaluate_froc(scans, findings, marks, 0)
    assert_points(result, [0, 0, 0.5, 0.5, 0.5, 0.5, 0.5])
    assert result.cpm == pytest.approx(5 / 14)


def test_a_vertical_step_reads_its_top():
    # 4 scans, one nodule. FP at 0.9 -> (1/4, 0); the hit at 0.8 -> (1/4, 1): a vertical
    # step at exactly 1/4 FP/scan. numpy.interp (as the script uses it) reads the top: 1.
    scans = ['a', 'b', 'c', 'd']
    result = evaluate_froc(scans, [nodule('a', (0, 0, 0), 10)],
                           [mark('b', (0, 0, 0), 0.9), mark('a', (0, 0, 0), 0.8)], 0)
    assert_points(result, [0, 1, 1, 1, 1, 1, 1])


def test_no_false_positive_at_all():
    # The script's border case: every entry is a nodule -> fps = 0 everywhere; the curve
    # is (0, 0), (0, 1/2): every read-off is 1/2.
    result = evaluate_froc(['a', 'b'], [nodule('a', (0, 0, 0), 10), nodule('b', (0, 0, 0), 10)],
                           [mark('a', (0, 0, 0), 0.7)], 0)
    assert_points(result, [0.5] * 7)


def test_no_candidate_and_no_nodule():
    nothing = evaluate_froc(['a'], [nodule('a', (0, 0, 0), 10)], [], 0)
    assert_points(nothing, [0.0] * 7)
    no_nodule = evaluate_froc(['a'], [], [mark('a', (0, 0, 0), 0.7)], 10)
    assert math.isnan(no_nodule.cpm) and no_nodule.warnings


def test_rows_of_unlisted_scans_are_refused():
    with pytest.raises(ValueError, match='candidates.csv, line 2: scan z'):
        evaluate_froc(['a'], [], [mark('z', (0, 0, 0), 0.5)], 0)


def test_pooled_files_give_the_froc_of_their_union(tmp_path):
    scans, findings, marks = crafted_case()
    header = 'seriesuid,coordX,coordY,coordZ,probability\n'

    def rows(ms):
        return ''.join(f'{m.seriesuid},{m.coord_xyz[0]!r},{m.coord_xyz[1]!r},{m.coord_xyz[2]!r},'
                       f'{m.probability!r}\n' for m in ms)

    fold_a = [m for m in marks if m.seriesuid in ('S1', 'S3')]
    fold_b = [m for m in marks if m.seriesuid not in ('S1', 'S3')]
    (tmp_path / 'a.csv').write_text(header + rows(fold_a))
    (tmp_path / 'b.csv').write_text(header + rows(fold_b))
    (tmp_path / 'all.csv').write_text(header + rows(marks))
    pooled, warnings = read_candidates([tmp_path / 'a.csv', tmp_path / 'b.csv'])
    union, _ = read_candidates([tmp_path / 'all.csv'])
    assert warnings == [] and len(pooled) == len(union) == len(marks)
    r_pooled = evaluate_froc(scans, findings, pooled, 50, seed=1)
    r_union = evaluate_froc(scans, findings, union, 50, seed=1)
    assert r_pooled.sensitivity == r_union.sensitivity
    assert r_pooled.cpm == pytest.approx(3 / 7)
    assert r_pooled.bootstrap.cpm_ci == r_union.bootstrap.cpm_ci
    # one file alone is not the union
    alone, _ = read_candidates([tmp_path / 'a.csv'])
    assert evaluate_froc(scans, findings, alone, 0).cpm != pytest.approx(3 / 7)
    # a scan in two files is reported (folds should not share scans)
    (tmp_path / 'c.csv').write_text(header + rows(fold_a[:1]))
    _, warnings = read_candidates([tmp_path / 'a.csv', tmp_path / 'c.csv'])
    assert any('scan S1 has candidates in 2 files' in w for w in warnings)


# ---------------------------------------------------------------- bootstrap
def test_interval_is_the_scripts_order_statistic():
    # 1000 samples 0 .. 999: sorted[floor(0.025 * 1000)] = 25, sorted[floor(0.975 * 1000)] = 975
    assert _interval(np.arange(1000.0)[::-1].copy(), 0.95) == (25.0, 975.0)


def test_bootstrap_identical_scans_give_a_zero_width_interval():
    # Every scan: one nodule hit at 0.9, one FP at 0.5 -> whatever scans are drawn, the
    # curve is (0,0) -> (0,1) -> (1,1): every point is 1 and every interval is [1, 1].
    scans = [f's{i}' for i in range(6)]
    findings = [nodule(u, (0, 0, 0), 10) for u in scans]
    marks = [m for u in scans for m in (mark(u, (0, 0, 0), 0.9), mark(u, (50, 0, 0), 0.5))]
    result = evaluate_froc(scans, findings, marks, bootstrap_samples=200, seed=3)
    assert result.bootstrap.cpm_ci == (1.0, 1.0)
    assert result.bootstrap.sensitivity_ci == [(1.0, 1.0)] * 7


def test_bootstrap_is_seeded_and_brackets_the_estimate():
    scans, findings, marks = crafted_case()
    a = evaluate_froc(scans, findings, marks, bootstrap_samples=300, seed=7).bootstrap
    b = evaluate_froc(scans, findings, marks, bootstrap_samples=300, seed=7).bootstrap
    c = evaluate_froc(scans, findings, marks, bootstrap_samples=300, seed=8).bootstrap
    assert a.cpm_ci == b.cpm_ci and a.sensitivity_ci == b.sensitivity_ci
    assert (a.cpm_ci, a.sensitivity_ci) != (c.cpm_ci, c.sensitivity_ci)
    low, high = a.cpm_ci
    assert 0 <= low < 3 / 7 < high <= 1
    assert np.all(a.band_low <= a.band_high) and a.band_fps[0] == FROC_POINTS[0]


def test_sensitivities_at_is_numpy_interp_on_the_curve():
    # the curve (0,0) (1,0.5) (2,0.5): 1/2 -> 0.25, 8 -> 0.5 (flat)
    out = sensitivities_at(np.array([0.0, 1.0, 2.0]), np.array([0.0, 0.5, 0.5]))
    assert out.tolist() == pytest.approx([0.0625, 0.125, 0.25, 0.5, 0.5, 0.5, 0.5])


def test_bootstrap_curve_equals_the_scripts_curve_of_the_resampled_list():
    """The bootstrap weights entries by how often their scan is drawn instead of building
    the repeated list; both must read the same sensitivities."""
    from projects.lung_nodule.evaluation.froc import (_WeightedCurve, compute_froc,
                                                      froc_entries, match_scan)
    scans, findings, marks = crafted_case()
    matches = [match_scan(u, [f for f in findings if f.seriesuid == u],
                          [m for m in marks if m.seriesuid == u]) for u in scans]
    entries = froc_entries(matches)
    curve = _WeightedCurve(entries)
    rng = np.random.default_rng(0)
    grid = np.geomspace(0.125, 8, 50)
    for _ in range(30):
        drawn = rng.integers(len(scans), size=len(scans))
        index = np.concatenate([np.flatnonzero(entries.scan_index == s) for s in drawn])
        fps, sens, _ = compute_froc(entries.subset(index))
        w_fps, w_sens = curve(np.bincount(drawn, minlength=len(scans)))
        if np.isnan(sens).all():
            assert np.isnan(w_sens).all()
            continue
        assert sensitivities_at(w_fps, w_sens, grid).tolist() == pytest.approx(
            sensitivities_at(fps, sens, grid).tolist(), abs=1e-12)
