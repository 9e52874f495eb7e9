"""A trial Tune retries from its checkpoint: one row, progress without superseded
reports, cost of its attempts, and a time budget counted as Tune counts it."""

from __future__ import annotations

from types import SimpleNamespace

import pandas as pd
import pytest
from ray.tune.experiment import Trial

from raysweep import outcomes
from raysweep.recording import TrialRecorder
from raysweep.records import TrialRecord, TrialStatus
from raysweep.scheduling import PhaseScheduler
from raysweep.space import Parameter, SearchSpace

SPACE = SearchSpace((Parameter(name="x", distribution="uniform", min=0.0, max=1.0),))


class _Checkpointed:
    def __init__(self, metrics: dict) -> None:
        self.metrics = metrics


class _Trial:
    """The parts of a Tune trial that raysweep's callbacks and scheduler read."""

    def __init__(self, trial_id: str) -> None:
        self.trial_id = trial_id
        self.config = {"x": 0.5, "seed": 7}
        self.last_result: dict = {}
        self.latest_checkpoint_result: _Checkpointed | None = None
        self.status = Trial.RUNNING


class _Controller:
    def __init__(self, trials: list[_Trial]) -> None:
        self.trials = trials
        self.stopped: list[str] = []

    def get_live_trials(self) -> list[_Trial]:
        return list(self.trials)

    def get_trials(self) -> list[_Trial]:
        return list(self.trials)

    def stop_trial(self, trial: _Trial) -> None:
        self.stopped.append(trial.trial_id)


def _result(iteration: int, score: float, time_total_s: float) -> dict:
    return {"training_iteration": iteration, "time_total_s": time_total_s, "score": score}


def test_a_retried_trial_keeps_one_progress_row_per_iteration_and_the_cost_of_its_attempts(tmp_path, monkeypatch):
    key = "recording-test#1"
    outcomes.register(outcomes.OutcomeBook(key, "score"))
    recorder = TrialRecorder(run_dir=str(tmp_path), space=SPACE, sweep="s", phase=1, phase_name="p", metric="score",
                             mode="max", outcome_key=key, gpus_per_trial=1.0)
    now = [100.0]
    monkeypatch.setattr("raysweep.recording.time", SimpleNamespace(time=lambda: now[0]))
    trial = _Trial("t1")
    recorder.on_trial_start(0, [], trial)
    # the first attempt checkpoints at iteration 2, reports 3 (its best value), then its node is lost
    for iteration, score in [(1, 1.0), (2, 2.0), (3, 9.0)]:
        now[0] = 100.0 + iteration * 2.0
        recorder.on_trial_result(0, [], trial, _result(iteration, score, iteration * 2.0))
    now[0] = 110.0
    recorder.on_trial_recover(0, [], trial)
    # the retry starts 20 s later from the checkpoint: iteration 3 again, Tune's time from the checkpoint's
    now[0] = 130.0
    recorder.on_trial_start(0, [], trial)
    for iteration, score in [(3, 3.0), (4, 4.0)]:
        now[0] = 130.0 + (iteration - 2) * 2.0
        recorder.on_trial_result(0, [], trial, _result(iteration, score, 4.0 + (iteration - 2) * 2.0))
    trial.last_result = _result(4, 4.0, 8.0)
    now[0] = 136.0
    recorder.on_trial_complete(0, [], trial)

    staging = tmp_path / "results" / ".staging" / "phase=1"
    progress = pd.read_parquet(staging / "t1.progress.parquet")
    assert list(progress["iteration"]) == [1, 2, 3, 4]
    assert list(progress["metric.score"]) == [1.0, 2.0, 3.0, 4.0]  # the lost attempt's 9.0 is superseded
    row = pd.read_parquet(staging / "t1.trials.parquet").iloc[0]
    assert row["status"] == "completed" and row["iterations"] == 4 and row["objective"] == 4.0
    assert row["best_objective"] == 4.0  # the best of the kept reports
    assert row["cost_s"] == pytest.approx(10.0 + 6.0)  # both attempts, not the 20 s waiting between them
    assert row["gpu_s"] == pytest.approx(16.0)
    assert row["started_at"].timestamp() == pytest.approx(100.0)


