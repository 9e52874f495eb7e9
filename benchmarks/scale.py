"""A sweep at scale: a 1,000-trial random phase, then a short Bayesian phase.

    python -m benchmarks.scale [--trials 1000] [--bayes-trials 20] [--num-cpus 2]
                               [--storage DIR] [--out FILE]

One experiment, run with ``raysweep.sweep.run`` in this process (the driver) on a
local Ray with ``--num-cpus`` CPUs: phase 1 ``random`` of ``--trials`` trials of
``tests.trainables.synthetic:train`` (three parameters, four reports, no
sleeping: its own work is a few milliseconds, so what is measured is the
orchestration), then phase 2 ``ax`` of ``--bayes-trials`` trials with no random
starts, warm-started from all of phase 1. W&B is disabled (one W&B run per
trial is its own cost, not the one measured here). Measured, each line of the
table written to ``--out`` as soon as it is known:

* **phase 1**: wall and CPU seconds of ``sweep.run`` (CPU: this whole process,
  ``time.process_time``); the **gap growth**: the gaps between consecutive
  trial starts (``started_at`` in Parquet), their mean and median over the last
  100 trials divided by those over the first 100 (100 becomes a quarter of the
  trials when there are fewer than 400); the driver's **peak RSS**
  (``resource.getrusage(RUSAGE_SELF).ru_maxrss``) before and after it (Ax and
  torch are imported only after it, as a sweep imports them for its first
  Bayesian phase);
* **the Bayesian phase's searcher at its start**, built from the run directory
  as the sweep builds it (``make_ax_searcher``): attaching the history, one
  ``save(path)`` (time and bytes), ``pickle.dumps`` of it, and its first
  suggestion (a cold GP fit: phase 1 left no GP hyperparameters). This
  searcher is then dropped;
* **phase 2** run for real: its wall and CPU seconds, and every
  ``AxSearcher.suggest`` and ``AxSearcher.save`` call Tune made in it, timed by
  wrapping the two methods for the phase (their results are passed through
  untouched): the first suggestion, the median of the later ones, the number
  of saves and their median and largest time;
* ``python -m raysweep status RUN_DIR`` and ``python -m raysweep report
  RUN_DIR`` as subprocesses, the whole command as a user types it: wall seconds
  and CPU seconds of the child (``RUSAGE_CHILDREN``, user + system).

Every time is "wall / CPU" seconds. The load average is printed at the start
and beside each figure (2 cores: above 2, other processes competed for them).
Not a test: nothing is asserted, except that the commands succeed.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pickle
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pandas as pd

from benchmarks.timing import Timing, timed

ROOT = Path(__file__).resolve().parent.parent
GAP_WINDOW = 100


def experiment_dict(storage: Path, trials: int, bayes_trials: int) -> dict[str, Any]:
    """The benchmark's experiment: a random phase and a Bayesian one on the synthetic trainable."""
    return {
        "name": "scale",
        "trainable": "tests.trainables.synthetic:train",
        "metric": "score",
        "mode": "max",
        "storage": str(storage),
        "seed": 0,
        "parameters": {
            "x": {"distribution": "uniform", "min": 0.0, "max": 1.0},
            "lr": {"distribution": "log_uniform", "min": 1e-4, "max": 1e-2},
            "act": {"distribution": "choice", "values": ["tanh", "relu"]},
        },
        "phases": [
            {"name": "random", "searcher": "random", "trials": trials, "max_trial_time": "60s"},
            {"name": "bayes", "searcher": "ax", "trials": bayes_trials, "random_samples": 0, "max_trial_time": "60s"},
        ],
        "wandb": {"mode": "disabled"},
    }


