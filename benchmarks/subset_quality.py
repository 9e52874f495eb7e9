"""What fitting the GP on a subset costs in search quality, against fitting it on everything.

    python -m benchmarks.subset_quality [--history 600] [--steps 20] [--seeds 5] [--problem hartmann6]

Past ``raysweep.searchers.ax.subset.MAX_MODEL_ROWS`` usable observations, a
Bayesian phase fits its GP on a subset of them (own trials, the best, the
incumbent's neighbours, a space-filling rest). Here one Bayesian phase starts
after ``--history`` uniformly random full-fidelity runs of a problem of
``benchmarks.search_quality_problems`` (noisy, minimised) and makes ``--steps``
model-based suggestions one at a time, each completed before the next. The same
seeds run twice: with the subset (raysweep's default) and with every
observation (the limit raised above the history). Reported per variant, median
and spread over seeds:

* ``regret of the phase's best``: normalised regret (0 at the optimum, 1 for an
  average random config) of the best true value among the phase's own
  suggestions;
* ``improved on history``: seeds where that beats the history's best;
* ``first suggestion`` (the cold GP fit) and ``median suggestion`` CPU seconds
  of this process.

Not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

from benchmarks.search_quality_problems import PROBLEMS, Problem
from raysweep.records import Observation, TrialStatus
from raysweep.searchers.ax import AxSearcher, subset
from raysweep.space import Parameter, SearchSpace


def space_of(problem: Problem) -> SearchSpace:
    return SearchSpace(
        tuple(Parameter(name, "uniform", min=lo, max=hi) for name, (lo, hi) in zip(problem.names, problem.bounds))
    )


def noisy_value(problem: Problem, params: dict, rng: np.random.Generator) -> float:
    return problem.true_value(params) + problem.noise_std * float(rng.standard_normal())


def run_phase(problem: Problem, history_size: int, steps: int, seed: int, limit: int) -> dict[str, float]:
    space = space_of(problem)
    rng = np.random.default_rng(seed)
    history = [
        Observation(f"h{i}", 1, config, TrialStatus.COMPLETED, noisy_value(problem, config, rng), 1.0 + rng.random(), 0.0, 1)
        for i, config in enumerate(space.sample(rng, history_size))
    ]
    subset.MAX_MODEL_ROWS = limit
    searcher = AxSearcher(space, metric="value", mode="min", num_trials=steps, history=history, random_samples=0, seed=seed)
    regrets, cpus = [], []
    for step in range(steps):
        started = time.process_time()
        config = searcher.suggest(f"t{step}")
        cpus.append(time.process_time() - started)
        params = {name: config[name] for name in problem.names}
        regrets.append(problem.regret(params))
        searcher.on_trial_complete(f"t{step}", {"value": noisy_value(problem, params, rng), "time_total_s": 1.0 + rng.random()})
    history_best = min(problem.regret(o.params) for o in history)
    return {
        "phase_best": min(regrets),
        "improved": float(min(regrets) < history_best),
        "first_cpu": cpus[0],
        "median_cpu": statistics.median(cpus[1:]) if len(cpus) > 1 else float("nan"),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problem", default="hartmann6", choices=sorted(PROBLEMS))
    parser.add_argument("--history", type=int, default=600)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args(argv)
    problem = PROBLEMS[args.problem]
    default_limit = subset.MAX_MODEL_ROWS
    variants = {f"subset of {default_limit}": default_limit, "all observations": args.history + args.steps + 1}
    print(
        f"{problem.name}: {args.history} random observations, then {args.steps} suggestions; {args.seeds} seeds; "
        f"load average at start {', '.join(f'{x:.1f}' for x in os.getloadavg())}"
    )
    print()
    print("| GP fit on | regret of the phase's best, median [min, max] | improved on history | first suggestion CPU s (median) | median suggestion CPU s |")
    print("|---|---|---|---|---|")
    for label, limit in variants.items():
        results = [run_phase(problem, args.history, args.steps, seed, limit) for seed in range(args.seeds)]
        best = [r["phase_best"] for r in results]
        print(
            f"| {label} | {statistics.median(best):.3f} [{min(best):.3f}, {max(best):.3f}] "
            f"| {int(sum(r['improved'] for r in results))}/{args.seeds} "
            f"| {statistics.median(r['first_cpu'] for r in results):.2f} "
            f"| {statistics.median(r['median_cpu'] for r in results):.2f} |",
            flush=True,
        )
    subset.MAX_MODEL_ROWS = default_limit
    print()
    print(f"load average at end {', '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
