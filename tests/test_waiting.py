"""What pending trials wait for: the words of the live view, from one trial's need and Ray's numbers."""

from __future__ import annotations

import pytest

from raysweep.waiting import ClusterResources, describe_wait


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
