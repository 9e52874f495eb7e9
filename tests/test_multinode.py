"""raysweep on a Ray cluster of several nodes with declared GPUs, all on this machine.

The cluster is started with the ``ray start`` CLI, one process per node, inside
a network namespace of its own that holds nothing but a loopback interface:

- Ray advertises a node by the address it would use to reach the outside world
  (``127.0.0.1`` given to ``ray start`` is swapped for it), and binds its gRPC
  servers on every interface. In a namespace whose only interface is ``lo``
  every node is ``127.0.0.1`` and nothing listens anywhere else.
- Its ports cannot clash with the in-process ``ray_local`` fixture or with any
  other Ray on the machine, so fixed ports are safe.
- Stopping it ends exactly the processes inside the namespace, by pid; ``ray
  stop`` would end every Ray process on the machine.
- Each node's ``ray start`` leads a session of its own, which every process
  of the node stays in (Ray gives each worker process a process group of its
  own, but not a session): :meth:`LocalCluster.kill_node` ends one node's
  processes at once with ``SIGKILL``, as when a machine is lost.

Token authentication is on, as ``ray.init()`` turns it on for local clusters in
Ray 2.60, with a token made for this cluster alone: every process (nodes and
drivers) gets ``RAY_AUTH_MODE=token`` and ``RAY_AUTH_TOKEN_PATH``. A driver that
connects to an explicit address never turns token mode on by itself, so without
``RAY_AUTH_MODE=token`` it could not join.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import pandas as pd
import pytest
import yaml

from tests.conftest import ROOT
from tests.trainables.placement import read_records

GCS_PORT = 6379
_BASE_PORT = 30000  # node i's own ports are _BASE_PORT + 10 * i + 0..5; the head is node 0

_NODES_QUERY = """
import json, sys, time
import ray
ray.init(address=sys.argv[1], log_to_driver=False)
wanted, deadline = int(sys.argv[2]), time.monotonic() + float(sys.argv[3])
while True:
    alive = [n for n in ray.nodes() if n["Alive"]]
    if len(alive) >= wanted or time.monotonic() > deadline:
        break
    time.sleep(0.5)
