"""The live view during `run` and the summary block at its end."""

from __future__ import annotations

import io
import subprocess
import sys

import pytest

from raysweep import outcomes, sweep, waiting
from raysweep import progress as progress_module
from raysweep.progress import PhaseProgress
from raysweep.records import TrialRecord, TrialStatus
from raysweep.spec import load_experiment
from tests.conftest import ROOT, assert_consistent_results, synthetic_experiment


def _record(trial_id: str, status: TrialStatus, objective: float | None, cost_s: float, gpus: float = 0.0) -> TrialRecord:
    return TrialRecord(
        sweep="s", phase=1, phase_name="explore", trial_id=trial_id, status=status, params={"x": 0.5},
        objective=objective, best_objective=objective, metrics={}, cost_s=cost_s, gpu_s=cost_s * gpus,
        iterations=1, started_at=0.0, ended_at=cost_s,
    )


class _Trial:
    def __init__(self, trial_id: str) -> None:
        self.trial_id = trial_id


def _progress(key: str, *, gpus: float = 0.0, live: bool = False, max_trial_time: float | None = 600.0):
    book = outcomes.register(outcomes.OutcomeBook(key, "score"))
    stream = io.StringIO()
    progress = PhaseProgress(
        phase_name="explore", planned=10, metric="score", mode="max", outcome_key=key,
        cost_limit_s=max_trial_time, gpus_per_trial=gpus, stream=stream, live=live,
    )
    return book, progress, stream


def test_status_line_counts_trials_best_and_cost_against_the_limit():
    book, progress, stream = _progress("progress-test#1")
    progress.on_trial_start(0, [], _Trial("a"))
    progress.on_trial_start(0, [], _Trial("b"))
    book.recorded(_record("a", TrialStatus.COMPLETED, 3.5, 120.0))
    progress.on_trial_complete(0, [], _Trial("a"))
    book.recorded(_record("b", TrialStatus.FAILED, None, 60.0))
    progress.on_trial_error(0, [], _Trial("b"))
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2  # not a terminal: one line per finished trial
    assert lines[0].startswith("[explore] 1/10 done, 1 running | best score 3.5 | cost 2m of 1h40m")
    assert lines[0].endswith("a completed score=3.5")
    assert lines[1].startswith("[explore] 2/10 done, 0 running | best score 3.5 | cost 3m of 1h40m")


def test_failed_values_never_count_as_best():
    book, progress, _ = _progress("progress-test#2")
    book.recorded(_record("a", TrialStatus.FAILED, 99.0, 1.0))
    book.recorded(_record("b", TrialStatus.EARLY_STOPPED, 2.0, 1.0))
    assert "best score 2 " in progress.status_line()


def test_gpu_trials_show_gpu_hours_and_no_limit_without_a_time_budget():
    book, progress, _ = _progress("progress-test#3", gpus=2.0, max_trial_time=None)
    book.recorded(_record("a", TrialStatus.COMPLETED, 1.0, 1800.0, gpus=2.0))
    line = progress.status_line()
    assert "| cost 1 GPU-h |" in line


def test_on_a_terminal_the_line_is_redrawn_in_place_and_events_get_their_own_line():
    book, progress, stream = _progress("progress-test#4", live=True)
    progress.on_trial_start(0, [], _Trial("a"))
    book.recorded(_record("a", TrialStatus.COMPLETED, 1.0, 1.0))
    progress.on_trial_complete(0, [], _Trial("a"))  # a new best: an event line, then the status line
    progress.on_experiment_end([])
    text = stream.getvalue()
    assert text.startswith("[explore] a completed score=1 (new best)\n\r\x1b[2K[explore] 1/10 done")
    assert text.endswith("\n") and text.count("\n") == 2


