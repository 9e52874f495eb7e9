"""End-to-end phases on a real local Ray, results in real Parquet files."""

import io
import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import yaml

from raysweep import sweep
from raysweep.errors import RunDirLocked, UserError
from raysweep.spec import load_experiment
from raysweep.state import RunDirLock, read_state
from tests.conftest import ROOT, assert_consistent_results, kill_driver_once_staged, synthetic_experiment


def _trials(run_dir):
    return pd.read_parquet(os.path.join(run_dir, "results", "trials"))


def test_grid_then_random_records_every_trial_with_its_status(ray_local, write_experiment, tmp_path):
    data = synthetic_experiment(
        budget=12,
        parameters={
            "x": {"distribution": "uniform", "min": 0.0, "max": 1.0},
            "lr": {"distribution": "log_uniform", "min": 1e-4, "max": 1e-2, "mean": 1e-3},
            "fail": {"distribution": "choice", "values": ["no", "raise", "nan"]},
        },
        phases=[
            {"name": "explore", "searcher": "grid", "share": 0.5, "grid_resolution": 3, "max_trial_time": "30s"},
            {"name": "more", "searcher": "random", "share": 0.5, "max_trial_time": "30s"},
        ],
    )
    experiment = load_experiment(write_experiment(data))
    result = sweep.run(experiment)
    frame = _trials(result.run_dir)
    assert len(frame) == 12 and frame["trial_id"].is_unique
    assert sorted(frame["phase"].astype(int).unique()) == [1, 2]
    assert set(frame["phase_name"]) == {"explore", "more"}
    raised = frame[frame["param.fail"] == "raise"]
    nan = frame[frame["param.fail"] == "nan"]
    good = frame[frame["param.fail"] == "no"]
    assert (raised["status"] == "failed").all() and raised["error"].str.contains("synthetic failure").all()
    assert (nan["status"] == "failed").all() and nan["objective"].isna().all()
    assert (good["status"] == "completed").all() and good["objective"].notna().all()
    # the raw value the trainable got, and each reported metric's last value
    assert (good["metric.step"] == 4).all() and (good["iterations"] == 4).all()
    assert (frame["cost_s"] > 0).all() and (frame["gpu_s"] == 0).all()
    # failed runs never become the best
    assert result.best is not None and result.best.trial_id in set(good["trial_id"])
    progress = pd.read_parquet(os.path.join(result.run_dir, "results", "progress"))
    assert set(progress["trial_id"]) <= set(frame["trial_id"]) and len(progress) >= 4 * len(good)
    state = read_state(result.run_dir)
    for phase_state in state.phases:
        rows = frame[frame["phase"].astype(int) == phase_state.index]
        assert phase_state.status == "done" and phase_state.trials_done == len(rows) == phase_state.trials_planned
    assert not list(result.run_dir.glob("results/**/*.tmp"))


def test_time_budget_stops_reporting_and_silent_trials(ray_local, write_experiment):
    data = synthetic_experiment(
        budget=2,
        trainable="tests.trainables.synthetic:hang",
        parameters={"x": {"distribution": "uniform", "min": 0.5, "max": 1.0}},
        phases=[{"name": "p", "searcher": "random", "trials": 2, "max_trial_time": "2s"}],
    )
    started = time.monotonic()
    result = sweep.run(load_experiment(write_experiment(data)))
    assert time.monotonic() - started < 60
    frame = _trials(result.run_dir)
    assert list(frame["status"]) == ["time_budget", "time_budget"]
    assert frame["objective"].notna().all() and (frame["metric.step"] == 1).all()  # last reported values kept
    assert frame["error"].str.contains("max_trial_time").all()
    assert_consistent_results(result.run_dir, {1: 2})

    slow = synthetic_experiment(
        name="slow",
        trainable="tests.trainables.synthetic:slow",
        storage=str(result.run_dir.parent / "slow"),
        parameters={"x": {"distribution": "uniform", "min": 0.5, "max": 1.0}},
        phases=[{"name": "p", "searcher": "random", "trials": 2, "max_trial_time": "1s"}],
    )
    result = sweep.run(load_experiment(write_experiment(slow, "slow.yaml")))
    frame = _trials(result.run_dir)
    assert list(frame["status"]) == ["time_budget", "time_budget"]
    assert (frame["metric.step"] < 20).all() and (frame["cost_s"] < 10).all()
    assert_consistent_results(result.run_dir, {1: 2})


