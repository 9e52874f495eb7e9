"""What a phase's pending trials wait for: one trial's need against the cluster's free resources.

Tune keeps a trial PENDING until some node can give it its resources. In Tune's
trial list two situations look alike and mean different things:

- **queueing**: some trials of the phase run and the others wait for their
  slots (``max_concurrent`` above what the cluster holds at once). This is
  normal; the live view counts those trials as queued.
- **waiting for resources**: no trial of the phase runs and no node has room
  for one right now: other jobs hold the resources, or the nodes that have
  them have not joined yet (an autoscaler starting one). The live view then
  says so with Ray's numbers, from :func:`describe_wait`.

Resources no node could *ever* give are refused before a phase starts
(:mod:`raysweep.resources`); this module is about the wait for resources that
exist but are taken or not there yet.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

# The resources a trial's request names (raysweep's ``resources.cpu`` / ``resources.gpu``).
TRIAL_RESOURCES = ("CPU", "GPU")


@dataclass(frozen=True)
class ClusterResources:
    """One reading of Ray's resources.

    ``total`` and ``free`` are cluster-wide sums (``{"CPU": 4.0, "GPU": 2.0,
    ...}``, as ``ray.cluster_resources()`` / ``ray.available_resources()`` give
    them, a resource of which nothing is free may be missing); ``free_per_node``
    holds one such mapping per live node (empty when unknown), ``node_types``
    the resources of each node type the autoscaler may add (empty without an
    autoscaler).
    """

    total: Mapping[str, float]
    free: Mapping[str, float]
    free_per_node: tuple[Mapping[str, float], ...] = ()
    node_types: tuple[Mapping[str, float], ...] = ()


def read_cluster_resources() -> ClusterResources:
    """Ask the connected Ray for its resources now (a few GCS calls; poll it every few seconds at most).

    The free resources of each node come from Ray's developer API (what Ray
    Serve places replicas by); a driver that cannot read them (a Ray Client
    connection) gets the cluster-wide sums alone.
    """
    import ray

    from raysweep.resources import autoscaler_node_types

    try:
        from ray._private import state

        free_per_node = tuple(dict(node) for node in state.available_resources_per_node().values())
    except Exception:
        free_per_node = ()
    if free_per_node:
        free: dict[str, float] = {}
        for node in free_per_node:
            for name, amount in node.items():
                free[name] = free.get(name, 0.0) + float(amount)
    else:
        free = dict(ray.available_resources())
    return ClusterResources(
        total=dict(ray.cluster_resources()),
        free=free,
        free_per_node=free_per_node,
        node_types=tuple(autoscaler_node_types()),
    )


def describe_wait(pending: int, need: Mapping[str, float], cluster: ClusterResources) -> str | None:
    """The live view's words for ``pending`` trials that each need ``need`` (``{"CPU": 1, "GPU": 1}``).

    Returns ``None`` when a node has room for one such trial now (Tune is about
    to start it: nothing to explain), else a text such as ``waiting for
    resources: 3 trials pending, each needs 1 GPU; cluster has 0 of 2 GPUs
    free``, naming only the resources that are short, with ``; the autoscaler
    may add nodes`` when one of its node types could hold a trial.
    """
    wanted = {name: float(need.get(name, 0.0)) for name in TRIAL_RESOURCES if float(need.get(name, 0.0)) > 0}
    short = [name for name, amount in wanted.items() if _free(cluster.free, name) < amount]
    if short:
        text = f"each needs {_amounts(wanted, short)}; cluster has {_free_of_total(cluster, short)}"
    elif not cluster.free_per_node or any(_fits(node, wanted) for node in cluster.free_per_node):
        return None
    else:  # enough free in all, but spread over nodes in pieces too small for one trial
        free_text = _free_of_total(cluster, list(wanted))
        text = f"each needs {_amounts(wanted, list(wanted))} on one node; cluster has {free_text}, but no node has that much"
    trials = f"{pending} trial{'' if pending == 1 else 's'} pending"
    text = f"waiting for resources: {trials}, {text}"
    if any(_fits(node_type, wanted) for node_type in cluster.node_types):
        text += "; the autoscaler may add nodes"
    return text


def _fits(node: Mapping[str, float], wanted: Mapping[str, float]) -> bool:
    return all(_free(node, name) >= amount for name, amount in wanted.items())


def _free(resources: Mapping[str, float], name: str) -> float:
    # Ray's float sums drift (0.1 + 0.2): a trial needing 0.3 GPU fits in 0.30000000000000004 or 0.29999999999999993.
    return round(float(resources.get(name, 0.0)), 6)


def _number(value: float) -> str:
    return f"{round(value, 4):g}"


def _amount(value: float, name: str) -> str:
    return f"{_number(value)} {name}" + ("s" if value > 1 else "")


def _amounts(wanted: Mapping[str, float], names: list[str]) -> str:
    return " and ".join(_amount(wanted[name], name) for name in names)


def _free_of_total(cluster: ClusterResources, names: list[str]) -> str:
    """``0 of 2 CPUs and 0.5 of 1 GPU free``; a resource the cluster has none of is ``no GPU``."""
    present = [name for name in names if float(cluster.total.get(name, 0.0)) > 0]
    parts = [
        " and ".join(f"{_number(_free(cluster.free, name))} of {_amount(float(cluster.total[name]), name)}" for name in present)
        + " free"
    ] if present else []
    parts += [f"no {name}" for name in names if name not in present]
    return " and ".join(parts)