print(json.dumps([
    {"node_id": n["NodeID"], "resources": n["Resources"], "head": "node:__internal_head__" in n["Resources"],
     "port": n["NodeManagerPort"]}
    for n in alive
]))
"""


class ClusterError(RuntimeError):
    """The local cluster could not be started."""


class LocalCluster:
    """A Ray head and worker nodes started with ``ray start`` on this machine.

    ``workers`` gives each worker node's ``(cpus, gpus)``; the head declares
    ``head_cpus`` CPUs and no GPU, so with ``head_cpus=0`` no trial can run on it.
    Nodes are named ``head``, ``worker1``, ``worker2``... in that order.
    ``ray_config`` sets Ray system settings (``RAY_<name>`` variables) for every
    process of the cluster. Use it as a context manager: the nodes stop even
    when the body raises (and their logs then stay in ``root``).
    """

    def __init__(self, workers: Sequence[tuple[float, float]], *, head_cpus: float = 0, root: str | None = None,
                 ray_config: dict[str, object] | None = None) -> None:
        self.workers = list(workers)
        self.head_cpus = head_cpus
        self.ray_config = dict(ray_config or {})
        # Short paths: Ray's Unix sockets live under each node's temp dir.
        self.root = Path(root or tempfile.mkdtemp(prefix="raysweep-cluster-", dir="/tmp"))
        self.address = f"127.0.0.1:{GCS_PORT}"
        self.nodes: list[dict] = []
        self._token_path = self.root / "auth_token"
        self._holder: subprocess.Popen | None = None
        self._node_processes: list[subprocess.Popen] = []
        self._node_by_name: dict[str, subprocess.Popen] = {}
        self._rootless = os.geteuid() != 0

    # -- the environment every process of the cluster gets -----------------------
    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_ADDRESS", "RAY_AUTH"))}
        env.update(
            RAY_AUTH_MODE="token",
            RAY_AUTH_TOKEN_PATH=str(self._token_path),
            RAY_USAGE_STATS_ENABLED="0",
            # A node told to stop stops now: nothing of this cluster needs draining.
            RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S="0",
            PYTHONUNBUFFERED="1",
        )
        env.update({f"RAY_{name}": str(value) for name, value in self.ray_config.items()})
        return env

    @property
    def worker_node_ids(self) -> set[str]:
        return {n["node_id"] for n in self.nodes if not n["head"]}

    @property
    def head_node_id(self) -> str:
        return next(n["node_id"] for n in self.nodes if n["head"])

    def node_name(self, node_id: str) -> str:
        """``head`` or ``workerN`` for a Ray node id of this cluster."""
        return next(n["name"] for n in self.nodes if n["node_id"] == node_id)

    # -- lifecycle ------------------------------------------------------------------
    def __enter__(self) -> "LocalCluster":
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self.stop()
        if exc_type is None:
            self.cleanup()  # after a failure the nodes' logs stay in self.root

    def start(self, timeout: float = 120) -> None:
        for tool in ("unshare", "nsenter", "ip"):
            if shutil.which(tool) is None:
                raise ClusterError(f"{tool} is not installed (util-linux / iproute2); it keeps the test cluster on loopback")
        self.root.mkdir(parents=True, exist_ok=True)
        self._token_path.write_text(secrets.token_hex(32))
        self._token_path.chmod(0o600)
        self._start_namespace()
        head = self._ray_start("head", ["--head", f"--port={GCS_PORT}", f"--num-cpus={self.head_cpus}", "--num-gpus=0",
                                        "--include-dashboard=false"], index=0)
        self._wait_for_log(head, self.root / "head.log", "Ray runtime started", timeout)
        for index, (cpus, gpus) in enumerate(self.workers, start=1):
            self._ray_start(f"worker{index}", [f"--address={self.address}", f"--num-cpus={cpus}", f"--num-gpus={gpus}"], index=index)
        self.nodes = self._query_nodes(1 + len(self.workers), timeout)
        if len(self.nodes) != 1 + len(self.workers):
            raise ClusterError(f"only {len(self.nodes)} of {1 + len(self.workers)} nodes joined; logs in {self.root}")
        for node in self.nodes:  # each node's manager port says which `ray start` it is (see _ray_start)
            node["name"] = "head" if node["head"] else f"worker{(node['port'] - _BASE_PORT) // 10}"

    def add_worker(self, cpus: float, gpus: float, timeout: float = 120) -> str:
        """Start one more worker node of ``cpus`` CPUs and ``gpus`` GPUs, as an autoscaler would; returns its name."""
        index = len(self.workers) + 1
        self.workers.append((cpus, gpus))
        name = f"worker{index}"
        self._ray_start(name, [f"--address={self.address}", f"--num-cpus={cpus}", f"--num-gpus={gpus}"], index=index)
        self.nodes = self._query_nodes(1 + len(self.workers), timeout)
        if len(self.nodes) != 1 + len(self.workers):
            raise ClusterError(f"{name} did not join; logs in {self.root}")
        for node in self.nodes:
            node["name"] = "head" if node["head"] else f"worker{(node['port'] - _BASE_PORT) // 10}"
        return name

    def kill_node(self, name: str, timeout: float = 10) -> None:
        """End every process of node ``name`` with SIGKILL, as when its machine is lost.

        The node's processes are those of its session in the cluster's namespace,
        killed by pid; rounds repeat until none is left, so a worker the raylet
        started meanwhile goes too.
        """
        process = self._node_by_name[name]
        deadline = time.monotonic() + timeout
        while members := [pid for pid in self._pids_in_namespace() if _session_of(pid) == process.pid]:
            if time.monotonic() > deadline:
                raise ClusterError(f"processes {members} of {name} outlived SIGKILL")
            for pid in members:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.05)
        process.wait(timeout=timeout)

    def stop(self) -> None:
        """End every process in the cluster's namespace, by pid, then the namespace."""
        for process in self._node_processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(p.poll() is None for p in self._node_processes):
            time.sleep(0.1)
        for pid in self._pids_in_namespace():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for process in [*self._node_processes, *([self._holder] if self._holder else [])]:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=10)
        self._node_processes.clear()
        self._node_by_name.clear()
        self._holder = None

    def cleanup(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    # -- running things inside the cluster's network -----------------------------------
    def command(self, argv: Sequence[str]) -> list[str]:
        """``argv`` as run inside the cluster's network namespace."""
        assert self._holder is not None, "the cluster is not started"
        enter = ["nsenter", f"--target={self._holder.pid}", "--net"]
        if self._rootless:
            enter += ["--user", "--preserve-credentials"]
        return [*enter, "--", *argv]

    def run(self, argv: Sequence[str], *, cwd: str | os.PathLike[str] = ROOT, timeout: float = 300,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        """Run ``argv`` to its end inside the cluster's network, with the cluster's environment plus ``env``."""
        return subprocess.run(self.command(argv), cwd=cwd, env={**self.env, **(env or {})}, capture_output=True, text=True,
                              timeout=timeout)

    def spawn(self, argv: Sequence[str], *, output: Path, cwd: str | os.PathLike[str] = ROOT) -> subprocess.Popen:
        """Start ``argv`` inside the cluster's network, with the cluster's environment; its output goes to ``output``."""
        with open(output, "w") as log:
            return subprocess.Popen(self.command(argv), cwd=cwd, env=self.env, stdout=log, stderr=subprocess.STDOUT)

    # -- internals ----------------------------------------------------------------------
    def _start_namespace(self) -> None:
        unshare = ["unshare", "--net"] + (["--user", "--map-root-user"] if self._rootless else [])
        self._holder = subprocess.Popen(
            [*unshare, "--", "sh", "-c", "ip link set lo up && echo up && exec sleep 86400"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        )
        assert self._holder.stdout is not None
        line = self._holder.stdout.readline().strip()
        if line != "up":
            error = self._holder.stderr.read() if self._holder.stderr else ""
            self._holder.wait(timeout=10)
            self._holder = None
            raise ClusterError(f"cannot make a loopback-only network namespace: {error.strip() or line}")
        if self._namespace() == os.readlink("/proc/self/ns/net"):
            # stop() ends every process in the namespace: never let that be the machine's own.
            self._holder.kill()
            self._holder.wait(timeout=10)
            self._holder = None
            raise ClusterError("unshare left the cluster in this machine's network namespace")

    def _ray_start(self, name: str, args: list[str], *, index: int) -> subprocess.Popen:
        # Ports of their own for each node's agents: the nodes share one loopback.
        base = _BASE_PORT + 10 * index
        argv = [
            sys.executable, "-m", "ray.scripts.scripts", "start", "--block", *args,
            "--node-ip-address=127.0.0.1", f"--temp-dir={self.root / name}", "--disable-usage-stats",
            f"--node-manager-port={base}", f"--object-manager-port={base + 1}",
            f"--dashboard-agent-listen-port={base + 2}", f"--dashboard-agent-grpc-port={base + 3}",
            f"--runtime-env-agent-port={base + 4}", f"--metrics-export-port={base + 5}",
        ]
        log = open(self.root / f"{name}.log", "w")
        # A session per node, for kill_node; nsenter execs, so this pid leads it.
        process = subprocess.Popen(self.command(argv), env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=self.root,
                                   start_new_session=True)
        log.close()
        self._node_processes.append(process)
        self._node_by_name[name] = process
        return process

    def _wait_for_log(self, process: subprocess.Popen, log: Path, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in log.read_text(errors="replace"):
                return
            if process.poll() is not None:
                raise ClusterError(f"ray start exited with {process.returncode}:\n{log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.2)
        raise ClusterError(f"no {text!r} in {log} after {timeout:g}s")

    def _query_nodes(self, wanted: int, timeout: float) -> list[dict]:
        proc = self.run([sys.executable, "-c", _NODES_QUERY, self.address, str(wanted), str(timeout)], cwd=self.root, timeout=timeout + 60)
        if proc.returncode != 0:
            raise ClusterError(f"cannot list the cluster's nodes:\n{proc.stderr[-3000:]}")
        return json.loads(proc.stdout.strip().splitlines()[-1])

    def _namespace(self) -> str | None:
        if self._holder is None or self._holder.poll() is not None:
            return None
        try:
            return os.readlink(f"/proc/{self._holder.pid}/ns/net")
        except OSError:
            return None

    def _pids_in_namespace(self) -> list[int]:
        namespace = self._namespace()
        if namespace is None or namespace == os.readlink("/proc/self/ns/net"):
            return []
        found = []
        for entry in os.listdir("/proc"):
            if entry.isdigit() and int(entry) != self._holder.pid:
                try:
                    if os.readlink(f"/proc/{entry}/ns/net") == namespace:
                        found.append(int(entry))
                except OSError:
                    continue  # gone, or not ours to look at
        return found


def _session_of(pid: int) -> int | None:
    """The session id of a living process (``None`` once it is gone or a zombie)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    state, _ppid, _group, session = stat.rsplit(")", 1)[1].split()[:4]  # the command name may hold spaces
    return None if state in ("Z", "X") else int(session)


# ----------------------------------------------------------------------------------------
# helpers for the tests
# ----------------------------------------------------------------------------------------
def placement_experiment(run_dir: Path, record_dir: Path, *, trials: int, gpu: float, work_s: float, cpu: float = 0.5) -> dict:
    """An experiment of ``trials`` trials of tests.trainables.placement, each holding ``gpu`` GPUs."""
    return {
        "name": "placement",
        "trainable": "tests.trainables.placement:train",
        "metric": "score",
        "mode": "max",
        "resources": {"cpu": cpu, "gpu": gpu},
        "storage": str(run_dir),
        "parameters": {
            "x": {"distribution": "uniform", "min": 0.0, "max": 1.0},
            # one-value choices: constants every trial's config carries
            "record_dir": {"distribution": "choice", "values": [str(record_dir)]},
            "work_s": {"distribution": "choice", "values": [work_s]},
        },
        "phases": [{"name": "place", "searcher": "random", "trials": trials, "max_trial_time": "2m"}],
        "wandb": {"mode": "disabled"},
    }


def sweep_command(cluster: LocalCluster, experiment: dict, path: Path) -> list[str]:
    """``raysweep run`` of ``experiment`` (written to ``path``) on ``cluster``."""
    path.write_text(yaml.safe_dump(experiment, sort_keys=False))
    return [sys.executable, "-m", "raysweep", "run", str(path), "--address", cluster.address]


def run_sweep(cluster: LocalCluster, experiment: dict, path: Path, timeout: float = 240) -> subprocess.CompletedProcess:
    proc = cluster.run(sweep_command(cluster, experiment, path), timeout=timeout)
    assert proc.returncode == 0, f"raysweep failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return proc


def most_at_once(intervals: Iterable[tuple[float, float]]) -> int:
    """The largest number of [start, end) intervals that overlap at one instant."""
    spans = list(intervals)
    # an end sorts before a start at the same instant: [a, b) and [b, c) do not overlap
    events = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    return peak


def processes_mentioning(text: str) -> list[str]:
    """Command lines of this machine's processes that contain ``text``."""
    found = []
    for entry in os.listdir("/proc"):
        try:
            command = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if entry.isdigit() and int(entry) != os.getpid() and text in command:
            found.append(f"{entry}: {command[:200]}")
    return found


def most_at_once_per_gpu(records: list[dict]) -> dict[tuple[str, str], int]:
    by_gpu: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for record in records:
        for gpu in record["gpu_ids"]:
            by_gpu.setdefault((record["node_id"], gpu), []).append((record["started_at"], record["ended_at"]))
    return {key: most_at_once(spans) for key, spans in by_gpu.items()}


@contextlib.contextmanager
def started_cluster(workers: Sequence[tuple[float, float]], *, head_cpus: float = 0,
                    ray_config: dict[str, object] | None = None) -> Iterator[LocalCluster]:
    """A started :class:`LocalCluster` for a fixture; afterwards no process of it may remain."""
    cluster = LocalCluster(workers, head_cpus=head_cpus, ray_config=ray_config)
    try:
        cluster.start()
    except ClusterError as exc:
        cluster.stop()
        pytest.fail(f"the local multi-node cluster did not start (its logs: {cluster.root}): {exc}")
    try:
        yield cluster
    finally:
        cluster.stop()
    leftovers = processes_mentioning(str(cluster.root))
    cluster.cleanup()
    assert not leftovers, f"processes of the test cluster outlived it: {leftovers}"


# ----------------------------------------------------------------------------------------
# the tests
# ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def gpu_cluster():
    """A head that takes no trials and two workers of 2 CPUs and 2 (declared) GPUs each."""
    with started_cluster(workers=[(2, 2), (2, 2)], head_cpus=0) as cluster:
        yield cluster


@pytest.mark.timeout(150)
def test_whole_gpu_trials_run_on_workers_never_more_than_the_gpus(gpu_cluster, tmp_path):
    heads = [n for n in gpu_cluster.nodes if n["head"]]
    assert len(heads) == 1 and heads[0]["resources"].get("CPU", 0) == 0 and heads[0]["resources"].get("GPU", 0) == 0
    assert sum(n["resources"].get("GPU", 0) for n in gpu_cluster.nodes) == 4

    record_dir = tmp_path / "records"
    experiment = placement_experiment(tmp_path / "run", record_dir, trials=8, gpu=1, work_s=2.0)
    run_sweep(gpu_cluster, experiment, tmp_path / "exp.yaml")

    records = read_records(record_dir)
    assert len(records) == 8
    assert {r["node_id"] for r in records} <= gpu_cluster.worker_node_ids
    assert gpu_cluster.head_node_id not in {r["node_id"] for r in records}
    assert len({r["node_id"] for r in records}) == 2  # both workers took trials
    assert all(len(r["gpu_ids"]) == 1 for r in records)
    assert all(r["cuda_visible_devices"] == r["gpu_ids"][0] for r in records)  # Ray pinned the device
    peak = most_at_once((r["started_at"], r["ended_at"]) for r in records)
    assert 3 <= peak <= 4, f"{peak} trials at once on 4 GPUs"
    assert len({(r["node_id"], r["pid"]) for r in records}) <= 4  # trial actors, each holding a GPU while it lives
    assert max(most_at_once_per_gpu(records).values()) == 1  # a whole GPU is never shared

    frame = pd.read_parquet(tmp_path / "run" / "results" / "trials")
    assert len(frame) == 8 and (frame["status"] == "completed").all()
    assert (frame["cost_s"] >= 2.0).all()
    held = {r["trial_id"]: len(r["gpu_ids"]) for r in records}
    for row in frame.itertuples():
        assert row.gpu_s == pytest.approx(row.cost_s * held[row.trial_id])


@pytest.mark.timeout(150)
def test_half_gpu_trials_share_a_gpu(gpu_cluster, tmp_path):
    record_dir = tmp_path / "records"
    experiment = placement_experiment(tmp_path / "run", record_dir, trials=16, gpu=0.5, work_s=2.0)
    run_sweep(gpu_cluster, experiment, tmp_path / "exp.yaml")

    records = read_records(record_dir)
    assert len(records) == 16
    assert {r["node_id"] for r in records} <= gpu_cluster.worker_node_ids
    assert all(len(r["gpu_ids"]) == 1 for r in records)
    per_gpu = most_at_once_per_gpu(records)
    assert max(per_gpu.values()) == 2  # two half-GPU trials on one device at once ...
    peak = most_at_once((r["started_at"], r["ended_at"]) for r in records)
    assert 4 < peak <= 8, f"{peak} trials at once on 4 GPUs at 0.5 each"  # ... and more trials than GPUs
    assert len({(r["node_id"], r["pid"]) for r in records}) <= 8

    frame = pd.read_parquet(tmp_path / "run" / "results" / "trials")
    assert len(frame) == 16 and (frame["status"] == "completed").all()
    for row in frame.itertuples():
        assert row.gpu_s == pytest.approx(row.cost_s * 0.5)