def test_the_time_budget_of_a_retried_trial_counts_on_from_its_checkpoint(monkeypatch):
    key = "recording-test#2"
    outcomes.register(outcomes.OutcomeBook(key, "score"))
    scheduler = PhaseScheduler(outcome_key=key, metric="score", mode="max", max_trial_time=10.0)
    now = [0.0]
    monkeypatch.setattr("raysweep.scheduling.time", SimpleNamespace(monotonic=lambda: now[0]))
    trial = _Trial("t1")
    controller = _Controller([trial])
    scheduler.on_trial_add(controller, trial)
    scheduler.choose_trial_to_run(controller)
    now[0] = 8.0
    trial.last_result = _result(4, 4.0, 8.0)
    assert scheduler.on_trial_result(controller, trial, trial.last_result) == "CONTINUE"
    # lost at 8 s; its last checkpoint holds 4 s of work, and Tune's time_total_s resumes from there
    trial.latest_checkpoint_result = _Checkpointed({"training_iteration": 2, "time_total_s": 4.0})
    scheduler.on_trial_error(controller, trial)
    now[0] = 30.0  # running again after 22 s of waiting, which never counts
    scheduler.choose_trial_to_run(controller)
    now[0] = 30.0 + 6.0 + 0.5  # 4 + 6.5 s: over 10 s, within the silent grace
    scheduler.choose_trial_to_run(controller)
    assert controller.stopped == []
    now[0] = 30.0 + 7.0 + 0.1  # 11.1 s: past the grace, stopped while silent
    scheduler.choose_trial_to_run(controller)
    assert controller.stopped == ["t1"]
    status, reason = outcomes.lookup(key, "score").marked("t1")
    assert status.value == "time_budget" and "stopped at 11.1s" in reason


def _record(trial_id: str, phase: int, metrics: dict) -> TrialRecord:
    return TrialRecord(sweep="s", phase=phase, phase_name=f"p{phase}", trial_id=trial_id, status=TrialStatus.COMPLETED,
                       params={"x": 0.5}, objective=1.0, best_objective=1.0, metrics=metrics, cost_s=1.0, gpu_s=0.0,
                       iterations=1, started_at=0.0, ended_at=1.0)


def test_integer_metrics_stay_integers_and_phases_that_disagree_still_read_as_one_table(tmp_path):
    import pyarrow.parquet as pq

    from raysweep.records import ProgressRecord
    from raysweep.sinks.parquet import ParquetSink

    sink = ParquetSink(tmp_path, SPACE)
    sink.stage(_record("a", 1, {"epoch": 3, "loss": 0.5}), [ProgressRecord("a", 1, 1.0, {"epoch": 3})])
    sink.commit_phase(1)
    trials_dir, progress_dir = tmp_path / "results" / "trials", tmp_path / "results" / "progress"
    assert str(pq.read_schema(trials_dir / "phase=1" / "part-0.parquet").field("metric.epoch").type) == "int64"
    assert str(pq.read_schema(progress_dir / "phase=1" / "part-0.parquet").field("metric.epoch").type) == "int64"
    # phase 2: one trial reports the counter as an int, another as a float
    sink.stage(_record("b", 2, {"epoch": 4}), [ProgressRecord("b", 1, 1.0, {"epoch": 4})])
    sink.stage(_record("c", 2, {"epoch": 2.5}), [ProgressRecord("c", 1, 1.0, {"epoch": 2.5})])
    sink.commit_phase(2)
    trials = pd.read_parquet(trials_dir).sort_values("trial_id")
    assert list(trials["metric.epoch"]) == [3.0, 4.0, 2.5] and str(trials["metric.epoch"].dtype) == "float64"
    progress = pd.read_parquet(progress_dir).sort_values("trial_id")
    assert list(progress["metric.epoch"]) == [3.0, 4.0, 2.5]
