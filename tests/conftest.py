"""Shared fixtures: one real local Ray for the whole session, experiment files in tmp dirs."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("WANDB_MODE", "offline")


@pytest.fixture(scope="session")
def ray_local():
    """A real local Ray with two CPUs, started once."""
    import ray

    from raysweep.sweep import connect

    os.chdir(ROOT)  # trainables resolve from the repository root, as for users
    connect(address=None, num_cpus=2, verbose=False)
    yield ray
    ray.shutdown()


@pytest.fixture
def write_experiment(tmp_path):
    """Write an experiment dict to YAML with storage under tmp_path; returns the file path."""

    def write(data: dict, name: str = "exp.yaml") -> Path:
        data = dict(data)
        data.setdefault("storage", str(tmp_path / "run"))
        path = tmp_path / name
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path

    return write


def synthetic_experiment(**overrides) -> dict:
    """A small experiment on the synthetic trainable."""
    data = {
        "name": "synthetic",
        "trainable": "tests.trainables.synthetic:train",
        "metric": "score",
        "mode": "max",
        "budget": 8,
        "parameters": {
            "x": {"distribution": "uniform", "min": 0.0, "max": 1.0},
            "lr": {"distribution": "log_uniform", "min": 1e-4, "max": 1e-2},
            "act": {"distribution": "choice", "values": ["tanh", "relu"]},
        },
        "phases": [
            {"name": "explore", "searcher": "grid", "share": 1.0, "grid_resolution": 3, "max_trial_time": "30s"},
        ],
    }
    data["wandb"] = {"mode": "disabled"}  # W&B has tests of its own
    data.update(overrides)
    return data


def assert_consistent_results(run_dir: str | os.PathLike[str], planned: dict[int, int]) -> pd.DataFrame:
    """Check what every fault test ends with; return the trials.

    ``planned`` maps each phase to its planned trial count. Every planned trial
    is in Parquet exactly once, no file under ``results`` is half written or
    left staged, each trial's progress holds each iteration at most once, and
    ``state.json`` agrees with the Parquet rows: each phase done, its counts,
    best trial and cost.
    """
    run_dir = Path(run_dir)
    results = run_dir / "results"
    assert not (results / ".staging").exists(), "a phase's staged rows were never committed"
    assert not [p for p in results.rglob("*") if p.name.endswith(".tmp")], "a temporary file was left behind"
    for path in results.rglob("*.parquet"):
        pq.read_metadata(path)  # a whole file: a cut-off Parquet file has no footer
    trials = pd.read_parquet(results / "trials")
    trials["phase"] = trials["phase"].astype(int)
    assert trials["trial_id"].is_unique
    assert trials.groupby("phase").size().to_dict() == planned
    progress = pd.read_parquet(results / "progress")
    assert set(progress["trial_id"]) <= set(trials["trial_id"])
    assert not progress.duplicated(["trial_id", "iteration"]).any(), "a trial reported one iteration twice"
    if "fidelity" in trials and json.loads((run_dir / "state.json").read_text()).get("fidelity_attr", "training_iteration") == "training_iteration":
        # every row's fidelity is how far it got: its last progress row (retried and resumed trials too)
        last = progress.groupby("trial_id")["iteration"].max()
        reported = trials[trials["trial_id"].isin(last.index)]
        assert (reported["fidelity"].to_numpy() == last.loc[reported["trial_id"]].to_numpy()).all(), "a row's fidelity is not where its trial got"

    state = json.loads((run_dir / "state.json").read_text())
    mode = state["mode"]
    for phase in state["phases"]:
        if phase["index"] not in planned:
            continue
        rows = trials[trials["phase"] == phase["index"]]
        assert phase["status"] == "done"
        assert phase["trials_planned"] == phase["trials_done"] == len(rows) == planned[phase["index"]]
        assert phase["status_counts"] == rows["status"].value_counts().to_dict()
        assert phase["cost_s"] == pytest.approx(rows["cost_s"].sum())
        assert phase["gpu_s"] == pytest.approx(rows["gpu_s"].sum())
        usable = rows[rows["status"] != "failed"].dropna(subset=["objective"])
        if usable.empty:
            assert phase["best"] is None
            continue
        best = usable["objective"].max() if mode == "max" else usable["objective"].min()
        assert phase["best"]["objective"] == pytest.approx(best)
        chosen = usable[usable["trial_id"] == phase["best"]["trial_id"]]
        assert len(chosen) == 1 and chosen["objective"].iloc[0] == pytest.approx(best)
    return trials


@pytest.fixture
def small_disk(tmp_path):
    """A real, small disk: a 2 MB tmpfs at ``tmp_path / "disk"`` (needs root; skipped where mounting is refused)."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount_point)], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def fill(disk: Path) -> Path:
    """Write zeros to ``disk/filler`` until the filesystem is full; return the filler's path."""
    filler = disk / "filler"
    with open(filler, "ab", buffering=0) as handle:  # unbuffered: nothing left to flush at close
        try:
            while True:
                handle.write(b"\0" * 4096)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    return filler


def kill_driver_once_staged(command: list[str], run_dir: Path, phase: int, count: int, *, timeout_s: float,
                            env: dict | None = None, output=subprocess.DEVNULL) -> set[str]:
    """Start a driver (``command``), SIGKILL its whole session once phase ``phase`` has staged at least
    ``count`` finished trials (or ``timeout_s`` passed); return the ids of the trials staged by then."""
    driver = subprocess.Popen(command, cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT,
                              text=True, start_new_session=True)
    staging = Path(run_dir) / "results" / ".staging" / f"phase={phase}"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and len(list(staging.glob("*.trials.parquet"))) < count:
        time.sleep(0.1)
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait()
    return {path.name.split(".")[0] for path in staging.glob("*.trials.parquet")}
