"""The per-trial time budget is a hard limit, on a real local Ray.

A trial that hangs before its first report is stopped on time, its actor is
killed rather than parked for reuse, and the next trial starts within seconds;
a trainable that reports ``time_this_iter_s: 0`` is stopped by raysweep's own
clock. Every case ends with the whole, consistent result set.
"""

from __future__ import annotations

import time

import pytest

from raysweep import sweep
from raysweep.spec import load_experiment
from tests.conftest import assert_consistent_results, synthetic_experiment


@pytest.mark.timeout(300)
def test_a_trial_hung_before_its_first_report_ends_on_time_and_frees_its_slot(ray_local, write_experiment, tmp_path):
    record_dir = tmp_path / "records"
    record_dir.mkdir()
    data = synthetic_experiment(
        trainable="tests.trainables.budgets:hang_before_report",
        max_concurrent=1,
        parameters={
            "x": {"distribution": "uniform", "min": 0.0, "max": 1.0},
            "record_dir": {"distribution": "choice", "values": [str(record_dir)]},
        },
        phases=[{"name": "p", "searcher": "random", "trials": 3, "max_trial_time": "3s"}],
    )
    started = time.monotonic()
    result = sweep.run(load_experiment(write_experiment(data)))
    took = time.monotonic() - started
    trials = assert_consistent_results(result.run_dir, {1: 3})
    assert (trials["status"] == "time_budget").all()
    assert trials["error"].str.fullmatch(
        r"stopped at \d+\.\ds by the phase's max_trial_time of 3s before its first report"
    ).all()
    assert trials["objective"].isna().all() and (trials["iterations"] == 0).all()
    # the slot was held about the budget (+1 s of grace), not until the hung thread returned
    assert ((trials["cost_s"] >= 3) & (trials["cost_s"] < 10)).all()
    starts = sorted(float(p.name.split("-")[1]) for p in record_dir.iterdir())
    assert len(starts) == 3  # each trial ran once, in its own fresh actor
    gaps = [later - earlier for earlier, later in zip(starts, starts[1:])]
    assert all(gap < 20 for gap in gaps), gaps  # the next trial started within seconds, not 600 s
    assert took < 120


@pytest.mark.timeout(300)
def test_the_budget_runs_on_raysweeps_clock_not_on_the_times_a_trainable_reports(ray_local, write_experiment):
    data = synthetic_experiment(
        trainable="tests.trainables.budgets:zero_time",
        parameters={"x": {"distribution": "uniform", "min": 0.0, "max": 1.0}},
        phases=[{"name": "p", "searcher": "random", "trials": 2, "max_trial_time": "2s"}],
    )
    result = sweep.run(load_experiment(write_experiment(data)))
    trials = assert_consistent_results(result.run_dir, {1: 2})
    assert (trials["status"] == "time_budget").all()
    assert trials["error"].str.match(r"stopped at \d+\.\ds by the phase's max_trial_time of 2s$").all()
    assert trials["objective"].notna().all()  # stopped at a report: its last values are kept
    assert ((trials["cost_s"] >= 2) & (trials["cost_s"] < 10)).all()
    assert (trials["iterations"] < 100).all()
