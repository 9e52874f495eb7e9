"""The live view during `run` and the summary block at its end."""

from __future__ import annotations

import io
import subprocess
import sys

from raysweep import outcomes
from raysweep.progress import PhaseProgress
from raysweep.records import TrialRecord, TrialStatus
from tests.conftest import ROOT, synthetic_experiment


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
