"""Whether the Ray cluster could ever run one trial of the experiment.

Tune waits for resources without end: a trial asking for a GPU on a cluster
that has none would leave a phase waiting forever. Before a phase starts,
raysweep compares one trial's request (``resources.cpu`` and ``resources.gpu``,
all on one node, as Tune places a trial) with every live node and, on an
autoscaling cluster, with every node type the autoscaler may add. A request
that none of them can hold is refused as bad input; one that only a node type
not yet started can hold is fine (the live view then says what the trials wait
for).
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

from raysweep.errors import SpecError
from raysweep.spec import Resources


def node_capacities() -> list[dict[str, float]]:
    """Total resources of each live node, and of each node type the autoscaler may start.

    Shape: one ``{"CPU": n, "GPU": n, ...}`` per node or node type. Requires a
    connected Ray (``ray.init``).
    """
    import ray

    capacities = [dict(node.get("Resources", {})) for node in ray.nodes() if node.get("Alive")]
    return capacities + autoscaler_node_types()


def autoscaler_node_types() -> list[dict[str, float]]:
    """The resources of each node type of the autoscaler's config, if the cluster has one.

    Ray publishes the config it autoscales with in its GCS (read through
    ``ray._private.state``, the only reader Ray has); a cluster without an
    autoscaler, or a Ray that moved it, gives an empty list.
    """
    try:
        from ray._private.state import state

        config = state.get_cluster_config()
    except Exception:  # not exposed by this Ray: judge the live nodes alone
        return []
    if config is None:
        return []
    return [
        {key: float(value) for key, value in group.resources.items()}
        for group in config.node_group_configs
        if group.max_count != 0
    ]


def check_feasible(resources: Resources, capacities: Iterable[Mapping[str, Any]]) -> None:
    """Raise SpecError when no node in ``capacities`` can hold one trial's ``resources``.

    The message names the field that no node can satisfy (``resources.gpu`` or
    ``resources.cpu``), or ``resources`` when each fits somewhere but never both
    on one node.
    """
    capacities = list(capacities)
    cpu, gpu = float(resources.cpu), float(resources.gpu)

    def fits(node: Mapping[str, Any], need_cpu: float, need_gpu: float) -> bool:
        return float(node.get("CPU", 0)) >= need_cpu and float(node.get("GPU", 0)) >= need_gpu

    if any(fits(node, cpu, gpu) for node in capacities):
        return
    if not any(fits(node, 0, gpu) for node in capacities):
        raise SpecError("resources.gpu", f"each trial asks for {_amount(gpu, 'GPU')} but {_NO_NODE}", _plain(gpu))
    if not any(fits(node, cpu, 0) for node in capacities):
        raise SpecError("resources.cpu", f"each trial asks for {_amount(cpu, 'CPU')} but {_NO_NODE}", _plain(cpu))
    raise SpecError(
        "resources",
        f"each trial asks for {_amount(cpu, 'CPU')} and {_amount(gpu, 'GPU')} on one node but no node of the Ray "
        "cluster has both",
        {"cpu": _plain(cpu), "gpu": _plain(gpu)},
    )


_NO_NODE = "no node of the Ray cluster has that many"


def _plain(value: float) -> float | int:
    return int(value) if value == int(value) else value


def _amount(value: float, unit: str) -> str:
    return f"{_plain(value)} {unit}" + ("s" if value > 1 else "")
