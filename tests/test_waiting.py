"""What pending trials wait for: the words of the live view, from one trial's need and Ray's numbers,
and the live view of a multi-node cluster whose GPU is taken until a GPU worker joins."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from raysweep.waiting import ClusterResources, describe_wait
from tests.test_multinode import placement_experiment, started_cluster, sweep_command
from tests.trainables.placement import read_records


def _cluster(total: dict, free_per_node: list[dict], node_types: list[dict] = ()) -> ClusterResources:
    free: dict[str, float] = {}
    for node in free_per_node:
        for name, amount in node.items():
            free[name] = free.get(name, 0.0) + amount
    return ClusterResources(total=total, free=free, free_per_node=tuple(free_per_node), node_types=tuple(node_types))


@pytest.mark.parametrize(
    "pending, need, cluster, expected",
    [
        # the GPUs are taken (another job): only the short resource is named
        (3, {"CPU": 1, "GPU": 1}, _cluster({"CPU": 8, "GPU": 2}, [{"CPU": 3}, {"CPU": 3}]),
         "waiting for resources: 3 trials pending, each needs 1 GPU; cluster has 0 of 2 GPUs free"),
        (1, {"CPU": 4}, _cluster({"CPU": 4}, [{"CPU": 1.0}]),
         "waiting for resources: 1 trial pending, each needs 4 CPUs; cluster has 1 of 4 CPUs free"),
        (2, {"CPU": 2, "GPU": 0.5}, _cluster({"CPU": 2, "GPU": 1}, [{"GPU": 0.25}]),
         "waiting for resources: 2 trials pending, each needs 2 CPUs and 0.5 GPU; "
         "cluster has 0 of 2 CPUs and 0.25 of 1 GPU free"),
        (2, {"CPU": 2, "GPU": 1}, _cluster({"CPU": 2}, [{"CPU": 1}]),
         "waiting for resources: 2 trials pending, each needs 2 CPUs and 1 GPU; cluster has 1 of 2 CPUs free and no GPU"),
        # no GPU node yet, an autoscaler that can start one
        (4, {"CPU": 1, "GPU": 1}, _cluster({"CPU": 2}, [{"CPU": 2}], node_types=[{"CPU": 2}, {"CPU": 8, "GPU": 4}]),
         "waiting for resources: 4 trials pending, each needs 1 GPU; cluster has no GPU; the autoscaler may add nodes"),
        # an autoscaler whose node types cannot hold a trial adds nothing to say
        (4, {"CPU": 1, "GPU": 1}, _cluster({"CPU": 2, "GPU": 1}, [{"CPU": 2}], node_types=[{"CPU": 16}]),
         "waiting for resources: 4 trials pending, each needs 1 GPU; cluster has 0 of 1 GPU free"),
        # enough CPUs free in all, but no node has two of them
        (2, {"CPU": 2}, _cluster({"CPU": 4}, [{"CPU": 1}, {"CPU": 1}]),
         "waiting for resources: 2 trials pending, each needs 2 CPUs on one node; cluster has 2 of 4 CPUs free, "
         "but no node has that much"),
    ],
)
def test_a_wait_names_the_pending_trials_what_each_needs_and_what_is_free(pending, need, cluster, expected):
    assert describe_wait(pending, need, cluster) == expected


def test_room_for_one_trial_on_some_node_is_no_wait():
    assert describe_wait(3, {"CPU": 1, "GPU": 1}, _cluster({"CPU": 4, "GPU": 2}, [{"CPU": 1}, {"CPU": 2, "GPU": 1}])) is None
    # without a per-node reading the cluster-wide sums decide
    assert describe_wait(3, {"CPU": 1}, ClusterResources(total={"CPU": 2}, free={"CPU": 1})) is None
    # Ray's float sums: 0.1 + 0.2 of a GPU free holds a trial needing 0.3
    assert describe_wait(1, {"GPU": 0.3}, _cluster({"GPU": 1}, [{"GPU": 0.1 + 0.2}])) is None


def test_resources_other_than_cpu_and_gpu_are_not_a_trials_need():
    # Tune's request also holds e.g. memory when set; raysweep asks for CPUs and GPUs only.
    cluster = _cluster({"CPU": 2, "memory": 1e9}, [{"CPU": 2}])
    assert describe_wait(1, {"CPU": 1, "memory": 5e9}, cluster) is None


# Another job's actor holding the cluster's one GPU (declared, as on this machine) until the test ends.
_HOLD_GPU = """
import sys, time
import ray
ray.init(address=sys.argv[1], log_to_driver=False)

@ray.remote(num_cpus=0, num_gpus=1)
class Holder:
    def ready(self):
        return True

holder = Holder.remote()
ray.get(holder.ready.remote())
print("holding", flush=True)
time.sleep(3600)
"""


def _wait_for_text(path: Path, text: str, process: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while text not in path.read_text(errors="replace"):
        if process.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"no {text!r} in {path} (exit {process.poll()}):\n{path.read_text(errors='replace')[-3000:]}")
        time.sleep(0.5)


@pytest.mark.timeout(600)
def test_trials_waiting_for_a_gpu_say_so_once_and_run_when_a_gpu_worker_joins(tmp_path):
    """A head without trials, one worker whose GPU another job holds; a second GPU worker joins late."""
    with started_cluster(workers=[(1, 1)], head_cpus=0) as cluster:
        holder = cluster.spawn([sys.executable, "-c", _HOLD_GPU, cluster.address], output=tmp_path / "holder.log")
        _wait_for_text(tmp_path / "holder.log", "holding", holder, timeout=180)
        record_dir = tmp_path / "records"
        experiment = placement_experiment(tmp_path / "run", record_dir, trials=2, gpu=1, work_s=1.0)
        log = tmp_path / "sweep.log"
        sweep = cluster.spawn(sweep_command(cluster, experiment, tmp_path / "exp.yaml"), output=log)
        try:
            _wait_for_text(log, "waiting for resources", sweep, timeout=240)
            joined = cluster.add_worker(1, 1)
            assert sweep.wait(timeout=240) == 0, log.read_text()[-5000:]
        finally:
            if sweep.poll() is None:
                sweep.kill()
                sweep.wait(timeout=30)
        new_node = next(n["node_id"] for n in cluster.nodes if n["name"] == joined)

    lines = log.read_text().splitlines()
    assert [line for line in lines if "resources" in line and line.startswith("[place] ") and "done," not in line] == [
        "[place] waiting for resources: 2 trials pending, each needs 1 GPU; cluster has 0 of 1 GPU free",
        next(line for line in lines if line.startswith("[place] resources free after waiting ")),
    ], "\n".join(lines)  # a log file gets one line when the wait starts and one when it ends
    assert lines.index(next(line for line in lines if line.startswith("[place] resources free"))) < lines.index(
        next(line for line in lines if line.startswith("[place] 1/2 done")))
    assert "Traceback" not in log.read_text()
    records = read_records(record_dir)
    assert len(records) == 2 and {r["node_id"] for r in records} == {new_node}
    trials = pd.read_parquet(tmp_path / "run" / "results" / "trials")
    assert len(trials) == 2 and (trials["status"] == "completed").all()
