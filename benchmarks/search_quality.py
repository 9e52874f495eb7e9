"""Search quality at equal simulated cost: raysweep's phases against the usual alternatives.

    python -m benchmarks.search_quality --problem hartmann6 --seeds 10
    python -m benchmarks.search_quality --problem branin --seeds 10 [--methods raysweep random ...]
                                        [--budget 50] [--out runs/bench/search_quality] [--report-only]
                                        [--results benchmarks/RESULTS.md]
    python -m benchmarks.search_quality --problem cartpole_ppo --seeds 10 --budget 20
    python -m benchmarks.search_quality --problem fcnet_protein --seeds 10

The modules: this one is the command line and runs one (problem, method, seed);
``search_quality_methods.py`` holds every method, written once;
``search_quality_adapter.py`` the interface each problem implements (how trials
are sized, how a narrowed box becomes parameters, how rows are read, how
recommended configs are scored); ``search_quality_problems.py`` (simulated),
``search_quality_ppo.py`` and ``search_quality_fcnet.py`` the problems;
``search_quality_tune.py`` the bare Ray Tune loop; ``search_quality_report.py``
the analysis and RESULTS.md.

``cartpole_ppo`` is the quickstart's real PPO; see ``benchmarks/search_quality_ppo.py``
for how it is run and scored (cost in environment steps, recommended configs
re-trained with fresh seeds). ``fcnet_protein`` (and ``fcnet_naval``,
``fcnet_parkinsons``, ``fcnet_slice``) are HPOLib's FCNet tables with real
training times as the cost, and no lower fidelity: see
``benchmarks/search_quality_fcnet.py``. What follows describes the simulated problems;
``bohb``, ``screen_topk`` and ``raysweep_single_fidelity`` are described in
``benchmarks/search_quality_methods.py``.

Problems (``benchmarks/search_quality_problems.py``): BoTorch's AugmentedHartmann
and AugmentedBranin, minimised, with the fidelity as the fraction of training
done; one simulated run reports 9 times at rising fidelity, its simulated cost
is affine in the fidelity (a full run is 100 simulated seconds) and every
report carries Gaussian noise. ``--budget`` is the total simulated cost of one
search, in full runs (default 50, i.e. 5000 simulated seconds).

Methods (every Ray-based one on the local Ray of this process, 2 CPUs, one CPU
per trial, ``reuse_actors=True``):

``raysweep``
    raysweep's phases, each run with ``raysweep.sweep.run(..., phase=k)``:
    1. grid (resolution 5), 30% of the cost, ``max_trial_time`` 40 simulated s
       (cheap exploration: runs stop at fidelity 1/3; the budget counts the
       simulated seconds the runs report, the larger of them and its own clock);
    2. Ax warm-started from phase 1, 50% of the cost, 5 quasi-random starts,
       ASHA (grace 1, reduction 3, max_t 9 reports);
    3. Ax narrowed to mean +- 1 std of the top 10% (at least 5) so far, the rest
       of the cost, full runs.
``guide_cold``
    the multi-stage guide's recipe: 30% grid (resolution 5) of full runs;
    50% Bayesian in mean +- 2 std of stage 1's top 10% (at least 5), with
    early stopping (ASHA); the rest Bayesian in mean +- 1 std of stage 2's
    top configs. Each stage is a cold start, as when the guide creates a new
    sweep over narrowed ranges: raysweep rejects ``max_observations_to_load: 0``
    ("must be > 0"), so each stage is its *own* raysweep experiment whose declared
    bounds are the box (computed by ``raysweep.narrowing.narrow`` from the
    previous stage's Parquet) and whose single Ax phase has no history
    (5 quasi-random starts, then BoTorch).
``random``
    raysweep, one ``random`` phase of full runs.
``ax_single``
    raysweep, one Ax phase of full runs over the whole budget (5 quasi-random starts).
``optuna_tpe_hyperband``
    Optuna's own study loop (not Ray): ``TPESampler(seed)`` with default settings
    and ``HyperbandPruner(min_resource=1, max_resource=9, reduction_factor=3)``,
    one trial at a time, stopped once the budget is spent.
``tune_random_asha``
    bare Ray Tune: random search (``BasicVariantGenerator``) with
    ``ASHAScheduler(grace_period=1, reduction_factor=3, max_t=9)``, stopped by a
    ``Stopper`` once the budget is spent.

Equal cost: raysweep counts a trial's cost as ``cost_s`` = max(wall seconds,
Tune's ``time_total_s``); the simulated trainable reports ``time_this_iter_s``,
so ``time_total_s`` and with it the time budgets and ``cost_s`` are simulated
seconds. raysweep's budget is a number of trials, so the benchmark runs one
phase at a time and sizes each phase from the simulated cost left (an ASHA
phase from an expected cost per trial); the last phase gets the rest. Every
trial's cost is its reported ``sim_cost_s``; trials are ordered by the time
they ended, and only trials that ended within the budget count.

Which config a method recommends at a given cost: among its trials that ran
to full fidelity, the one with the best (noisy) observed value; before any did,
the best observed value at any fidelity. Its regret is the true (noiseless)
full-fidelity value, normalised: (f(x) - f*) / (mean of f over the box - f*),
so 0 is the optimum and 1 an average random config.

Output in ``--out``: ``events/<problem>/<method>/seed<k>.csv`` (one row per
trial) and ``.json`` (wall time, the driver's peak memory so far);
``summary.md``, ``summary.csv`` and ``anytime.png`` over every events file
there; ``commands.log``, every command run against it. A (problem, method,
seed) whose events exist is not run again, so an interrupted run resumes (one
seed at a time, ``--first-seed k --seeds 1``, lets each seed be committed as it
ends). To re-run a method whose code changed (raysweep's model), remove its
``events/<problem>/<method>`` folder first.
With ``--results`` the Markdown report (setup, methods, tables with plain
win/loss statements, the plot, overheads) is rewritten after every seed, so a
valid one exists whenever the run stops; it includes
``benchmarks/results/discussion.md``, ``benchmarks/results/overheads.md`` and
``benchmarks/results/scale.md`` (hand-written / pasted) when they exist.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import sys
import time
from pathlib import Path

from benchmarks.search_quality_adapter import ProblemAdapter
from benchmarks.search_quality_methods import METHODS, run_method
from benchmarks.search_quality_problems import PROBLEMS, check_against_botorch
from benchmarks.search_quality_registry import ALL_PROBLEMS
from benchmarks.search_quality_report import report

ROOT = Path(__file__).resolve().parent.parent


def run_one(problem: ProblemAdapter, method: str, seed: int, budget: float, out: Path) -> Path:
    """Run one (problem, method, seed) unless its events exist; return the events CSV."""
    events = out / "events" / problem.name / method / f"seed{seed}.csv"
    if events.exists():
        return events
    work = out / "work" / problem.name / method / f"seed{seed}"
    if work.exists():
        shutil.rmtree(work)  # an interrupted attempt
    work.mkdir(parents=True)
    events.parent.mkdir(parents=True, exist_ok=True)
    budget_s = budget * problem.full_cost
    started = time.monotonic()
    # raysweep's progress callback keeps its stream, and Tune pickles the callbacks: a file object
    # passed as run(stream=...) does not pickle, sys.stdout does (by reference), so stdout is redirected.
    with open(work / "log.txt", "w") as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        rows = run_method(problem, method, seed, budget_s, work, sys.stdout)
    search_wall = time.monotonic() - started
    rows = rows.sort_values("ended", kind="stable").reset_index(drop=True)
    rows["ended"] -= rows["ended"].min() if len(rows) else 0.0
    # the regret of the configs (PPO re-trains the recommended ones: not part of the search's cost)
    with open(work / "log.txt", "a") as log:
        rows["regret"] = problem.regret(rows, budget_s, out, log)
    wall = time.monotonic() - started
    tmp = events.with_suffix(".tmp")
    rows.to_csv(tmp, index=False)
    meta = {
        "problem": problem.name, "method": method, "seed": seed, "budget": budget, "budget_cost": budget_s,
        "cost_unit": problem.cost_unit, "wall_s": search_wall,
        "wall_s_with_evaluation": wall,
        "trials": len(rows), "sim_cost_s": float(rows["cost"].sum()),
        "driver_maxrss_mib_so_far": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    events.with_suffix(".json").write_text(json.dumps(meta, indent=1))
    os.replace(tmp, events)
    shutil.rmtree(work, ignore_errors=True)
    return events


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problem", nargs="+", choices=sorted(ALL_PROBLEMS), default=["hartmann6"])
    parser.add_argument("--seeds", type=int, default=10, help="seeds 0 .. N-1 (or from --first-seed)")
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--budget", type=float, default=None,
                        help="total cost in full runs (default: the problem's; " + ", ".join(
                            f"{name} {p.default_budget:g}" for name, p in ALL_PROBLEMS.items()) + ")")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench" / "search_quality")
    parser.add_argument("--results", type=Path, default=None, help="also write this Markdown report (e.g. benchmarks/RESULTS.md)")
    parser.add_argument("--report-only", action="store_true", help="rebuild summary.md / anytime.png from the events")
    args = parser.parse_args(argv)
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    results = args.results.resolve() if args.results else None

    if not args.report_only:
        with open(out / "commands.log", "a") as log:
            log.write("python -m benchmarks.search_quality " + " ".join(argv if argv is not None else sys.argv[1:]) + "\n")
        if any(name in PROBLEMS for name in args.problem):
            check_against_botorch()
        os.chdir(ROOT)  # raysweep resolves module:function trainables from the working directory
        import ray

        from raysweep.sweep import connect

        ours = not ray.is_initialized()
        connect(address=None, num_cpus=2, verbose=False)  # a local Ray; joins none
        try:
            for seed in range(args.first_seed, args.first_seed + args.seeds):
                for name in args.problem:
                    problem = ALL_PROBLEMS[name]
                    budget = args.budget or problem.default_budget
                    for method in args.methods:
                        if method not in problem.methods:
                            continue
                        started = time.monotonic()
                        path = run_one(problem, method, seed, budget, out)
                        meta = json.loads(path.with_suffix(".json").read_text())
                        print(f"{name} {method} seed {seed}: {meta['trials']} trials, {meta['wall_s']:.0f} s "
                              f"(this call {time.monotonic() - started:.0f} s)", flush=True)
                if results is not None:  # a valid report after every seed, in case the run is cut short
                    report(out, results)
        finally:
            if ours:
                ray.shutdown()
    report(out, results)
    print(f"driver peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    print(f"wrote {out / 'summary.md'}, {out / 'summary.csv'}, {out / 'anytime.png'}" + (f", {results}" if results else ""))


if __name__ == "__main__":
    main()