def start_gaps(run_dir: Path, phase: int) -> dict[str, float]:
    """Mean and median gap between consecutive trial starts, last window / first window.

    Returns ``window`` (trials per window), ``first_mean_s``, ``last_mean_s``,
    ``mean_ratio``, ``first_median_s``, ``last_median_s``, ``median_ratio``.
    """
    trials = pd.read_parquet(run_dir / "results" / "trials" / f"phase={phase}")
    starts = np.sort(trials["started_at"].astype("int64").to_numpy()) / 1e3  # ms -> s
    window = GAP_WINDOW if len(starts) >= 4 * GAP_WINDOW else max(2, len(starts) // 4)
    first, last = np.diff(starts[:window]), np.diff(starts[-window:])
    return {
        "window": window,
        "first_mean_s": float(first.mean()),
        "last_mean_s": float(last.mean()),
        "mean_ratio": float(last.mean() / first.mean()) if first.mean() > 0 else float("nan"),
        "first_median_s": float(np.median(first)),
        "last_median_s": float(np.median(last)),
        "median_ratio": float(np.median(last) / np.median(first)) if np.median(first) > 0 else float("nan"),
    }


def peak_rss_mib() -> float:
    """This process's peak resident set size so far, MiB (``ru_maxrss`` is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_command(args: list[str]) -> tuple[Timing, str]:
    """Run ``python -m raysweep ARGS`` as a user would; its wall / CPU seconds and output."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "raysweep", *args], capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"python -m raysweep {' '.join(args)} exited {done.returncode}: {done.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Timing(wall, cpu), done.stdout


@contextlib.contextmanager
def timing_calls(cls: type, names: tuple[str, ...]) -> Iterator[dict[str, list[tuple[Timing, Any]]]]:
    """Time every call of ``cls``'s methods ``names`` while the block runs: the real
    method runs and its result is returned unchanged; ``calls[name]`` collects
    (timing, result) pairs."""
    calls: dict[str, list[tuple[Timing, Any]]] = {name: [] for name in names}
    originals = {name: getattr(cls, name) for name in names}

    def timed_method(name: str, method: Callable[..., Any]) -> Callable[..., Any]:
        def call(self: Any, *args: Any, **kwargs: Any) -> Any:
            result, took = timed(lambda: method(self, *args, **kwargs))
            calls[name].append((took, result))
            return result

        return call

    for name, method in originals.items():
        setattr(cls, name, timed_method(name, method))
    try:
        yield calls
    finally:
        for name, method in originals.items():
            setattr(cls, name, method)


def searcher_at_start(experiment: Any, scratch: Path) -> dict[str, Any]:
    """The Bayesian phase's searcher, built as the sweep builds it: attach, save,
    pickle and first suggestion. Leaves nothing in the run directory."""
    from raysweep import outcomes, planning
    from raysweep.searchers.ax import make_ax_searcher
    from raysweep.sinks.parquet import ParquetSink

    from raysweep.sweep import run_dir_of

    plan = planning.plan(experiment)[1]
    run_dir = Path(run_dir_of(experiment))
    sink = ParquetSink(run_dir, experiment.space)
    key = f"benchmark#{plan.index}"
    outcomes.register(outcomes.OutcomeBook(key, experiment.metric))
    (searcher, _), attach = timed(lambda: make_ax_searcher(experiment, plan, sink, key))
    state_path = scratch / "searcher-state.json"
    _, save = timed(lambda: searcher.save(str(state_path)))
    pickled, pickle_took = timed(lambda: pickle.dumps(searcher))
    _, first = timed(lambda: searcher.suggest("benchmark-first"))
    kind = searcher.generated_by("benchmark-first")
    # The first fit wrote this phase's GP hyperparameters; the real phase must start as cold as this one did.
    written = run_dir / "model"
    for path in written.glob("*.json"):
        path.unlink()
    with contextlib.suppress(OSError):
        written.rmdir()
    return {
        "observations": len(searcher.observations()),
        "attach": attach,
        "save": save,
        "save_bytes": state_path.stat().st_size,
        "pickle": pickle_took,
        "pickle_bytes": len(pickled),
        "first": first,
        "first_kind": kind,
    }


class Table:
    """The result table, rewritten to ``path`` after every line."""

    def __init__(self, path: Path, preamble: list[str]) -> None:
        self.path = path
        self.lines = [*preamble, "", "| what | measured | load |", "|---|---|---:|"]
        self._write()

    def add(self, what: str, measured: str) -> None:
        line = f"| {what} | {measured} | {os.getloadavg()[0]:.1f} |"
        self.lines.append(line)
        print(line, flush=True)
        self._write()

    def note(self, text: str) -> None:
        self.lines += ["", text]
        print(text, flush=True)
        self._write()

    def _write(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text("\n".join(self.lines) + "\n")
        os.replace(tmp, self.path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=1000, help="trials of the random phase")
    parser.add_argument("--bayes-trials", type=int, default=20, help="trials of the Bayesian phase")
    parser.add_argument("--num-cpus", type=int, default=2, help="CPUs of the local Ray")
    parser.add_argument("--storage", type=Path, default=None, help="the run directory (default: a temporary one, removed)")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench" / "scale.md", help="the result table")
    args = parser.parse_args(argv)
    os.chdir(ROOT)  # the trainable resolves from the repository root, as for users
    with contextlib.ExitStack() as stack:
        storage = args.storage
        if storage is None:
            storage = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="raysweep-scale-"))) / "run"
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="raysweep-scale-scratch-")))
        run(args, storage.resolve(), scratch)


