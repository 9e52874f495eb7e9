"""How much of a multi-node GPU cluster's time goes to trials, and how much to orchestration.

    python -m benchmarks.scheduling [--trials 40] [--work-s 2] [--workers 2] [--gpus-per-worker 2] [--gpu 1]
                                    [--driver-env NAME=VALUE ...]

Starts a Ray cluster on this machine the way tests/test_multinode.py does (a
head that takes no trials and ``--workers`` nodes declaring 2 CPUs and
``--gpus-per-worker`` GPUs each, all in a loopback-only network namespace), then
runs one raysweep phase of ``--trials`` trials of tests.trainables.placement,
each holding ``--gpu`` GPUs and 0.5 CPU for ``--work-s`` seconds, with
``python -m raysweep run ... --address``. Reported:

* ``utilisation`` = busy trial-seconds / (GPU slots x wall time of the phase),
  where busy is the time each trial's own function ran (as it recorded it) and
  the phase's wall time is raysweep's (state.json: from before Tune starts to
  after the phase's Parquet is committed);
* ``overhead per trial`` = (slots x wall - busy) / trials;
* where that overhead goes: before the first trial starts (split, from Ray's
  task events, into the driver's set-up until it submits the first trial actor,
  the wait for an actor's process to start, and the first trial's own start),
  after the last one ends (stopping, committing), and between one trial's end
  and the next trial's start on the same (reused) actor.

``--driver-env`` sets variables in the raysweep driver's environment only, to
weigh a change before making it (raysweep's own settings use ``setdefault``).

Not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import ray
import yaml

from tests.conftest import ROOT
from tests.test_multinode import LocalCluster, most_at_once, placement_experiment
from tests.trainables.placement import read_records


def measure(trials: int, work_s: float, workers: int, gpus_per_worker: int, gpu: float, driver_env: dict[str, str]) -> dict:
    with tempfile.TemporaryDirectory(prefix="raysweep-bench-") as scratch:
        scratch_dir = Path(scratch)
        cluster = LocalCluster(workers=[(2, gpus_per_worker)] * workers, head_cpus=0)
        started = time.monotonic()
        with cluster:
            cluster_start_s = time.monotonic() - started
            experiment = placement_experiment(scratch_dir / "run", scratch_dir / "records", trials=trials, gpu=gpu, work_s=work_s)
            path = scratch_dir / "scheduling.yaml"
            path.write_text(yaml.safe_dump(experiment, sort_keys=False))
            driver_started = time.monotonic()
            argv = [sys.executable, "-m", "raysweep", "run", str(path), "--address", cluster.address]
            proc = cluster.run(argv, timeout=1800, env=driver_env)
            driver_s = time.monotonic() - driver_started
            if proc.returncode != 0:
                raise RuntimeError(f"raysweep failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
            events = _timeline(cluster, scratch_dir / "timeline.json")
        state = json.loads((scratch_dir / "run" / "state.json").read_text())["phases"][0]
        frame = pd.read_parquet(scratch_dir / "run" / "results" / "trials")
        records = read_records(scratch_dir / "records")

    slots = int(workers * gpus_per_worker / gpu)
    wall = state["ended_at"] - state["started_at"]
    busy = sum(r["ended_at"] - r["started_at"] for r in records)
    first_start = min(r["started_at"] for r in records)
    last_end = max(r["ended_at"] for r in records)
    handoffs = []
    by_actor: dict[int, list[dict]] = {}
    for record in records:
        by_actor.setdefault(record["pid"], []).append(record)
    for runs in by_actor.values():
        handoffs += [b["started_at"] - a["ended_at"] for a, b in zip(runs, runs[1:])]
    # Where the wait before the first trial goes, from Ray's own task events: the driver until it
    # submits the first trial actor (Tune's set-up), then until an actor's constructor starts (a
    # worker process starting and importing Ray and Tune), then until the first trial's function runs.
    submits = [e["ts"] / 1e6 for e in events if e.get("name") == "submit_task" and str(e.get("tid", "")).startswith("driver")]
    inits = [e["ts"] / 1e6 for e in events if e.get("name") == "__init__"]
    first_submit = min((t for t in submits if t >= state["started_at"]), default=float("nan"))
    first_init = min((t for t in inits if t >= first_submit), default=float("nan"))
    return {
        "trials": len(records),
        "driver_setup": first_submit - state["started_at"],
        "actor_start": first_init - first_submit,
        "first_run": first_start - first_init,
        "completed": int((frame["status"] == "completed").sum()),
        "slots": slots,
        "wall": wall,
        "busy": busy,
        "utilisation": busy / (slots * wall),
        "overhead_per_trial": (slots * wall - busy) / len(records),
        "window_utilisation": busy / (slots * (last_end - first_start)),
        "window_overhead_per_trial": (slots * (last_end - first_start) - busy) / len(records),
        "before_first": first_start - state["started_at"],
        "after_last": state["ended_at"] - last_end,
        "handoff_median": statistics.median(handoffs) if handoffs else float("nan"),
        "handoff_p90": sorted(handoffs)[int(0.9 * (len(handoffs) - 1))] if handoffs else float("nan"),
        "actors": len(by_actor),
        "peak": most_at_once((r["started_at"], r["ended_at"]) for r in records),
        "cost_s": float(frame["cost_s"].sum()),
        "cluster_start": cluster_start_s,
        "driver": driver_s,
    }


def _timeline(cluster: LocalCluster, path: Path) -> list[dict]:
    """Ray's task events of the cluster (every job's), read by a short driver inside the cluster's network."""
    code = (
        "import json, sys, ray; ray.init(address=sys.argv[1], log_to_driver=False); "
        "json.dump(ray.timeline(), open(sys.argv[2], 'w'))"
    )
    proc = cluster.run([sys.executable, "-c", code, cluster.address, str(path)], timeout=120)
    if proc.returncode != 0:
        raise RuntimeError(f"reading Ray's timeline failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return [e for e in json.loads(path.read_text()) if e.get("ph") == "X"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--work-s", type=float, default=2.0, help="seconds each trial holds its GPU")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--gpus-per-worker", type=int, default=2)
    parser.add_argument("--gpu", type=float, default=1.0, help="GPUs per trial")
    parser.add_argument("--driver-env", action="append", default=[], metavar="NAME=VALUE",
                        help="set in the raysweep driver's environment (repeatable)")
    args = parser.parse_args(argv)
    driver_env = dict(item.split("=", 1) for item in args.driver_env)
    os.chdir(ROOT)
    r = measure(args.trials, args.work_s, args.workers, args.gpus_per_worker, args.gpu, driver_env)

    command = "python -m benchmarks.scheduling " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    print(f"`{command.strip()}`")
    print()
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Ray {ray.__version__}, "
          f"load average {', '.join(f'{x:.1f}' for x in os.getloadavg())}; cluster: head (0 CPU) + "
          f"{args.workers} workers x (2 CPU, {args.gpus_per_worker} GPU); trials hold {args.gpu:g} GPU, 0.5 CPU, "
          f"{args.work_s:g} s of work each")
    print()
    print("| figure | value |")
    print("|---|---:|")
    rows = [
        ("trials (completed)", f"{r['trials']} ({r['completed']})"),
        ("GPU slots / most trials at once", f"{r['slots']} / {r['peak']}"),
        ("phase wall time", f"{r['wall']:.2f} s"),
        ("busy trial-seconds", f"{r['busy']:.2f} s"),
        ("**utilisation** (busy / slots x wall)", f"**{100 * r['utilisation']:.1f} %**"),
        ("**orchestration overhead per trial**", f"**{1000 * r['overhead_per_trial']:.0f} ms**"),
        ("utilisation from first trial start to last trial end", f"{100 * r['window_utilisation']:.1f} %"),
        ("overhead per trial in that window", f"{1000 * r['window_overhead_per_trial']:.0f} ms"),
        ("phase start -> first trial starts", f"{r['before_first']:.2f} s"),
        ("... of which the driver until it submits the first trial actor", f"{r['driver_setup']:.2f} s"),
        ("... then until a trial actor's constructor starts", f"{r['actor_start']:.2f} s"),
        ("... then until the first trial's function runs", f"{r['first_run']:.2f} s"),
        ("last trial ends -> phase done", f"{r['after_last']:.2f} s"),
        ("hand-off on a reused actor, median / p90", f"{1000 * r['handoff_median']:.0f} / {1000 * r['handoff_p90']:.0f} ms"),
        ("trial actors started", f"{r['actors']}"),
        ("sum of recorded cost_s", f"{r['cost_s']:.2f} s"),
        ("cluster start / whole driver process", f"{r['cluster_start']:.1f} s / {r['driver']:.1f} s"),
    ]
    for name, value in rows:
        print(f"| {name} | {value} |")


if __name__ == "__main__":
    main()
