"""How long one ``AxSearcher.suggest`` takes as observations accumulate.

    python -m benchmarks.suggestion_latency [--repeats 30] [--sizes 50 100 250]

A synthetic six-parameter problem with every kind of parameter raysweep has
(log, logit_normal, int-log with a mean bias, pow2, linear, choice) and a cost
constraint. For each size N the searcher starts with N earlier observations as
history and then runs a short phase the way Tune drives it: two trials in
flight, each suggestion followed by one completion, so the data grow by one
point per suggestion. Reported per size:

* ``first``: the first suggestion, which fits the GP hyperparameters from scratch
  (once per phase, and after a restore);
* ``median`` / ``p90`` wall seconds of the following suggestions, and the median
  CPU seconds of this process (the wall figures include whatever else the
  machine runs);
* ``refits``: how many of those re-optimised the hyperparameters (the rest
  reused them with the new data).

Not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import time

import numpy as np
import torch

from raysweep.records import Observation, TrialStatus
from raysweep.searchers.ax import AxSearcher
from raysweep.space import Parameter, SearchSpace

SPACE = SearchSpace(
    (
        Parameter("learning_rate", "log_uniform", min=1e-5, max=1e-2),
        Parameter("gamma", "logit_normal", min=0.9, max=0.9999),
        Parameter("timesteps", "int_log_uniform", min=100_000_000, max=5_000_000_000, mean=5e8),
        Parameter("batch_size", "pow2", min=256, max=8192),
        Parameter("clip_coef", "uniform", min=0.1, max=0.4),
        Parameter("activation", "choice", values=("relu", "tanh", "gelu")),
    )
)
COST_LIMIT_S = 1800.0


def objective(config: dict, rng: np.random.Generator) -> float:
    """A smooth optimum in each parameter's own scale, plus noise."""
    return (
        -((math.log10(config["learning_rate"]) + 3.5) ** 2)
        - (math.log10(1.0 - config["gamma"]) + 2.0) ** 2
        + 0.3 * math.log10(config["timesteps"])
        + (0.2 if config["activation"] == "gelu" else 0.0)
        - 0.1 * abs(math.log2(config["batch_size"]) - 10)
        - 5.0 * (config["clip_coef"] - 0.2) ** 2
        + 0.05 * rng.normal()
    )


def cost_s(config: dict) -> float:
    """Seconds: proportional to the timesteps, so the cost constraint binds."""
    return config["timesteps"] / 1e6


def history(size: int, rng: np.random.Generator) -> list[Observation]:
    return [
        Observation(
            trial_id=f"earlier-{i}",
            phase=1,
            params=config,
            status=TrialStatus.COMPLETED,
            objective=objective(config, rng),
            cost_s=cost_s(config),
            gpu_s=0.0,
            iterations=1,
        )
        for i, config in enumerate(SPACE.sample(rng, size))
    ]


def measure(size: int, repeats: int, seed: int = 0) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    started = time.perf_counter()
    searcher = AxSearcher(
        SPACE,
        metric="score",
        mode="max",
        num_trials=repeats + 1,
        history=history(size, rng),
        random_samples=0,
        max_suggestion_cost=COST_LIMIT_S,
        seed=seed,
    )
    construct_s = time.perf_counter() - started
    walls, cpus, refits = [], [], 0
    in_flight: list[tuple[str, dict]] = []
    for position in range(repeats + 1):
        trial_id = f"trial-{position}"
        optimised_before = _optimised_rows(searcher)
        wall, cpu = time.perf_counter(), time.process_time()
        config = searcher.suggest(trial_id)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        if searcher.generated_by(trial_id) != "model":
            raise RuntimeError(f"suggestion {position} was {searcher.generated_by(trial_id)!r}, not model-based")
        if position == 0:
            first = wall
        else:
            walls.append(wall)
            cpus.append(cpu)
            refits += _optimised_rows(searcher) != optimised_before
        in_flight.append((trial_id, config))
        if len(in_flight) == 2:
            done_id, done_config = in_flight.pop(0)
            searcher.on_trial_complete(
                done_id, {"score": objective(done_config, rng), "time_total_s": cost_s(done_config)}
            )
    return {
        "construct": construct_s,
        "first": first,
        "median": statistics.median(walls),
        "p90": float(np.quantile(walls, 0.9)),
        "median_cpu": statistics.median(cpus),
        "refits": refits,
    }


def _optimised_rows(searcher: AxSearcher) -> int | None:
    # Benchmark-only peek at the surrogate's refit bookkeeping.
    surrogate = searcher._surrogate
    return None if surrogate is None else surrogate.rows_at_last_optimisation


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[50, 100, 250])
    # 30 after the first: at 250 observations the data then grow past the 10% that triggers one refit
    parser.add_argument("--repeats", type=int, default=30, help="suggestions measured per size after the first")
    args = parser.parse_args(argv)
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
        f"load average {', '.join(f'{x:.1f}' for x in os.getloadavg())}"
    )
    print()
    print("| observations | first (cold fit) s | median s | p90 s | median CPU s | refits | history attach s |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for size in args.sizes:
        r = measure(size, args.repeats)
        print(
            f"| {size} | {r['first']:.2f} | {r['median']:.2f} | {r['p90']:.2f} | {r['median_cpu']:.2f} "
            f"| {r['refits']}/{args.repeats} | {r['construct']:.2f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
