"""SIGINT (Ctrl-C) and SIGTERM stop a sweep without committing its running phase.

The integration tests run ``python -m raysweep run`` as a driver process on a
real local Ray, signal the driver alone (as ``kill -INT <pid>`` does) once some
of phase 1's trials have finished, and check: the exit code and the one line on
stderr, ``state.json`` still saying phase 1 is running and phase 2 pending, no
process of the driver's session left behind, and that ``--resume`` then runs
exactly the missing trials and ends with the whole, consistent result set.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest

from raysweep.interrupts import Interrupted, SignalGuard
from tests.conftest import ROOT, assert_consistent_results, synthetic_experiment
from tests.trainables.checkpointing import read_events

PLANNED = {1: 6, 2: 2}


# -- the guard on its own (no Ray) -------------------------------------------------------
def test_a_signal_outside_tune_raises_interrupted_with_its_exit_code():
    with SignalGuard("python -m raysweep run x.yaml --resume") as guard:
        with pytest.raises(Interrupted, match=r"^interrupted; continue with --resume: python -m raysweep run x.yaml --resume$") as info:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)  # the handler runs at the next bytecode; this is only a safety net
        assert info.value.exit_code == 143 and guard.received == signal.SIGTERM


def test_a_signal_during_a_commit_waits_until_the_commit_is_whole():
    written = []
    with SignalGuard() as guard:
        with pytest.raises(Interrupted) as info:
            with guard.deferred():
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0.2)
                written.append("rows")
                written.append("state.json")
        assert written == ["rows", "state.json"] and info.value.exit_code == 130


def test_the_guard_restores_the_handlers_it_replaced():
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    with SignalGuard():
        assert os.environ["TUNE_DISABLE_SIGINT_HANDLER"] == "1"  # Tune must not take Ctrl-C for itself
    assert {s: signal.getsignal(s) for s in before} == before


# -- a real driver -----------------------------------------------------------------
def two_phase_experiment(write_experiment, record_dir: Path) -> Path:
    """Two random phases of tests.trainables.checkpointing (4 reports 0.5 s apart, a checkpoint every second one)."""
    constants = {"record_dir": str(record_dir), "steps": 4, "sleep": 0.5, "checkpoint_every": 2}
    data = synthetic_experiment(
        trainable="tests.trainables.checkpointing:train",
        budget=8,
        parameters={"x": {"distribution": "uniform", "min": 0.5, "max": 1.0},
                    **{name: {"distribution": "choice", "values": [value]} for name, value in constants.items()}},
        phases=[{"name": "first", "searcher": "random", "trials": PLANNED[1], "max_trial_time": "1m"},
                {"name": "second", "searcher": "random", "trials": PLANNED[2], "max_trial_time": "1m"}],
    )
    return write_experiment(data)


def start_driver(path: Path, *extra: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "raysweep", "run", str(path), "--num-cpus", "2", *extra]
    # A session of its own: every process Ray starts for this driver can be found by its session id.
    return subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def wait_for_staged(run_dir: Path, phase: int, count: int, driver: subprocess.Popen, timeout: float = 180) -> set[str]:
    staging = run_dir / "results" / ".staging" / f"phase={phase}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert driver.poll() is None, driver.communicate()
        staged = {p.name.split(".")[0] for p in staging.glob("*.trials.parquet")}
        if len(staged) >= count:
            return staged
        time.sleep(0.1)
    driver.kill()
    pytest.fail(f"fewer than {count} trials of phase {phase} finished within {timeout:g}s")


def session_processes(session_id: int) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter():
        try:
            if os.getsid(process.pid) == session_id:
                found.append(process)
        except (ProcessLookupError, PermissionError, psutil.Error):
            continue
    return found


def assert_no_orphans(session_id: int, timeout: float = 60) -> None:
    """Nothing the driver started outlives it (Ray's processes go when its driver exits)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = session_processes(session_id)
        if not left:
            return
        time.sleep(0.5)
    described = [f"{p.pid} {p.name()}" for p in left]
    for process in left:
        process.kill()
    pytest.fail(f"processes of the stopped driver outlived it: {described}")


def interrupted_state(run_dir: Path) -> dict:
    state = json.loads((run_dir / "state.json").read_text())
    assert [p["status"] for p in state["phases"]] == ["running", "pending"]
    assert not (run_dir / "results" / "trials").exists()  # nothing committed
    return state


def resume_and_check(path: Path, run_dir: Path, record_dir: Path, finished_before: set[str]) -> pd.DataFrame:
    proc = subprocess.run([sys.executable, "-m", "raysweep", "run", str(path), "--num-cpus", "2", "--resume"],
                          cwd=ROOT, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SWEEP COMPLETE" in proc.stdout and f"[first] {PLANNED[1]}/{PLANNED[1]} done" in proc.stdout
    trials = assert_consistent_results(run_dir, PLANNED)
    assert (trials["status"] == "completed").all() and (trials["iterations"] == 4).all()
    assert finished_before <= set(trials["trial_id"])
    assert trials["param.x"].round(12).is_unique
    # exactly the missing trials ran: every trial that started is recorded, and a finished one never started again
    events = read_events(record_dir)
    assert set(events) == set(trials["trial_id"])
    for trial_id in finished_before:
        assert [e["event"] for e in events[trial_id]].count("start") == 1, events[trial_id]
    return trials


def stop_with(driver: subprocess.Popen, signum: int, *, again_after: float | None = None) -> tuple[int, str]:
    os.kill(driver.pid, signum)
    if again_after is not None:
        time.sleep(again_after)
        if driver.poll() is None:
            os.kill(driver.pid, signum)  # impatient: a second Ctrl-C while Tune is stopping
    try:
        _, stderr = driver.communicate(timeout=180)
    finally:
        if driver.poll() is None:
            driver.kill()
    return driver.returncode, stderr


@pytest.mark.timeout(900)
@pytest.mark.parametrize("signum, exit_code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"])
def test_a_signal_leaves_the_phase_unfinished_and_resume_runs_exactly_the_missing_trials(write_experiment, tmp_path, signum, exit_code):
    run_dir, record_dir = tmp_path / "run", tmp_path / "records"
    path = two_phase_experiment(write_experiment, record_dir)
    driver = start_driver(path)
    wait_for_staged(run_dir, 1, 2, driver)
    code, stderr = stop_with(driver, signum)
    lines = [line for line in stderr.splitlines() if line.startswith("raysweep")]
    assert code == exit_code, stderr
    assert lines == [f"raysweep: interrupted; continue with --resume: python -m raysweep run {path} --resume"]
    assert "Traceback" not in stderr and "***" not in stderr, stderr  # no Python traceback, no C++ abort dump
    assert_no_orphans(driver.pid)
    interrupted_state(run_dir)
    finished_before = {p.name.split(".")[0] for p in (run_dir / "results" / ".staging" / "phase=1").glob("*.trials.parquet")}
    assert 2 <= len(finished_before) < PLANNED[1]

    resume_and_check(path, run_dir, record_dir, finished_before)


@pytest.mark.timeout(900)
def test_a_second_ctrl_c_while_stopping_leaves_a_resumable_run_directory(write_experiment, tmp_path):
    run_dir, record_dir = tmp_path / "run", tmp_path / "records"
    path = two_phase_experiment(write_experiment, record_dir)
    driver = start_driver(path)
    wait_for_staged(run_dir, 1, 2, driver)
    code, stderr = stop_with(driver, signal.SIGINT, again_after=0.3)
    assert code == 130, stderr
    assert "Traceback" not in stderr, stderr
    assert_no_orphans(driver.pid)
    interrupted_state(run_dir)
    staged = run_dir / "results" / ".staging" / "phase=1"
    assert not [p for p in staged.iterdir() if p.name.endswith(".tmp")]
    finished_before = {p.name.split(".")[0] for p in staged.glob("*.trials.parquet")}

    resume_and_check(path, run_dir, record_dir, finished_before)
