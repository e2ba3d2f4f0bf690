"""The main job's runner: steps side by side in lanes, what a resumed run redoes, and the
wall time of steps that overlap (tools/run_demo.py, projects/lung_nodule/demo/report.py)."""
import json
import sys

import pytest

from projects.lung_nodule.demo.report import StepRecord, wall_seconds


def _run_demo_module(repo_root, monkeypatch):
    monkeypatch.syspath_prepend(str(repo_root / 'tools'))
    sys.modules.pop('run_demo', None)
    import run_demo
    return run_demo


def _step(run_demo, tmp_path, key, code='', fail=False):
    """A step whose tool is a one-line Python program that writes ``KEY.done``."""
    out = tmp_path / f'{key}.done'
    parts = ['import sys', f'print("working on {key}")', code,
             'sys.exit(3)' if fail else f'open({str(out)!r}, "w").write("x")']
    body = '; '.join(part for part in parts if part)
    return run_demo.Step(key, f'step {key}', [sys.executable, '-c', body], [out])


def _plan(run_demo, tmp_path, restart=False, b2_code=''):
    runner = run_demo.Runner(tmp_path, restart, heartbeat=0.2)
    steps = {k: _step(run_demo, tmp_path, k, 'import time; time.sleep(0.5)')
             for k in ('first', 'a1', 'a2', 'b1')}
    steps['b2'] = _step(run_demo, tmp_path, 'b2', b2_code)
    items = [steps['first'],
             run_demo.Parallel([[steps['a1'], steps['a2']], [steps['b1'], steps['b2']]],
                               threads=[1, 1])]
    return run_demo.Plan(runner, items, workers=2), runner


def test_lanes_run_side_by_side_with_their_output_in_logs(repo_root, tmp_path, monkeypatch):
    run_demo = _run_demo_module(repo_root, monkeypatch)
    plan, runner = _plan(run_demo, tmp_path)
    plan.execute()
    records = runner.records
    assert all(records[k].status == 'ran' for k in ('first', 'a1', 'a2', 'b1', 'b2'))
    # the lanes' first steps began together; the step before them ran alone
    assert abs(records['a1'].started - records['b1'].started) < 0.4
    assert records['first'].started + records['first'].seconds <= records['a1'].started + 0.1
    assert (tmp_path / 'logs/a1.log').read_text().strip() == 'working on a1'
    # numbers follow the lanes: a1 a2 before b1 b2
    assert [s.key for s in plan.steps] == ['first', 'a1', 'a2', 'b1', 'b2']
    saved = json.loads((tmp_path / 'steps.json').read_text())
    assert set(saved) == {'first', 'a1', 'a2', 'b1', 'b2'}


@pytest.mark.parametrize('workers', [2, 1])
def test_a_resumed_run_redoes_only_what_reads_a_changed_step(repo_root, tmp_path, monkeypatch,
                                                             workers):
    """Lane b's last step changes: lane a, which does not read it, is not redone (side by
    side or one lane after the other)."""
    run_demo = _run_demo_module(repo_root, monkeypatch)
    _plan(run_demo, tmp_path)[0].execute()
    before = json.loads((tmp_path / 'steps.json').read_text())
    plan, runner = _plan(run_demo, tmp_path, b2_code='x = 1')
    plan.workers = workers
    plan.execute()
    for key in ('first', 'a1', 'a2', 'b1'):
        assert runner.records[key].started == before[key]['started'], key
    assert runner.records['b2'].started > before['b2']['started']
    # and the other way round: lane a's last step changes, lane b is not redone
    before = json.loads((tmp_path / 'steps.json').read_text())
    plan, runner = _plan(run_demo, tmp_path, b2_code='x = 1')
    plan.workers = workers
    plan.steps[2].cmd[-1] += '; z = 3'  # a2
    plan.execute()
    for key in ('first', 'a1', 'b1', 'b2'):
        assert runner.records[key].started == before[key]['started'], key
    assert runner.records['a2'].started > before['a2']['started']
    # a changed first step redoes everything after it, in both lanes
    plan, runner = _plan(run_demo, tmp_path)
    plan.steps[0].cmd[-1] += '; y = 2'
    plan.execute()
    assert all(runner.records[k].started > before[k]['started'] for k in before)


def test_a_failing_lane_lets_the_other_finish_then_stops(repo_root, tmp_path, monkeypatch):
    run_demo = _run_demo_module(repo_root, monkeypatch)
    runner = run_demo.Runner(tmp_path, restart=False, heartbeat=0.2)
    slow = _step(run_demo, tmp_path, 'slow', 'import time; time.sleep(1.0)')
    bad = _step(run_demo, tmp_path, 'bad', fail=True)
    after_bad = _step(run_demo, tmp_path, 'after_bad')
    last = _step(run_demo, tmp_path, 'last')
    plan = run_demo.Plan(runner, [run_demo.Parallel([[slow], [bad, after_bad]], [1, 1]), last],
                         workers=2)
    with pytest.raises(SystemExit, match=r'step bad" failed with exit code 3; its output: '):
        plan.execute()
    # what was done is kept (a resumed run skips it); nothing after the failure ran
    assert runner.records['slow'].status == 'ran' and (tmp_path / 'slow.done').exists()
    assert 'after_bad' not in runner.records and 'last' not in runner.records
    assert 'working on bad' in (tmp_path / 'logs/bad.log').read_text()


def test_one_worker_runs_the_lanes_one_after_the_other(repo_root, tmp_path, monkeypatch,
                                                       capsys):
    run_demo = _run_demo_module(repo_root, monkeypatch)
    plan, runner = _plan(run_demo, tmp_path)
    plan.workers = 1
    plan.label = 'arm seed 0'  # the experiments' prefix of the step numbers
    plan.execute()
    spans = sorted(r.span for r in runner.records.values())
    assert all(end <= nxt + 0.1 for (_, end), (nxt, _) in zip(spans, spans[1:]))
    assert not (tmp_path / 'logs').exists()
    printed = capsys.readouterr().out
    assert '=== [arm seed 0 1/5] step first' in printed
    assert '=== [arm seed 0 5/5] step b2' in printed


def test_wall_time_counts_overlapping_steps_once():
    def record(started, seconds):
        return StepRecord('t', 'c', seconds, 1.0, 'ran', started)

    steps = [record(0, 10), record(10, 30), record(12, 20), record(45, 5)]
    assert wall_seconds(steps) == pytest.approx(10 + 30 + 5)
    # records of older runs have no start: their seconds add up
    assert wall_seconds(steps + [StepRecord('t', 'c', 7.0, 1.0, 'ran')]) == pytest.approx(52)
    assert wall_seconds([StepRecord('t', 'c', None, None, 'missing tool')]) == 0