def test_external_command_trainable(ray_local, write_experiment):
    data = synthetic_experiment(
        trainable=None,
        command=[sys.executable, str(ROOT / "tests" / "trainables" / "command.py"), "--x", "{x}", "--seed", "{seed}"],
        parameters={"x": {"distribution": "uniform", "min": 0.0, "max": 1.0}},
        phases=[{"name": "grid", "searcher": "grid", "trials": 5, "grid_resolution": 5}],
    )
    data.pop("trainable")
    result = sweep.run(load_experiment(write_experiment(data)))
    frame = _trials(result.run_dir).sort_values("param.x")
    assert list(frame["param.x"]) == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert list(frame["status"]) == ["completed"] * 4 + ["failed"]
    assert "exited with code 3" in frame["error"].iloc[-1]
    assert (frame["metric.seed"].iloc[:4] == frame["seed"].iloc[:4]).all()  # {seed} reached the program


def test_phase_order_and_done_phases_are_enforced(ray_local, write_experiment):
    data = synthetic_experiment(
        budget=4,
        phases=[
            {"name": "one", "searcher": "random", "share": 0.5},
            {"name": "two", "searcher": "random", "share": 0.5},
        ],
    )
    experiment = load_experiment(write_experiment(data))
    with pytest.raises(UserError, match=r"phase 2 \(two\) needs the results of phase 1 \(one\), which is not done; run first: .* --phase 1"):
        sweep.run(experiment, phase=2)
    sweep.run(experiment, phase=1)
    with pytest.raises(UserError, match=r"phase 1 \(one\) is already done with 2 trials"):
        sweep.run(experiment, phase=1)
    result = sweep.run(experiment)  # runs what is left: phase 2
    assert result.total_trials == 4
    changed = load_experiment(write_experiment({**data, "parameters": {**data["parameters"], "x": {"distribution": "uniform", "min": 0.0, "max": 2.0}}}))
    with pytest.raises(UserError, match=r"parameters x differ from those"):
        sweep.run(changed)


def test_second_driver_on_the_same_run_directory_refuses(write_experiment, tmp_path):
    experiment = load_experiment(write_experiment(synthetic_experiment()))
    with RunDirLock(tmp_path / "run"):
        with pytest.raises(RunDirLocked, match=r"is in use by another raysweep driver \(pid \d+"):
            sweep.run(experiment)
    # the refused driver wrote nothing: no state to disagree with results, no file half written
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [".lock"]


