"""A worker node lost in the middle of a trial, on a multi-node cluster on this machine.

The cluster is :class:`tests.test_multinode.LocalCluster`: a head that takes no
trials and two workers declaring 2 GPUs each, with the head told to give up on
a node that misses 3 health checks 1 s apart (Ray's default takes longer). The
phase runs 4 trials of ``tests.trainables.checkpointing`` holding a GPU each,
so both workers run two at once, with ``max_failures`` set on the phase.

As soon as a trial has reported past its last checkpoint, its whole node is
killed with SIGKILL (every process of that node's ``ray start`` session).
Tune retries the node's trials on the surviving worker from their last
checkpoints, and the phase ends with its complete, consistent result set.
"""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import assert_consistent_results
from tests.test_multinode import started_cluster, sweep_command
from tests.trainables.checkpointing import read_events

STEPS = 6  # reports per trial; a checkpoint with every second one
SLEEP_S = 0.6  # between reports: the time the test has to kill a node before the next checkpoint
TRIALS = 4
# The head declares a node dead after 3 failed health checks 1 s apart; each check
# of a killed node fails at once (connection refused), a slow one only after Ray's timeout.
FAST_NODE_LOSS = {"health_check_period_ms": 1000, "health_check_failure_threshold": 3}


@pytest.fixture
def lossy_cluster():
    """A head that takes no trials and two workers of 2 CPUs and 2 (declared) GPUs each; one may be killed."""
    with started_cluster(workers=[(2, 2), (2, 2)], head_cpus=0, ray_config=FAST_NODE_LOSS) as cluster:
        yield cluster


def checkpointing_experiment(run_dir: Path, record_dir: Path, *, trials: int, max_failures: int) -> dict:
    """One phase of ``trials`` trials of tests.trainables.checkpointing, each holding a GPU."""
    constants = {"record_dir": str(record_dir), "steps": STEPS, "sleep": SLEEP_S, "checkpoint_every": 2}
    return {
        "name": "node-loss",
        "trainable": "tests.trainables.checkpointing:train",
        "metric": "score",
        "mode": "max",
        "resources": {"cpu": 0.5, "gpu": 1},
        "storage": str(run_dir),  # one filesystem for every node here; a real cluster needs shared or cloud storage
        "parameters": {
            "x": {"distribution": "uniform", "min": 0.5, "max": 1.0},
            # one-value choices: constants every trial's config carries
            **{name: {"distribution": "choice", "values": [value]} for name, value in constants.items()},
        },
        "phases": [{"name": "survive", "searcher": "random", "trials": trials, "max_trial_time": "2m",
                    "max_failures": max_failures}],
        "wandb": {"mode": "disabled"},
    }


def wait_for_a_trial_past_its_checkpoint(record_dir: Path, driver, timeout: float) -> tuple[str, str]:
    """A running trial whose last report came after its last checkpoint, and its node id.

    Its next report would checkpoint again; a node lost before then loses that report's work.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert driver.poll() is None, "the sweep ended before any trial checkpointed"
        for trial_id, events in read_events(record_dir).items():
            reports = [e for e in events if e["event"] == "report"]
            if reports and not reports[-1]["checkpointed"] and any(r["checkpointed"] for r in reports):
                return trial_id, reports[-1]["node_id"]
        time.sleep(0.05)
    pytest.fail(f"no trial reported past a checkpoint within {timeout:g}s")


@pytest.mark.timeout(180)
def test_a_trial_on_a_lost_worker_node_resumes_from_its_checkpoint_and_the_phase_completes(lossy_cluster, tmp_path):
    cluster = lossy_cluster
    run_dir, record_dir = tmp_path / "run", tmp_path / "records"
    experiment = checkpointing_experiment(run_dir, record_dir, trials=TRIALS, max_failures=2)
    output = tmp_path / "driver.log"
    driver = cluster.spawn(sweep_command(cluster, experiment, tmp_path / "exp.yaml"), output=output)
    try:
        victim, lost_node = wait_for_a_trial_past_its_checkpoint(record_dir, driver, timeout=90)
        assert cluster.node_name(lost_node).startswith("worker")
        cluster.kill_node(cluster.node_name(lost_node))
        killed_at = time.time()
        driver.wait(timeout=120)
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
    log = output.read_text()
    assert driver.returncode == 0, f"raysweep failed ({driver.returncode}):\n{log[-5000:]}"
    assert f"[survive] {TRIALS}/{TRIALS} done, 0 running" in log  # a retried trial counts once

    # every planned trial once, completed, with all its iterations; state.json agrees
    trials = assert_consistent_results(run_dir, {1: TRIALS})
    assert (trials["status"] == "completed").all()
    assert (trials["iterations"] == STEPS).all() and (trials["metric.step"] == STEPS).all()
    progress = pd.read_parquet(run_dir / "results" / "progress")
    for trial_id, rows in progress.groupby("trial_id"):
        assert sorted(rows["iteration"]) == list(range(1, STEPS + 1)), trial_id

    # which trials the lost node was running, from what each trial noted before the kill
    events = read_events(record_dir)
    assert set(events) == set(trials["trial_id"])
    before = {tid: [e for e in evs if e["time"] < killed_at] for tid, evs in events.items()}
    interrupted = {tid for tid, evs in before.items() if evs and evs[-1]["node_id"] == lost_node}
    assert victim in interrupted
    survivor_ids = cluster.worker_node_ids - {lost_node}
    for trial_id, trial_events in events.items():
        starts = [e for e in trial_events if e["event"] == "start"]
        final = trials[trials["trial_id"] == trial_id].iloc[0]
        rows = progress[progress["trial_id"] == trial_id].set_index("iteration")
        if trial_id not in interrupted:
            assert [s["resumed_from"] for s in starts] == [0] and final["metric.resumed_from"] == 0
            continue
        # one retry, on the surviving worker, after the kill, from the last checkpoint Tune had
        assert len(starts) == 2, (trial_id, trial_events)
        retry = starts[1]
        assert retry["node_id"] in survivor_ids and retry["time"] > killed_at
        checkpointed = [e["iteration"] for e in before[trial_id] if e["event"] == "report" and e["checkpointed"]]
        resumed = retry["resumed_from"]
        assert resumed % 2 == 0 and resumed >= max(checkpointed, default=0)
        reports_after = [e["iteration"] for e in trial_events if e["event"] == "report" and e["time"] > retry["time"]]
        assert reports_after == list(range(resumed + 1, STEPS + 1))  # not from scratch
        # progress past the checkpoint holds the retry's reports, not those lost with the node
        assert (rows.loc[resumed + 1:, "metric.resumed_from"] == resumed).all()
        assert (rows.loc[:resumed, "metric.resumed_from"] == 0).all()
        assert final["metric.resumed_from"] == resumed
    lost_reports = [e["iteration"] for e in before[victim] if e["event"] == "report"]
    victim_resumed = [e for e in events[victim] if e["event"] == "start"][1]["resumed_from"]
    # the victim had checkpointed (the retry did not start over), then made a report the node took with it
    assert 2 <= victim_resumed < max(lost_reports)
