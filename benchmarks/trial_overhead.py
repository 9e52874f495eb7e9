"""Per-trial overhead of raysweep against bare Ray Tune, both reusing actors, on one machine.

    python -m benchmarks.trial_overhead [--trials 60] [--repeats 2] [--searcher random|ax]

Both run ``--trials`` trials of the simulated Branin run of
``benchmarks/search_quality_problems.py`` (9 reports, no sleeping: the trial's
own work is a few milliseconds, so the wall time is orchestration), one CPU
per trial, on a local Ray with 2 CPUs, FIFO scheduling, random configs:

* ``raysweep``: one ``random`` phase through ``raysweep.sweep.run`` (its
  scheduler with a time budget, its Parquet recorder and progress callback,
  state.json);
* ``bare Tune``: ``tune.Tuner`` with ``BasicVariantGenerator``, no callbacks,
  ``reuse_actors=True``, in the same process and environment (raysweep's
  ``connect`` sets ``TUNE_DISABLE_AUTO_CALLBACK_LOGGERS=1`` for both).

With ``--searcher ax`` the comparison is of a Bayesian phase: raysweep's
``ax`` phase (5 quasi-random starts, then the model) against bare Tune with
``OptunaSearch`` (Optuna's TPE sampler, Tune's own integration), both
suggesting one config at a time as slots free up.

Reported per variant: the wall time from the call to its return (median over
``--repeats``, alternating the two) and that x 2 slots / trials, the
slot-seconds each trial costs. Not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SLOTS = 2


def run_raysweep(trials: int, scratch: Path, seed: int, searcher: str = "random") -> float:
    from raysweep import sweep
    from raysweep.spec import experiment_from_dict

    from benchmarks.search_quality_problems import BRANIN

    experiment = experiment_from_dict(
        {
            "name": "overhead",
            "trainable": BRANIN.trainable,
            "metric": "value",
            "mode": "min",
            "storage": str(scratch / f"raysweep-{seed}"),
            "seed": seed,
            "parameters": {n: {"distribution": "uniform", "min": lo, "max": hi} for n, (lo, hi) in zip(BRANIN.names, BRANIN.bounds)},
            "phases": [
                {"name": "phase", "searcher": searcher, "trials": trials, "max_trial_time": 150}
                | ({"random_samples": 5} if searcher == "ax" else {})
            ],
            "wandb": {"mode": "disabled"},
        }
    )
    started = time.perf_counter()
    with open(scratch / f"log-{seed}.txt", "w") as log, contextlib.redirect_stdout(log):
        sweep.run(experiment, stream=sys.stdout)
    return time.perf_counter() - started


def run_bare(trials: int, scratch: Path, seed: int, searcher: str = "random") -> float:
    from ray import tune
    from ray.tune.search.basic_variant import BasicVariantGenerator

    from benchmarks.search_quality_problems import BRANIN, train_branin

    space = {n: tune.uniform(lo, hi) for n, (lo, hi) in zip(BRANIN.names, BRANIN.bounds)}
    space["seed"] = tune.randint(0, 2**31 - 1)
    if searcher == "ax":
        import optuna
        from ray.tune.search.optuna import OptunaSearch

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        search_alg = OptunaSearch(sampler=optuna.samplers.TPESampler(seed=seed))
    else:
        search_alg = BasicVariantGenerator(random_state=seed)
    started = time.perf_counter()
    tune.Tuner(
        tune.with_resources(train_branin, {"cpu": 1}),
        param_space=space,
        tune_config=tune.TuneConfig(metric="value", mode="min", search_alg=search_alg,
                                    num_samples=trials, reuse_actors=True),
        run_config=tune.RunConfig(name=f"bare-{seed}", storage_path=str(scratch / "tune"), verbose=0),
    ).fit()
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--searcher", choices=("random", "ax"), default="random",
                        help="random: raysweep's random phase against Tune's BasicVariantGenerator; "
                        "ax: raysweep's Ax phase against Tune with OptunaSearch (TPE)")
    args = parser.parse_args(argv)
    os.chdir(ROOT)
    import ray

    from raysweep.sweep import connect

    connect(address=None, num_cpus=SLOTS, verbose=False)
    bare = "bare Tune + OptunaSearch" if args.searcher == "ax" else "bare Tune"
    walls: dict[str, list[float]] = {f"raysweep ({args.searcher} phase)": [], bare: []}
    with tempfile.TemporaryDirectory(prefix="raysweep-overhead-") as scratch:
        for repeat in range(args.repeats):
            walls[bare].append(run_bare(args.trials, Path(scratch), repeat, args.searcher))
            walls[f"raysweep ({args.searcher} phase)"].append(run_raysweep(args.trials, Path(scratch), repeat, args.searcher))
    ray.shutdown()
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Ray {ray.__version__}, load average "
          f"{', '.join(f'{x:.1f}' for x in os.getloadavg())}; {args.trials} trials x 9 reports, {SLOTS} slots, "
          f"reuse_actors=True, {args.repeats} repeats")
    print()
    print("| variant | wall s (each repeat) | median wall s | slot-seconds per trial |")
    print("|---|---|---:|---:|")
    for name, values in walls.items():
        median = statistics.median(values)
        print(f"| {name} | {', '.join(f'{v:.1f}' for v in values)} | {median:.1f} | {SLOTS * median / args.trials:.2f} |")
    ours = statistics.median(walls[f"raysweep ({args.searcher} phase)"])
    theirs = statistics.median(walls[bare])
    print()
    print(f"raysweep - {bare}: {ours - theirs:+.1f} s per phase, {SLOTS * (ours - theirs) / args.trials:+.3f} "
          f"slot-seconds per trial; ratio {ours / theirs:.2f}x")


if __name__ == "__main__":
    main()