def test_run_shows_the_compact_view_and_the_summary_block_and_verbose_brings_tune_back(write_experiment, tmp_path):
    data = synthetic_experiment(
        budget=3,
        parameters={"x": {"distribution": "uniform", "min": 0.0, "max": 1.0},
                    "fail": {"distribution": "choice", "values": ["no", "raise"]}},
        phases=[{"name": "explore", "searcher": "grid", "share": 1.0, "grid_resolution": 2, "max_trial_time": "30s"}],
    )
    path = write_experiment(data)
    command = [sys.executable, "-m", "raysweep", "run", str(path), "--num-cpus", "2"]
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    for tune_output in ("Configuration for experiment", "View detailed results", "Error file", "Trial status"):
        assert tune_output not in out
    progress_lines = [line for line in out.splitlines() if line.startswith("[explore] ")]
    assert len(progress_lines) == 3 and progress_lines[-1].startswith("[explore] 3/3 done, 0 running | best score")
    assert any("failed: RuntimeError" in line for line in progress_lines)
    assert "Total runs: 3" in out
    assert "Best score: " in out and "(phase 1, explore)" in out and "Best config: {" in out
    assert f"State saved to: {tmp_path / 'run' / 'state.json'}" in out
    assert "Traceback" not in out + proc.stderr

    data["storage"] = str(tmp_path / "verbose-run")
    path = write_experiment(data, name="verbose.yaml")
    proc = subprocess.run([sys.executable, "-m", "raysweep", "run", str(path), "--num-cpus", "2", "--verbose"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Configuration for experiment" in proc.stdout  # Tune's own output stays available


class _Pending:
    """What the live view reads of a trial in Tune's list: its status and its resource request."""

    def __init__(self, trial_id: str, status: str = "PENDING", need: dict | None = None) -> None:
        self.trial_id = trial_id
        self.status = status
        self.placement_group_factory = type("Request", (), {"required_resources": need or {"CPU": 1.0, "GPU": 1.0}})()


def test_trials_queued_behind_running_ones_are_counted_and_never_alarm(monkeypatch):
    def no_reading():
        raise AssertionError("Ray's resources are read only while no trial of the phase runs")

    monkeypatch.setattr(waiting, "read_cluster_resources", no_reading)
    _, progress, stream = _progress("progress-test#5")
    progress.wait_grace_s = 0.0
    trials = [_Pending("a", "RUNNING"), _Pending("b", "RUNNING"), _Pending("c"), _Pending("d")]
    for _ in range(50):
        progress.on_step_end(0, trials)
    assert progress.status_line().startswith("[explore] 0/10 done, 0 running, 2 queued | no result yet")
    assert stream.getvalue() == ""


def test_a_wait_for_resources_is_shown_and_logged_once_when_it_starts_and_once_when_it_ends(monkeypatch):
    readings = []

    def gpus_taken():
        readings.append(1)
        return waiting.ClusterResources(total={"CPU": 4.0, "GPU": 2.0}, free={"CPU": 4.0}, free_per_node=({"CPU": 4.0},))

    monkeypatch.setattr(waiting, "read_cluster_resources", gpus_taken)
    monkeypatch.setattr(progress_module, "RESOURCE_POLL_S", 0.0)
    _, progress, stream = _progress("progress-test#6")
    progress.wait_grace_s = 0.0
    trials = [_Pending("a"), _Pending("b"), _Pending("c")]
    for _ in range(3):
        progress.on_step_end(0, trials)
    expected = "waiting for resources: 3 trials pending, each needs 1 GPU; cluster has 0 of 2 GPUs free"
    assert stream.getvalue() == f"[explore] {expected}\n"
    assert len(readings) == 3
    assert progress.status_line().startswith("[explore] 0/10 done, 0 running, 3 queued | no result yet")
    assert progress.status_line().endswith(f" | {expected}")

    trials[0].status = "RUNNING"
    progress.on_trial_start(0, trials, trials[0])
    for _ in range(3):
        progress.on_step_end(0, trials)
    assert stream.getvalue().splitlines()[1] == "[explore] resources free after waiting 0:00"
    assert len(stream.getvalue().splitlines()) == 2 and len(readings) == 3
    assert "waiting for resources" not in progress.status_line()


def test_a_short_stall_is_no_wait_and_ray_is_asked_at_most_every_few_seconds(monkeypatch):
    readings = []

    def no_gpu_free():
        readings.append(1)
        return waiting.ClusterResources(total={"CPU": 2.0, "GPU": 1.0}, free={"CPU": 2.0})

    monkeypatch.setattr(waiting, "read_cluster_resources", no_gpu_free)
    _, progress, stream = _progress("progress-test#7")  # the default grace: a phase's first trials are starting
    for _ in range(100):
        progress.on_step_end(0, [_Pending("a")])
    assert readings == [] and stream.getvalue() == ""
    progress.wait_grace_s = 0.0
    for _ in range(100):  # Tune's loop steps many times a second; Ray is asked once per RESOURCE_POLL_S
        progress.on_step_end(0, [_Pending("a")])
    assert len(readings) == 1
    assert stream.getvalue().startswith("[explore] waiting for resources: 1 trial pending, each needs 1 GPU;")


@pytest.mark.timeout(300)
def test_trials_waiting_for_each_other_on_two_cpus_are_queued_not_waiting_for_resources(ray_local, write_experiment):
    """max_concurrent above what two CPUs hold: normal queueing, counted, with no wait reported."""
    data = synthetic_experiment(
        budget=6,
        resources={"cpu": 1, "gpu": 0},
        max_concurrent=6,
        parameters={"x": {"distribution": "uniform", "min": 0.0, "max": 1.0},
                    "steps": {"distribution": "choice", "values": [3]},
                    "sleep": {"distribution": "choice", "values": [1.0]}},
        phases=[{"name": "explore", "searcher": "random", "share": 1.0, "max_trial_time": "2m"}],
    )
    stream = io.StringIO()
    result = sweep.run(load_experiment(write_experiment(data)), stream=stream)
    assert_consistent_results(result.run_dir, {1: 6})
    lines = [line for line in stream.getvalue().splitlines() if line.startswith("[explore] ")]
    assert len(lines) == 6, stream.getvalue()  # one per finished trial, nothing about resources
    assert any(", 4 queued |" in line or ", 3 queued |" in line for line in lines), stream.getvalue()
    assert lines[-1].startswith("[explore] 6/6 done, 0 running | ")
    assert "waiting for resources" not in stream.getvalue() and "resources free" not in stream.getvalue()


@pytest.mark.timeout(300)
def test_a_trial_that_never_reports_leaves_no_line_of_tunes_on_the_console(ray_local, write_experiment, capfd):
    """Tune's per-trial printer says 'Trial ... completed. Last result:' even at verbosity 0 without raysweep's stand-in."""
    data = synthetic_experiment(
        trainable="tests.trainables.reports:guard",
        parameters={"batch": {"distribution": "choice", "values": [64, 256]},
                    "buffer": {"distribution": "choice", "values": [128]}},
        phases=[{"name": "explore", "searcher": "grid", "trials": 2, "max_trial_time": "30s"}],
    )
    capfd.readouterr()
    result = sweep.run(load_experiment(write_experiment(data)), stream=io.StringIO())
    trials = assert_consistent_results(result.run_dir, {1: 2})
    assert sorted(trials["status"]) == ["completed", "failed"]
    out, err = capfd.readouterr()
    assert "Last result" not in out + err and "Trial synthetic_" not in out + err, out + err