def test_killed_driver_resumes_without_running_finished_trials_again(write_experiment, tmp_path):
    data = synthetic_experiment(
        budget=10,
        parameters={"x": {"distribution": "uniform", "min": 0.0, "max": 1.0},
                    "sleep": {"distribution": "uniform", "min": 0.4, "max": 0.5}},
        phases=[{"name": "p", "searcher": "random", "share": 1.0, "max_trial_time": "1m"}],
    )
    path = write_experiment(data)
    run_dir = tmp_path / "run"
    command = [sys.executable, "-m", "raysweep", "run", str(path), "--num-cpus", "2"]
    finished_before = kill_driver_once_staged(command, run_dir, 1, 3, timeout_s=120)
    assert 3 <= len(finished_before) < 10

    proc = subprocess.run([*command], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "--resume" in proc.stderr  # an interrupted phase is not silently restarted
    proc = subprocess.run([*command, "--resume"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    frame = assert_consistent_results(run_dir, {1: 10})
    assert finished_before <= set(frame["trial_id"])
    configs = frame[["param.x", "param.sleep"]].round(12).apply(tuple, axis=1)
    assert configs.is_unique  # no config ran twice
    state = json.loads((run_dir / "state.json").read_text())
    assert state["phases"][0]["status"] == "done" and state["phases"][0]["trials_done"] == 10


def test_killed_driver_resumes_a_bayesian_phase_with_its_history(write_experiment, tmp_path):
    """SIGKILL in the middle of an Ax phase, then --resume: the phase ends with exactly its
    planned trials, each once, whether Tune's saved state knew a finished trial or not."""
    data = synthetic_experiment(
        budget=12,
        parameters={"x": {"distribution": "uniform", "min": 0.0, "max": 1.0},
                    "sleep": {"distribution": "uniform", "min": 0.1, "max": 0.15}},
        phases=[{"name": "wide", "searcher": "random", "trials": 4, "max_trial_time": "1m"},
                {"name": "bayes", "searcher": "ax", "trials": 8, "random_samples": 2, "max_trial_time": "1m",
                 "max_concurrent": 2}],
    )
    path = write_experiment(data)
    run_dir = tmp_path / "run"
    command = [sys.executable, "-m", "raysweep", "run", str(path), "--num-cpus", "2"]
    finished_before = kill_driver_once_staged(command, run_dir, 2, 3, timeout_s=240)
    assert 3 <= len(finished_before) < 8

    proc = subprocess.run([*command, "--resume"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    frame = assert_consistent_results(run_dir, {1: 4, 2: 8})
    assert finished_before <= set(frame["trial_id"])
    bayes = frame[frame["phase"] == 2]
    configs = bayes[["param.x", "param.sleep"]].round(12).apply(tuple, axis=1)
    assert configs.is_unique  # no config of the phase ran twice
    assert (bayes["status"] == "completed").all()
    assert "[bayes] 8/8 done" in proc.stdout  # the count includes the trials of the first attempt
    assert "cannot be restored" not in proc.stdout, proc.stdout  # Tune's saved state, the searcher's included, restored
    state = json.loads((run_dir / "state.json").read_text())
    assert [p["status"] for p in state["phases"]] == ["done", "done"]
    assert state["phases"][1]["trials_done"] == 8


def test_trial_resumed_from_its_checkpoint_after_a_driver_kill_keeps_its_earlier_progress(write_experiment, tmp_path):
    """A trial running when the driver dies resumes from its checkpoint under --resume and does not
    report its earlier iterations again; their progress rows come back with Tune's experiment state."""
    from tests.trainables.checkpointing import RECORD_DIR_ENV, read_events

    steps = 8
    data = synthetic_experiment(
        trainable="tests.trainables.checkpointing:train",
        budget=2,
        parameters={"x": {"distribution": "uniform", "min": 0.5, "max": 1.0},
                    "steps": {"distribution": "choice", "values": [steps]},
                    "sleep": {"distribution": "choice", "values": [0.4]}},
        phases=[{"name": "p", "searcher": "random", "share": 1.0, "max_trial_time": "2m"}],
    )
    path = write_experiment(data)
    run_dir, records = tmp_path / "run", tmp_path / "records"
    # Tune saves its experiment state (and with it the recorder's) every half second here.
    env = {**os.environ, RECORD_DIR_ENV: str(records), "TUNE_GLOBAL_CHECKPOINT_S": "0.5"}
    command = [sys.executable, "-m", "raysweep", "run", str(path), "--num-cpus", "2"]
    driver = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              start_new_session=True)

    def checkpointed_past(iteration):
        return [trial for trial, events in read_events(records).items()
                if any(e["event"] == "report" and e["checkpointed"] and e["iteration"] >= iteration for e in events)]

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not checkpointed_past(4):
        time.sleep(0.1)
    time.sleep(1.0)  # two saves of Tune's experiment state after that checkpoint
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait()
    assert checkpointed_past(4), "no trial reached its second checkpoint before the deadline"

    proc = subprocess.run([*command, "--resume"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    frame = assert_consistent_results(run_dir, {1: 2})
    assert (frame["status"] == "completed").all() and (frame["iterations"] == steps).all()
    assert (frame["fidelity"] == steps).all()  # a resumed trial's fidelity counts its iterations before the kill
    events = read_events(records)
    resumed = [trial for trial, trial_events in events.items()
               if any(e["event"] == "start" and e["resumed_from"] >= 4 for e in trial_events)]
    assert resumed, events  # the test is only meaningful if a trial skipped its early iterations on resume
    progress = pd.read_parquet(run_dir / "results" / "progress")
    for trial in resumed:
        assert sorted(progress.loc[progress["trial_id"] == trial, "iteration"]) == list(range(1, steps + 1))


# -- resume after a kill, appended phases, an experiment file edited under a run directory ----------
def test_first_resume_after_a_kill_commits_the_phase_even_when_tune_saved_state_long_before(write_experiment, tmp_path):
    """Tune's experiment state is saved only at the start here (``TUNE_GLOBAL_CHECKPOINT_S``), so the
    restored run lists the trials that finished since then as never started; building Tune's result grid
    then raises. The phase's staged rows cover its plan, so the first --resume commits it."""
    from tests.trainables.checkpointing import read_events

    record_dir = tmp_path / "records"
    constants = {"record_dir": str(record_dir), "steps": 3, "sleep": 0.4, "checkpoint_every": 10}
    data = synthetic_experiment(
        trainable="tests.trainables.checkpointing:train",
        max_concurrent=1,
        parameters={"x": {"distribution": "uniform", "min": 0.0, "max": 1.0},
                    **{name: {"distribution": "choice", "values": [value]} for name, value in constants.items()}},
        phases=[{"name": "explore", "searcher": "grid", "trials": 6, "grid_resolution": 6, "max_trial_time": "1m"}],
    )
    path = write_experiment(data)
    run_dir = tmp_path / "run"
    command = [sys.executable, "-m", "raysweep", "run", str(path), "--num-cpus", "2"]
    env = {**os.environ, "TUNE_GLOBAL_CHECKPOINT_S": "1000"}
    finished_before = kill_driver_once_staged(command, run_dir, 1, 3, timeout_s=180, env=env)
    assert 3 <= len(finished_before) < 6

    proc = subprocess.run([*command, "--resume"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr and "SWEEP COMPLETE" in proc.stdout
    frame = assert_consistent_results(run_dir, {1: 6})
    assert sorted(frame["param.x"]) == pytest.approx([0.0, 0.2, 0.4, 0.6, 0.8, 1.0])
    events = read_events(record_dir)
    for trial_id in finished_before:
        assert [e["event"] for e in events[trial_id]].count("start") == 1  # never run again


def test_a_phase_appended_to_a_finished_sweep_runs(ray_local, write_experiment, tmp_path):
    one = synthetic_experiment(phases=[{"name": "one", "searcher": "random", "trials": 2}])
    two = {**one, "phases": [*one["phases"], {"name": "two", "searcher": "random", "trials": 2}]}
    three = {**two, "phases": [*two["phases"], {"name": "three", "searcher": "random", "trials": 1}]}
    sweep.run(load_experiment(write_experiment(one)))

    out = io.StringIO()
    result = sweep.run(load_experiment(write_experiment(two)), stream=out)
    assert "note: phase 2 (two) was added to the experiment" in out.getvalue()
    assert [p.status for p in result.state.phases] == ["done", "done"] and result.total_trials == 4
    assert_consistent_results(tmp_path / "run", {1: 2, 2: 2})

    result = sweep.run(load_experiment(write_experiment(three)), phase=3)  # --phase N names the new phase
    assert [p.status for p in result.state.phases] == ["done", "done", "done"]
    assert_consistent_results(tmp_path / "run", {1: 2, 2: 2, 3: 1})
    state = json.loads((tmp_path / "run" / "state.json").read_text())
    assert [p["name"] for p in state["phases"]] == ["one", "two", "three"]


def test_a_done_phase_whose_plan_changed_stays_as_it_ran(ray_local, write_experiment, tmp_path):
    data = synthetic_experiment(phases=[{"name": "one", "searcher": "random", "trials": 2, "max_trial_time": "30s"}])
    sweep.run(load_experiment(write_experiment(data)))
    data["phases"] = [{"name": "one", "searcher": "random", "trials": 3, "max_trial_time": "1m"},
                      {"name": "two", "searcher": "random", "trials": 1}]
    out = io.StringIO()
    sweep.run(load_experiment(write_experiment(data)), stream=out)
    assert ("note: phase 1 (one) is done with 2 trials; the experiment changed it since (trials 2 -> 3; "
            "max_trial_time 30.0 -> 60.0): it stays as it ran") in out.getvalue()
    assert_consistent_results(tmp_path / "run", {1: 2, 2: 1})


def test_an_interrupted_phase_follows_the_edited_file_on_resume(write_experiment, tmp_path):
    from tests.test_interrupts import PLANNED, start_driver, stop_with, two_phase_experiment, wait_for_staged

    run_dir, record_dir = tmp_path / "run", tmp_path / "records"
    path = two_phase_experiment(write_experiment, record_dir)
    driver = start_driver(path)
    wait_for_staged(run_dir, 1, 2, driver)
    code, stderr = stop_with(driver, signal.SIGINT)
    assert code == 130, stderr
    finished = len(list((run_dir / "results" / ".staging" / "phase=1").glob("*.trials.parquet")))
    data = yaml.safe_load(path.read_text())

    data["phases"][0]["trials"] = finished - 1  # fewer than already ran: refused, nothing written
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    before = (run_dir / "state.json").read_text()
    command = [sys.executable, "-m", "raysweep", "run", str(path), "--num-cpus", "2", "--resume"]
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and proc.stderr.strip() == (
        f"raysweep: error: phases[0].trials: phase 1 (first) has already finished {finished} trials, so it needs at "
        f"least {finished} (they are kept; or use another storage directory); got {finished - 1} trials"
    )
    assert (run_dir / "state.json").read_text() == before

    data["phases"][0]["trials"] = PLANNED[1] + 2
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (f"note: phase 1 (first) was interrupted with {finished} of its {PLANNED[1]} trials finished; the experiment "
            f"changed it since (trials {PLANNED[1]} -> {PLANNED[1] + 2}): --resume follows the file") in proc.stdout
    trials = assert_consistent_results(run_dir, {1: PLANNED[1] + 2, 2: PLANNED[2]})
    assert trials["param.x"].round(12).is_unique


def _bayesian_phase_killed_midway(write_experiment, tmp_path):
    """A random phase of 3 trials and an Ax phase of 7 (2 at a time) whose driver was killed once 3 of them
    were staged: the command, the run directory and the trial ids finished before the kill."""
    data = synthetic_experiment(
        budget=10,
        parameters={"x": {"distribution": "uniform", "min": 0.0, "max": 1.0},
                    "sleep": {"distribution": "uniform", "min": 0.1, "max": 0.15}},
        phases=[{"name": "wide", "searcher": "random", "trials": 3, "max_trial_time": "1m"},
                {"name": "bayes", "searcher": "ax", "trials": 7, "random_samples": 2, "max_trial_time": "1m",
                 "max_concurrent": 2}],
    )
    path = write_experiment(data)
    run_dir = tmp_path / "run"
    command = [sys.executable, "-m", "raysweep", "run", str(path), "--num-cpus", "2"]
    finished_before = kill_driver_once_staged(command, run_dir, 2, 3, timeout_s=240)
    assert 3 <= len(finished_before) < 7
    return command, run_dir, finished_before


def test_a_bayesian_phase_whose_tune_state_was_cut_short_resumes_from_its_parquet_rows(write_experiment, tmp_path):
    """Tune writes its experiment state in place; a full disk or a kill can cut it short. --resume then
    runs the phase's missing trials in a fresh Tune run, the Ax searcher rebuilt from the staged rows."""
    command, run_dir, finished_before = _bayesian_phase_killed_midway(write_experiment, tmp_path)
    saved = max((run_dir / "tune" / "phase2-bayes").glob("experiment_state-*.json"))
    saved.write_bytes(saved.read_bytes()[: saved.stat().st_size // 2])  # what a full disk leaves

    proc = subprocess.run([*command, "--resume"], cwd=ROOT, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "note: Tune's saved state of phase 2 cannot be restored (JSONDecodeError" in proc.stdout
    assert f"the {7 - len(finished_before)} trials still missing run in a fresh Tune run" in proc.stdout
    assert "[bayes] 7/7 done" in proc.stdout
    frame = assert_consistent_results(run_dir, {1: 3, 2: 7})
    bayes = frame[frame["phase"] == 2]
    assert finished_before <= set(bayes["trial_id"])
    assert bayes[["param.x", "param.sleep"]].round(12).apply(tuple, axis=1).is_unique


def test_a_bayesian_phase_whose_searcher_state_does_not_load_still_runs_every_missing_trial(write_experiment, tmp_path):
    """A searcher state an earlier raysweep saved in another format: Tune would log the refusal and start
    the phase over without an error (committed with the few trials that run ran, or waiting forever). It is
    refused up front instead, and the missing trials run in a fresh Tune run, each once."""
    command, run_dir, finished_before = _bayesian_phase_killed_midway(write_experiment, tmp_path)
    saved = max((run_dir / "tune" / "phase2-bayes").glob("searcher-state-*.pkl"))
    state = json.loads(saved.read_bytes())
    saved.write_text(json.dumps({**state, "format": "raysweep.AxSearcher/2"}))  # as an earlier raysweep left it

    proc = subprocess.run([*command, "--resume"], cwd=ROOT, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    frame = assert_consistent_results(run_dir, {1: 3, 2: 7})
    bayes = frame[frame["phase"] == 2]
    assert finished_before <= set(bayes["trial_id"])
    assert bayes[["param.x", "param.sleep"]].round(12).apply(tuple, axis=1).is_unique
    assert "[bayes] 7/7 done" in proc.stdout
    assert "note: Tune's saved state of phase 2 cannot be restored (searcher-state-" in proc.stdout
    assert "was saved by another raysweep (format 'raysweep.AxSearcher/2', not 'raysweep.AxSearcher/3')" in proc.stdout
