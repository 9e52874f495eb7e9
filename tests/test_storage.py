"""Local run directories under write failures: a full disk says so in one line and stays resumable.

A real full disk: the ``small_disk`` tmpfs of conftest, filled with a file
until the filesystem refuses more (:func:`tests.conftest.fill`).
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from raysweep.storage import WriteFailed, write_bytes_atomically, write_failure_in
from tests.conftest import ROOT, assert_consistent_results, fill, synthetic_experiment


# -- units ---------------------------------------------------------------------------
def test_a_write_to_a_full_disk_names_the_file_and_keeps_the_old_content(small_disk):
    target = small_disk / "state.json"
    write_bytes_atomically(target, b"old")
    fill(small_disk)
    with pytest.raises(WriteFailed, match=rf"^cannot write {target}: no space left on device$") as info:
        write_bytes_atomically(target, b"x" * 100_000)
    assert info.value.errno == errno.ENOSPC and isinstance(info.value, OSError)
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in small_disk.iterdir()) == ["filler", "state.json"]  # no temporary file left


def test_a_write_under_a_file_says_why(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(WriteFailed, match=r"^cannot write .*/file/state.json: file exists$"):
        write_bytes_atomically(tmp_path / "file" / "state.json", b"{}")


def test_a_failed_write_is_found_behind_the_exceptions_tune_wraps_it_in():
    failed = WriteFailed(Path("/runs/x/state.json"), OSError(errno.ENOSPC, "No space left on device"))
    try:
        try:
            raise failed
        except WriteFailed:
            raise RuntimeError("Traceback (most recent call last): ...")  # Tune keeps only the text
    except RuntimeError as wrapped:
        assert write_failure_in(wrapped) is failed
    tune_own = OSError(errno.ENOSPC, "No space left on device", "/runs/x/tune/experiment_state.json")
    assert str(write_failure_in(tune_own)) == "cannot write /runs/x/tune/experiment_state.json: no space left on device"
    assert write_failure_in(ValueError("unrelated")) is None
    assert write_failure_in(OSError(errno.ECONNREFUSED, "refused")) is None  # not the storage refusing a write


# -- a sweep on a disk that fills up --------------------------------------------------------
@pytest.mark.timeout(900)
def test_a_full_disk_stops_the_sweep_in_one_line_and_resume_completes_it_after_space_is_freed(small_disk, write_experiment, tmp_path):
    run_dir = small_disk / "run"
    data = synthetic_experiment(
        budget=6,
        storage=str(run_dir),
        parameters={"x": {"distribution": "uniform", "min": 0.0, "max": 1.0},
                    "sleep": {"distribution": "uniform", "min": 0.3, "max": 0.4}},
        phases=[{"name": "explore", "searcher": "random", "trials": 6, "max_trial_time": "1m"}],
    )
    path = write_experiment(data)
    command = [sys.executable, "-m", "raysweep", "run", str(path), "--num-cpus", "2"]
    driver = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              start_new_session=True)
    staging = run_dir / "results" / ".staging" / "phase=1"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and len(list(staging.glob("*.trials.parquet"))) < 2 and driver.poll() is None:
        time.sleep(0.05)
    filler = fill(small_disk)
    try:
        _, stderr = driver.communicate(timeout=300)
    finally:
        if driver.poll() is None:
            driver.kill()
    assert driver.returncode == 1, stderr
    lines = [line for line in stderr.splitlines() if line.startswith("raysweep")]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    assert lines[0].startswith(f"raysweep: error: cannot write {run_dir}/")
    assert lines[0].endswith(": no space left on device; fix that, then continue with --resume")
    state = json.loads((run_dir / "state.json").read_text())
    assert state["phases"][0]["status"] == "running"
    finished_before = {p.name.split(".")[0] for p in staging.glob("*.trials.parquet")}
    assert 2 <= len(finished_before) < 6

    filler.unlink()
    proc = subprocess.run([*command, "--resume"], cwd=ROOT, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SWEEP COMPLETE" in proc.stdout
    frame = assert_consistent_results(run_dir, {1: 6})
    assert finished_before <= set(frame["trial_id"])
    assert frame[["param.x", "param.sleep"]].round(12).apply(tuple, axis=1).is_unique
    assert os.statvfs(small_disk).f_bfree > 0