def run(args: argparse.Namespace, storage: Path, scratch: Path) -> None:
    import ray

    from raysweep import sweep
    from raysweep.spec import experiment_from_dict

    table = Table(
        args.out,
        [
            f"`python -m benchmarks.scale --trials {args.trials} --bayes-trials {args.bayes_trials} "
            f"--num-cpus {args.num_cpus}`",
            "",
            f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
            f"Ray {ray.__version__}; load average at start {', '.join(f'{x:.1f}' for x in os.getloadavg())}. "
            "Times: wall / CPU seconds.",
        ],
    )
    experiment = experiment_from_dict(experiment_dict(storage, args.trials, args.bayes_trials))
    ours = not ray.is_initialized()  # a Ray this script starts, it stops; a caller's it leaves running
    log = open(scratch / "sweep.log", "w")  # the sweep's progress lines
    try:
        table.add("driver peak RSS before phase 1 (Python, Ray and raysweep's driver imported)", f"{peak_rss_mib():.0f} MiB")
        _, took = timed(lambda: sweep.run(experiment, phase=1, num_cpus=args.num_cpus, stream=log))
        table.add(f"phase 1 (random, {args.trials} trials): whole phase", f"{took} ({took.wall / args.trials * 1e3:.0f} ms wall per trial)")
        gaps = start_gaps(storage, 1)
        table.add(
            f"phase 1: gap between trial starts, last {gaps['window']} / first {gaps['window']}",
            f"mean {gaps['last_mean_s'] * 1e3:.0f} / {gaps['first_mean_s'] * 1e3:.0f} ms = **{gaps['mean_ratio']:.2f}x**; "
            f"median {gaps['last_median_s'] * 1e3:.0f} / {gaps['first_median_s'] * 1e3:.0f} ms = {gaps['median_ratio']:.2f}x",
        )
        table.add("driver peak RSS after phase 1", f"{peak_rss_mib():.0f} MiB")

        # Imported only now, as the sweep imports Ax for its first Bayesian phase, so that
        # the RSS after phase 1 is that of a driver which has run a random phase only.
        from raysweep.searchers.ax import AxSearcher

        start = searcher_at_start(experiment, scratch)
        n = start["observations"]
        table.add(f"phase 2's searcher at its start ({n} observations): attach (`make_ax_searcher`)", str(start["attach"]))
        table.add("... its `save(path)`", f"{start['save']}, {start['save_bytes'] / 1024:.0f} KB")
        table.add("... `pickle.dumps` of it", f"{start['pickle']}, {start['pickle_bytes'] / 1024:.0f} KB")
        table.add(f"... its first suggestion (cold GP fit; {start['first_kind']})", str(start["first"]))
        table.add("... attach + first suggestion", str(Timing(start["attach"].wall + start["first"].wall, start["attach"].cpu + start["first"].cpu)))

        with timing_calls(AxSearcher, ("suggest", "save")) as calls:
            _, took = timed(lambda: sweep.run(experiment, num_cpus=args.num_cpus, stream=log))
        table.add(f"phase 2 (ax, {args.bayes_trials} trials): whole phase", f"{took} ({took.wall / args.bayes_trials:.2f} s wall per trial)")
        suggests = [took for took, config in calls["suggest"] if isinstance(config, dict)]  # not FINISHED / None
        saves = [took for took, _ in calls["save"]]
        if suggests:
            later = suggests[1:] or suggests
            table.add(
                f"phase 2: `suggest` calls that returned a config ({len(suggests)})",
                f"first {suggests[0]}; later median {Timing(statistics.median(t.wall for t in later), statistics.median(t.cpu for t in later))}",
            )
        if saves:
            table.add(
                f"phase 2: searcher saves by Tune ({len(saves)})",
                f"median {Timing(statistics.median(t.wall for t in saves), statistics.median(t.cpu for t in saves))}; "
                f"largest {max(saves, key=lambda t: t.cpu)}",
            )
        table.add("driver peak RSS after phase 2", f"{peak_rss_mib():.0f} MiB")
    finally:
        log.close()
        if ours:
            ray.shutdown()

    took, _ = run_command(["status", str(storage)])
    table.add("`python -m raysweep status RUN_DIR`", str(took))
    took, _ = run_command(["report", str(storage)])
    table.add("`python -m raysweep report RUN_DIR`", str(took))


if __name__ == "__main__":
    main()
