"""A command trial's whole process tree ends with the trial, on a real local Ray and without.

The command is a shell script that starts a helper in its own process group, a
helper in a session of its own (``setsid``) and a foreground child, reports once,
then goes silent; its TERM trap notes that the stop was graceful. The phase's
time budget stops it; afterwards no process it started is alive (none left with
parent 1), and the next trial started within seconds.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from raysweep import process_tree, sweep
from raysweep.spec import load_experiment
from tests.conftest import assert_consistent_results, synthetic_experiment

SCRIPT = r"""#!/bin/bash
record="$2"
trap 'echo "term $$" >> "$record"; exit 143' TERM
sleep 778 &
echo "pid $!" >> "$record"
setsid sleep 779 < /dev/null > /dev/null 2>&1 &
echo "pid $!" >> "$record"
echo "pid $$" >> "$record"
echo "start $(date +%s.%N)" >> "$record"
echo "{\"score\": $1}"
while true; do sleep 0.2; done
"""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _recorded(record: Path) -> tuple[list[int], list[float], list[str]]:
    lines = record.read_text().splitlines()
    pids = [int(line.split()[1]) for line in lines if line.startswith("pid ")]
    # setsid forks when it leads a group already: the helper's pid is a child of the one noted
    pids += [child for pid in pids for child in process_tree.descendants(pid)]
    starts = [float(line.split()[1]) for line in lines if line.startswith("start ")]
    terms = [line for line in lines if line.startswith("term ")]
    return pids, starts, terms


def _wait_gone(pids: list[int], timeout: float = 20.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = [pid for pid in pids if _alive(pid)]
        if not alive:
            return []
        time.sleep(0.2)
    return alive


@pytest.mark.timeout(300)
def test_a_command_stopped_by_the_time_budget_ends_with_every_process_it_started(ray_local, write_experiment, tmp_path):
    script = tmp_path / "hang.sh"
    script.write_text(SCRIPT)
    record = tmp_path / "record.txt"
    data = synthetic_experiment(
        trainable=None,
        command=["bash", str(script), "{x}", str(record)],
        max_concurrent=1,
        parameters={"x": {"distribution": "uniform", "min": 0.0, "max": 1.0}},
        phases=[{"name": "p", "searcher": "random", "trials": 3, "max_trial_time": "3s"}],
    )
    data.pop("trainable")
    result = sweep.run(load_experiment(write_experiment(data)))
    trials = assert_consistent_results(result.run_dir, {1: 3})
    assert (trials["status"] == "time_budget").all() and trials["objective"].notna().all()
    assert trials["error"].str.match(r"stopped at \d+\.\ds by the phase's max_trial_time of 3s$").all()
    assert ((trials["cost_s"] >= 3) & (trials["cost_s"] < 10)).all()
    pids, starts, terms = _recorded(record)
    assert len(starts) == 3 and len(pids) >= 9
    assert _wait_gone(pids) == []  # no helper outlives its trial, whatever its group or session
    assert len(terms) == 3  # each command got SIGTERM first (its trap ran) ...
    gaps = [later - earlier for earlier, later in zip(starts, starts[1:])]
    assert all(gap < 20 for gap in gaps), gaps  # ... and freed its slot within seconds


def test_the_tree_ends_when_its_guard_is_killed_as_ray_kills_a_worker(tmp_path):
    """SIGKILL of the keeper's guard (what Ray does to a killed worker's children): the tree still ends."""
    script = tmp_path / "hang.sh"
    script.write_text(SCRIPT)
    record = tmp_path / "record.txt"
    guard = subprocess.Popen(
        [sys.executable, process_tree.__file__, "--grace", "2", "--", "bash", str(script), "0.5", str(record)],
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        assert guard.stdout.readline().strip() == b'{"score": 0.5}'  # relayed through the keeper
        pids, _, _ = _recorded(record)
        assert len(pids) >= 3 and all(_alive(pid) for pid in pids)
        guard.send_signal(signal.SIGKILL)
        guard.wait()
        assert _wait_gone(pids) == []
        assert len(_recorded(record)[2]) == 1  # the command still got SIGTERM before anything else
        assert guard.stdout.read() == b""  # and the trial's stdout closed
    finally:
        if guard.poll() is None:
            guard.kill()


def test_a_command_that_exits_leaves_no_helper_and_gives_its_exit_code(tmp_path):
    marker = tmp_path / "helper.pid"
    argv = ["bash", "-c", f'sleep 600 & echo $! > {marker}; setsid sleep 601 & exit 3']
    done = subprocess.run([sys.executable, process_tree.__file__, "--grace", "1", "--", *argv], timeout=60)
    assert done.returncode == 3
    assert _wait_gone([int(marker.read_text())], timeout=5) == []
    assert not [pid for pid in map(int, filter(str.isdigit, os.listdir("/proc"))) if _runs(pid, b"sleep\x00601\x00")]


def _runs(pid: int, cmdline: bytes) -> bool:
    try:
        return _alive(pid) and Path(f"/proc/{pid}/cmdline").read_bytes() == cmdline
    except OSError:
        return False
