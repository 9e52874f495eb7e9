"""Search quality at equal simulated cost: raysweep's phases against the usual alternatives.

    python -m benchmarks.search_quality --problem hartmann6 --seeds 10
    python -m benchmarks.search_quality --problem branin --seeds 10 [--methods raysweep random ...]
                                        [--budget 50] [--out runs/bench/search_quality] [--report-only]
                                        [--results benchmarks/RESULTS.md]
    python -m benchmarks.search_quality --problem cartpole_ppo --seeds 10 --budget 20

``cartpole_ppo`` is the quickstart's real PPO; see ``benchmarks/search_quality_ppo.py``
for how it is run and scored (cost in environment steps, recommended configs
re-trained with fresh seeds). What follows describes the simulated problems.

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
       (each run stops at fidelity 1/3: cheap exploration);
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
seed) whose events exist is not run again, so an interrupted run resumes.
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
import math
import os
import platform
import resource
import shutil
import sys
import time
import warnings
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from benchmarks import search_quality_ppo as ppo
from benchmarks.search_quality_problems import FULL_COST_S, PROBLEMS, REPORTS, Problem, check_against_botorch

ALL_PROBLEMS: dict[str, Any] = {**PROBLEMS, ppo.CARTPOLE_PPO.name: ppo.CARTPOLE_PPO}
DEFAULT_BUDGET = 50.0  # full runs, simulated problems (cartpole_ppo: ppo.CARTPOLE_PPO.default_budget)


def is_ppo(problem: Any) -> bool:
    return isinstance(problem, ppo.PPOProblem)


def target(problem: Any) -> float:
    """The normalised regret counted as reaching the optimum (cost to target)."""
    return problem.target if is_ppo(problem) else TARGET


def full_cost(problem: Any) -> float:
    """The cost of one full run, in the problem's cost unit."""
    return problem.full_cost if is_ppo(problem) else FULL_COST_S

ROOT = Path(__file__).resolve().parent.parent
METRIC = "value"
MODE = "min"

SHARES = (0.3, 0.5, 0.2)  # of the cost, per phase / stage
GRID_RESOLUTION = 5
EXPLORE_TIME_S = 40.0  # raysweep phase 1: runs stop at fidelity 1/3 (20 + 10 + 10 simulated s)
GUARD_TIME_S = 1.5 * FULL_COST_S  # time budget of full-run phases: a guard that never binds here
ASHA = {"type": "asha", "time_attr": "training_iteration", "grace_period": 1, "reduction_factor": 3, "max_t": REPORTS}
#: Expected cost of a trial of a Bayesian phase under ASHA, as a fraction of a full run, to size that phase
#: (measured on hartmann6, seed 0, budget 50: 0.63 in raysweep's phase 2 and 0.54 in the guide's stage 2;
#: model-guided trials survive ASHA's rungs more often than random ones, ~0.33).
ASHA_COST_FRACTION = 0.6
NARROW_TOP = {"top_fraction": 0.1, "min_top": 5}
AX_RANDOM_STARTS = 5
TARGET = 0.05  # normalised regret; see the module docstring
CHECKPOINTS = (0.25, 0.5, 1.0)

METHODS = ("raysweep", "guide_cold", "random", "ax_single", "optuna_tpe_hyperband", "tune_random_asha")
LABELS = {
    "raysweep": "raysweep phased (grid -> Ax -> narrowed Ax)",
    "guide_cold": "guide recipe, cold start per stage",
    "random": "random search",
    "ax_single": "single Ax phase",
    "optuna_tpe_hyperband": "Optuna TPE + Hyperband pruner",
    "tune_random_asha": "Ray Tune random + ASHA",
}


# =============================================================================
# running the methods; each returns one row per trial (params, status, fidelity,
# noisy final value, simulated cost, the time it ended)
# =============================================================================
def _experiment(problem: Problem, name: str, seed: int, run_dir: Path, phases: list[dict], bounds=None):
    from raysweep.spec import experiment_from_dict

    bounds = bounds or dict(zip(problem.names, problem.bounds))
    return experiment_from_dict(
        {
            "name": name,
            "trainable": problem.trainable,
            "metric": METRIC,
            "mode": MODE,
            "resources": {"cpu": 1, "gpu": 0},
            "storage": str(run_dir),
            "seed": seed,
            "parameters": {n: {"distribution": "uniform", "min": float(lo), "max": float(hi)} for n, (lo, hi) in bounds.items()},
            "phases": phases,
            "wandb": {"mode": "disabled"},
        }
    )


def _raysweep_rows(run_dir: Path, problem: Problem) -> pd.DataFrame:
    frame = pd.read_parquet(run_dir / "results" / "trials")
    return pd.DataFrame(
        {
            "phase": frame["phase"].astype(int),
            "status": frame["status"].astype(str),
            "fidelity": frame["metric.fidelity"].astype(float),
            "value": frame["objective"].astype(float),
            "cost": frame["metric.sim_cost_s"].astype(float),
            "ended": frame["ended_at"].map(lambda t: t.timestamp()).astype(float),
            "params": [json.dumps({n: float(r[f"param.{n}"]) for n in problem.names}) for _, r in frame.iterrows()],
        }
    )


def _spent(run_dir: Path) -> float:
    path = run_dir / "results" / "trials"
    if not path.exists():
        return 0.0
    return float(pd.read_parquet(path, columns=["metric.sim_cost_s"])["metric.sim_cost_s"].sum())


def _run_phases(problem: Problem, name: str, seed: int, run_dir: Path, phases: list[dict], cost_per_trial: list[float],
                budget_s: float, log) -> pd.DataFrame:
    """Run ``phases`` one at a time in one raysweep experiment, sizing each from the cost left."""
    from raysweep import sweep

    planned: list[int] = []
    for k, phase in enumerate(phases):
        left = budget_s - _spent(run_dir)
        share = SHARES[k] * budget_s if k < len(phases) - 1 else left
        trials = int(min(share, left) // cost_per_trial[k]) if k == len(phases) - 1 else round(min(share, left) / cost_per_trial[k])
        if trials <= 0:
            break
        planned.append(trials)
        specs = [dict(p, trials=(planned[i] if i < len(planned) else 1)) for i, p in enumerate(phases)]
        sweep.run(_experiment(problem, name, seed, run_dir, specs), phase=k + 1, stream=log)
    return _raysweep_rows(run_dir, problem)


def run_raysweep(problem: Problem, seed: int, budget_s: float, work: Path, log) -> pd.DataFrame:
    phases = [
        {"name": "explore", "searcher": "grid", "grid_resolution": GRID_RESOLUTION, "max_trial_time": EXPLORE_TIME_S},
        {"name": "exploit", "searcher": "ax", "random_samples": AX_RANDOM_STARTS, "max_trial_time": GUARD_TIME_S,
         "early_stopping": ASHA},
        {"name": "refine", "searcher": "ax", "random_samples": 0, "max_trial_time": GUARD_TIME_S,
         "narrow": {**NARROW_TOP, "std_multiplier": 1.0}},
    ]
    costs = [EXPLORE_TIME_S, ASHA_COST_FRACTION * FULL_COST_S, FULL_COST_S]
    return _run_phases(problem, "raysweep", seed, work / "run", phases, costs, budget_s, log)


def run_guide_cold(problem: Problem, seed: int, budget_s: float, work: Path, log) -> pd.DataFrame:
    from raysweep import sweep
    from raysweep.narrowing import narrow
    from raysweep.sinks.parquet import ParquetSink

    stages = [
        ({"name": "coarse", "searcher": "grid", "grid_resolution": GRID_RESOLUTION, "max_trial_time": GUARD_TIME_S}, FULL_COST_S, None),
        ({"name": "refine", "searcher": "ax", "random_samples": AX_RANDOM_STARTS, "max_trial_time": GUARD_TIME_S,
          "early_stopping": ASHA}, ASHA_COST_FRACTION * FULL_COST_S, 2.0),
        ({"name": "finetune", "searcher": "ax", "random_samples": AX_RANDOM_STARTS, "max_trial_time": GUARD_TIME_S},
         FULL_COST_S, 1.0),
    ]
    frames = []
    spent = 0.0
    previous: tuple[Any, Path] | None = None
    for k, (phase, cost, k_std) in enumerate(stages):
        left = budget_s - spent
        if k < len(stages) - 1:
            trials = round(min(SHARES[k] * budget_s, left) / cost)
        else:
            trials = int(left // cost)
        if k == 0:
            trials = max(trials, NARROW_TOP["min_top"])  # stage 2 narrows around at least min_top configs
        if trials <= 0:
            break
        bounds = None
        if previous is not None:
            experiment, run_dir = previous
            observations = ParquetSink(run_dir, experiment.space).read_observations()
            box = narrow(experiment.space, observations, MODE, std_multiplier=k_std, **NARROW_TOP)
            bounds = {n: box.ranges[n] for n in problem.names}
        run_dir = work / f"stage{k + 1}"
        experiment = _experiment(problem, f"guide-stage{k + 1}", seed * 10 + k, run_dir, [dict(phase, trials=trials)], bounds)
        sweep.run(experiment, stream=log)
        rows = _raysweep_rows(run_dir, problem).assign(phase=k + 1)
        spent += float(rows["cost"].sum())
        frames.append(rows)
        previous = (experiment, run_dir)
    return pd.concat(frames, ignore_index=True)


def run_random(problem: Problem, seed: int, budget_s: float, work: Path, log) -> pd.DataFrame:
    phases = [{"name": "random", "searcher": "random", "max_trial_time": GUARD_TIME_S}]
    return _run_phases(problem, "random", seed, work / "run", phases, [FULL_COST_S], budget_s, log)


def run_ax_single(problem: Problem, seed: int, budget_s: float, work: Path, log) -> pd.DataFrame:
    phases = [{"name": "bayes", "searcher": "ax", "random_samples": AX_RANDOM_STARTS, "max_trial_time": GUARD_TIME_S}]
    return _run_phases(problem, "ax_single", seed, work / "run", phases, [FULL_COST_S], budget_s, log)


def run_optuna(problem: Problem, seed: int, budget_s: float, work: Path, log) -> pd.DataFrame:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.TPESampler(seed=seed)
    pruner = optuna.pruners.HyperbandPruner(min_resource=1, max_resource=REPORTS, reduction_factor=3)
    study = optuna.create_study(direction="minimize", sampler=sampler, pruner=pruner)
    rows: list[dict] = []
    spent = [0.0]

    def objective(trial: "optuna.Trial") -> float:
        params = {n: trial.suggest_float(n, lo, hi) for n, (lo, hi) in zip(problem.names, problem.bounds)}
        report: dict = {}
        status = "completed"
        for i, report in enumerate(problem.reports(params, seed * 1_000_003 + trial.number), 1):
            trial.report(report["value"], i)
            if i < REPORTS and trial.should_prune():
                status = "early_stopped"
                break
        spent[0] += report["sim_cost_s"]
        rows.append({"phase": 1, "status": status, "fidelity": report["fidelity"], "value": report["value"],
                     "cost": report["sim_cost_s"], "ended": time.time(), "params": json.dumps(params)})
        if status == "early_stopped":
            raise optuna.TrialPruned()
        return report["value"]

    def stop_when_spent(study: "optuna.Study", _trial: Any) -> None:
        if spent[0] >= budget_s:
            study.stop()

    study.optimize(objective, callbacks=[stop_when_spent])
    return pd.DataFrame(rows)


def run_tune_random_asha(problem: Problem, seed: int, budget_s: float, work: Path, log) -> pd.DataFrame:
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    from benchmarks.search_quality_tune import random_asha
    from raysweep.spec import resolve_trainable

    space = {n: tune.uniform(lo, hi) for n, (lo, hi) in zip(problem.names, problem.bounds)}
    space["seed"] = tune.randint(0, 2**31 - 1)
    last = random_asha(
        resolve_trainable(problem.trainable),
        space,
        metric=METRIC,
        mode=MODE,
        seed=seed,
        scheduler=ASHAScheduler(time_attr="training_iteration", grace_period=1, reduction_factor=3, max_t=REPORTS),
        num_samples=int(4 * budget_s / FULL_COST_S / 0.1) + 10,  # more than the budget can pay for
        cost_key="sim_cost_s",  # a run's simulated seconds so far: the sum of its reported time_this_iter_s
        budget=budget_s,
        storage=work / "tune",
    )
    rows = []
    for ended, result, config in last:
        complete = result["fidelity"] >= 1.0
        rows.append({"phase": 1, "status": "completed" if complete else "early_stopped", "fidelity": result["fidelity"],
                     "value": result[METRIC], "cost": result["sim_cost_s"], "ended": ended,
                     "params": json.dumps({n: float(config[n]) for n in problem.names})})
    return pd.DataFrame(rows)


RUNNERS: dict[str, Callable[..., pd.DataFrame]] = {
    "raysweep": run_raysweep,
    "guide_cold": run_guide_cold,
    "random": run_random,
    "ax_single": run_ax_single,
    "optuna_tpe_hyperband": run_optuna,
    "tune_random_asha": run_tune_random_asha,
}


def run_one(problem: Problem, method: str, seed: int, budget: float, out: Path) -> Path:
    """Run one (problem, method, seed) unless its events exist; return the events CSV."""
    events = out / "events" / problem.name / method / f"seed{seed}.csv"
    if events.exists():
        return events
    work = out / "work" / problem.name / method / f"seed{seed}"
    if work.exists():
        shutil.rmtree(work)  # an interrupted attempt
    work.mkdir(parents=True)
    events.parent.mkdir(parents=True, exist_ok=True)
    budget_s = budget * full_cost(problem)
    started = time.monotonic()
    # raysweep's progress callback keeps its stream, and Tune pickles the callbacks: a file object
    # passed as run(stream=...) does not pickle, sys.stdout does (by reference), so stdout is redirected.
    with open(work / "log.txt", "w") as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        if is_ppo(problem):
            rows = ppo.run_method(problem, method, seed, budget_s, work, sys.stdout)
        else:
            rows = RUNNERS[method](problem, seed, budget_s, work, sys.stdout)
    search_wall = time.monotonic() - started
    rows = rows.sort_values("ended", kind="stable").reset_index(drop=True)
    rows["ended"] -= rows["ended"].min() if len(rows) else 0.0
    if is_ppo(problem):  # re-train the recommended configs with fresh seeds (not part of the search's cost)
        with open(work / "log.txt", "a") as log:
            rows["regret"] = ppo.evaluate(problem, rows, budget_s, out / "ppo_evals.json", log)
    else:
        rows["regret"] = [problem.regret(json.loads(p)) for p in rows["params"]]
    wall = time.monotonic() - started
    tmp = events.with_suffix(".tmp")
    rows.to_csv(tmp, index=False)
    meta = {
        "problem": problem.name, "method": method, "seed": seed, "budget": budget, "budget_cost": budget_s,
        "cost_unit": problem.cost_unit if is_ppo(problem) else "simulated seconds", "wall_s": search_wall,
        "wall_s_with_evaluation": wall,
        "trials": len(rows), "sim_cost_s": float(rows["cost"].sum()),
        "driver_maxrss_mib_so_far": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    events.with_suffix(".json").write_text(json.dumps(meta, indent=1))
    os.replace(tmp, events)
    shutil.rmtree(work, ignore_errors=True)
    return events


# =============================================================================
# analysis
# =============================================================================
def incumbent_regret(rows: pd.DataFrame, budget_s: float, fractions: np.ndarray) -> np.ndarray:
    """Normalised regret of the recommended config after each fraction of the budget (NaN before any trial)."""
    cum = rows["cost"].cumsum().to_numpy()
    full = (rows["fidelity"] >= 1 - 1e-9).to_numpy()
    value = rows["value"].to_numpy()
    regret = rows["regret"].to_numpy()
    out = np.full(len(fractions), np.nan)
    for j, fraction in enumerate(fractions):
        seen = cum <= fraction * budget_s + 1e-6
        pool = seen & full if (seen & full).any() else seen
        if pool.any():
            index = np.flatnonzero(pool)[np.argmin(value[pool])]
            out[j] = regret[index]
    return out


def cost_to_target(rows: pd.DataFrame, budget_s: float, target: float) -> float:
    """Fraction of the budget spent when the recommended config first reaches ``target`` (inf if never)."""
    ends = rows["cost"].cumsum().to_numpy() / budget_s
    ends = ends[ends <= 1 + 1e-9]
    if not len(ends):
        return math.inf
    reached = incumbent_regret(rows, budget_s, ends) <= target
    return float(ends[np.argmax(reached)]) if reached.any() else math.inf


def _budget_cost(run: dict) -> float:
    return float(run.get("budget_cost", run["budget"] * FULL_COST_S))


def load(out: Path) -> list[dict]:
    runs = []
    for path in sorted((out / "events").glob("*/*/seed*.csv")):
        meta = json.loads(path.with_suffix(".json").read_text())
        runs.append({**meta, "rows": pd.read_csv(path)})
    return runs


def _median_iqr(values: list[float], digits: int = 3) -> str:
    a = np.array(values, dtype=float)
    a = a[~np.isnan(a)]
    if not len(a):
        return "-"
    q1, med, q3 = np.percentile(a, [25, 50, 75])
    return f"{med:.{digits}f} [{q1:.{digits}f}, {q3:.{digits}f}]"


def summarise(runs: list[dict]) -> pd.DataFrame:
    records = []
    for run in runs:
        budget_s = _budget_cost(run)
        rows = run["rows"]
        at = incumbent_regret(rows, budget_s, np.array(CHECKPOINTS))
        counted = rows[rows["cost"].cumsum() <= budget_s + 1e-6]
        records.append({
            "problem": run["problem"], "method": run["method"], "seed": run["seed"], "budget": run["budget"],
            **{f"regret_{int(100 * c)}": r for c, r in zip(CHECKPOINTS, at)},
            "cost_to_target": cost_to_target(rows, budget_s, target(ALL_PROBLEMS[run["problem"]])),
            "trials": len(counted), "full_runs": int((counted["fidelity"] >= 1 - 1e-9).sum()),
            "cost_used": float(counted["cost"].sum()) / budget_s, "wall_s": run["wall_s"],
        })
    return pd.DataFrame(records)


PROBLEM_ORDER = ("hartmann6", "branin", "cartpole_ppo")


def _ordered(problems) -> list[str]:
    problems = set(problems)
    return [p for p in PROBLEM_ORDER if p in problems] + sorted(problems - set(PROBLEM_ORDER))


def _problem_text(problem: str, budget: float) -> str:
    p = ALL_PROBLEMS[problem]
    if is_ppo(p):
        return (f"Budget: {budget:g} full runs = {budget * p.full_cost:,.0f} {p.cost_unit}. Regret: (500 - {p.metric} of the "
                f"recommended config re-trained with {len(ppo.EVAL_SEEDS)} fresh seeds, mean) / 500; target: regret <= "
                f"{target(p):g} ({p.metric} >= {500 * (1 - target(p)):.0f}).")
    return (f"Budget: {budget:g} full runs = {budget * FULL_COST_S:,.0f} simulated seconds. Regret: (f(x) - f*) / (mean f - f*) "
            f"at full fidelity, noiseless; target: regret <= {TARGET} (f <= {p.optimum + TARGET * p.scale:.4g}; f* = {p.optimum:g}).")


def _sign_test(lower: int, higher: int) -> float:
    from scipy.stats import binomtest

    n = lower + higher
    return float(binomtest(lower, n, 0.5).pvalue) if n else 1.0


def table(per_seed: pd.DataFrame) -> str:
    """One table per problem and plain statements of where raysweep wins and where it does not."""
    lines = []
    for problem in _ordered(per_seed["problem"].unique()):
        sub = per_seed[per_seed["problem"] == problem]
        lines.append(f"### {problem}")
        lines.append("")
        lines.append(
            "Normalised regret of the recommended config (median [IQR] over seeds) after 25% / 50% / 100% of the budget. "
            + _problem_text(problem, float(sub["budget"].iloc[0]))
            + " Cost to target: median share of the budget spent when the recommended config first reaches the target "
            "('not reached' when fewer than half the seeds reach it), and on how many seeds it was reached. "
            "'vs raysweep': on how many seeds raysweep's final regret is lower / higher than the method's, and a two-sided "
            "sign test's p-value."
        )
        lines.append("")
        lines.append("| method | seeds | regret @25% | regret @50% | regret @100% | cost to target (reached) "
                     "| vs raysweep: lower/higher (p) | trials (full runs) | cost used | wall s/seed |")
        lines.append("|---|---:|---|---|---|---|---|---|---:|---:|")
        base = sub[sub["method"] == "raysweep"].set_index("seed")
        verdicts = []
        for method in [m for m in METHODS if m in set(sub["method"])]:
            m = sub[sub["method"] == method].sort_values("seed")
            reached = np.isfinite(m["cost_to_target"])
            ctt = m["cost_to_target"].to_numpy()
            median_ctt = np.median(ctt) if len(ctt) else math.inf
            ctt_text = (f"{median_ctt:.2f}" if math.isfinite(median_ctt) else "not reached") + f" ({int(reached.sum())}/{len(m)})"
            versus = "-"
            if method != "raysweep" and not base.empty:
                other = m.set_index("seed")
                common = base.index.intersection(other.index)
                lower = int((base.loc[common, "regret_100"] < other.loc[common, "regret_100"]).sum())
                higher = int((base.loc[common, "regret_100"] > other.loc[common, "regret_100"]).sum())
                p_value = _sign_test(lower, higher)
                versus = f"{lower}/{higher} (p={p_value:.2g})"
                verdicts.append(_verdict(method, base.loc[common], other.loc[common], lower, higher, p_value))
            lines.append(
                f"| {method} | {len(m)} | {_median_iqr(m['regret_25'])} | {_median_iqr(m['regret_50'])} | "
                f"{_median_iqr(m['regret_100'])} | {ctt_text} | {versus} | {np.median(m['trials']):.0f} "
                f"({np.median(m['full_runs']):.0f}) | {np.median(m['cost_used']):.2f} | {np.median(m['wall_s']):.0f} |"
            )
        lines.append("")
        if verdicts:
            lines.append(f"raysweep against each method on {problem} (same seeds only):")
            lines.append("")
            lines.extend(f"- {v}" for v in verdicts)
            lines.append("")
    return "\n".join(lines)


def _verdict(method: str, ours: pd.DataFrame, theirs: pd.DataFrame, lower: int, higher: int, p_value: float) -> str:
    """One plain sentence: who has the lower median regret at each checkpoint, and whether the per-seed
    difference at the end is more than chance (sign test at 5%)."""
    parts = []
    for column, label in (("regret_25", "25%"), ("regret_50", "50%"), ("regret_100", "100%")):
        a, b = np.nanmedian(ours[column]), np.nanmedian(theirs[column])
        word = "lower (better)" if a < b else ("higher (worse)" if a > b else "equal")
        parts.append(f"{label}: {word}, {a:.3g} vs {b:.3g}")
    n = len(ours)
    if lower + higher == 0:
        end = "no seed differs at 100%"
    elif p_value < 0.05:
        end = f"at 100% raysweep is {'better' if lower > higher else 'WORSE'} on {max(lower, higher)} of {n} seeds (sign test p={p_value:.2g})"
    else:
        end = (f"at 100% the per-seed difference is not significant: raysweep better on {lower}, worse on {higher} "
               f"of {n} seeds (p={p_value:.2g})")
    return f"vs {LABELS[method]}: raysweep's median regret is " + "; ".join(parts) + f". {end[0].upper()}{end[1:]}."


def plot(runs: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    problems = _ordered({r["problem"] for r in runs})
    fractions = np.linspace(0.02, 1.0, 50)
    fig, axes = plt.subplots(1, len(problems), figsize=(6.5 * len(problems), 4.6), squeeze=False)
    for ax, problem in zip(axes[0], problems):
        for method in METHODS:
            curves = [incumbent_regret(r["rows"], _budget_cost(r), fractions)
                      for r in runs if r["problem"] == problem and r["method"] == method]
            if not curves:
                continue
            stack = np.array(curves)
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN before a method's first trial ends
                med = np.nanmedian(stack, axis=0)
                q1, q3 = np.nanpercentile(stack, 25, axis=0), np.nanpercentile(stack, 75, axis=0)
            color = plt.get_cmap("tab10")(METHODS.index(method))
            ax.plot(fractions, med, color=color, label=f"{LABELS[method]} (n={len(curves)})", lw=2.2 if method == "raysweep" else 1.3)
            ax.fill_between(fractions, q1, q3, color=color, alpha=0.12)
        ax.axhline(target(ALL_PROBLEMS[problem]), color="grey", ls=":", lw=1)
        ax.set_yscale("log")
        unit = "environment steps" if is_ppo(ALL_PROBLEMS[problem]) else "simulated seconds"
        ax.set_xlabel(f"cumulative cost in {unit} (share of the budget)")
        ax.set_ylabel("normalised regret of the recommended config")
        ax.set_title(f"{problem}: median and IQR over seeds")
        ax.grid(alpha=0.3, which="both")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def versions() -> str:
    names = ["raysweep", "ray", "ax-platform", "botorch", "torch", "optuna", "gymnasium", "numpy", "pandas"]
    found = []
    for name in names:
        try:
            found.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            found.append(f"{name} (not installed)")
    return f"Python {platform.python_version()}, " + ", ".join(found)


def report(out: Path, results: Path | None = None) -> pd.DataFrame:
    runs = load(out)
    if not runs:
        raise SystemExit(f"no events under {out / 'events'}")
    per_seed = summarise(runs)
    per_seed.to_csv(out / "summary.csv", index=False)
    text = table(per_seed)
    (out / "summary.md").write_text(
        f"{versions()}; machine: {platform.machine()}, {os.cpu_count()} CPUs\n\n{text}\n"
    )
    plot(runs, out / "anytime.png")
    if results is not None:
        write_results(results, out, runs, text)
    return per_seed


METHOD_TEXT = f"""\
| method | what runs |
|---|---|
| `raysweep` | raysweep's phases in one experiment: grid (resolution {GRID_RESOLUTION}) with a {EXPLORE_TIME_S:g}-simulated-second time \
budget per trial (runs stop at fidelity 1/3), {SHARES[0]:.0%} of the cost; Ax warm-started from phase 1 with ASHA \
(grace 1, reduction 3, 9 reports), {SHARES[1]:.0%}; Ax narrowed to mean +- 1 std of the top 10% (at least 5) so far, full \
runs, the rest. On cartpole_ppo: the three phases of `experiments/cartpole_ppo.yaml` as written. |
| `guide_cold` | the multi-stage guide's recipe: {SHARES[0]:.0%} grid of full runs; {SHARES[1]:.0%} Bayesian (Ax, ASHA) in mean +- 2 std of \
stage 1's top 10%; the rest Bayesian in mean +- 1 std of stage 2's top 10%. Each stage is a new raysweep experiment over \
the narrowed box with no history (a cold start: {AX_RANDOM_STARTS} quasi-random starts, then BoTorch). On cartpole_ppo: the same stages over the declared space without its `mean` biases (4 quasi-random starts, top 20%, ASHA on environment steps: grace 10 updates, reduction 3). |
| `random` | one raysweep `random` phase of full runs. |
| `ax_single` | one raysweep Ax phase of full runs over the whole budget ({AX_RANDOM_STARTS} quasi-random starts; 4 on cartpole_ppo). |
| `optuna_tpe_hyperband` | Optuna's own loop, not Ray: `TPESampler(seed)` with defaults and \
`HyperbandPruner(min_resource=1, max_resource=9, reduction_factor=3)`, one trial at a time. On cartpole_ppo: PPO in the benchmark's process, resource = PPO updates (10 to 59), power-of-two parameters suggested by exponent, `logit_normal` uniformly. |
| `tune_random_asha` | bare Ray Tune: random search with `ASHAScheduler(grace_period=1, reduction_factor=3, max_t=9)`, \
`reuse_actors=True`, stopped when the budget is spent. On cartpole_ppo: ASHA on environment steps (grace 10 updates, reduction 3, up to a full run), Tune's closest distributions (no `mean` bias). |
"""

PROTOCOL_TEXT = """\
- **Simulated problems.** BoTorch's `AugmentedHartmann` (6 inputs) and `AugmentedBranin` (2 inputs), minimised
  (`benchmarks/search_quality_problems.py`; NumPy copies checked against BoTorch before every run). The fidelity
  is the fraction of training done: a run reports 9 times at fidelity 1/9 ... 1; its simulated cost is affine in the
  fidelity (10% start-up, a full run is 100 simulated seconds); every report carries Gaussian noise of 2% of the
  problem's regret scale. Nothing sleeps; Ray Tune counts the reported `time_this_iter_s`, so raysweep's time budgets
  and cost column are in simulated seconds.
- **cartpole_ppo.** The quickstart's real PPO (`experiments/cartpole_ppo.py`, space of `experiments/cartpole_ppo.yaml`,
  where `total_timesteps` 10k-60k is itself searched). Cost is environment steps; a full run is 60,000 steps. The
  objective is the file's `episode_return_auc` (the learning curve's area: the 20-episode mean return averaged over
  every PPO update, at most 500). The recommended configs are re-trained with 2 fresh seeds and scored by the mean of
  their objective (the best observed value of a search is biased upwards); regret = (500 - that mean) / 500.
- **Equal cost.** Every method gets the same total cost; trials are ordered by when they ended and only those that
  ended within the budget count. raysweep's budgets are trial counts, so each phase is sized from the cost left
  when it starts (`benchmarks/search_quality.py` docstring).
- **Recommended config** at a given cost: the best observed (noisy) value among the trials that ran to full fidelity,
  before any did, the best at any fidelity. Normalised regret: 0 is the optimum, 1 the average random config.
- **Parallelism.** Every Ray-based method runs 2 trials at a time (2 CPUs, one per trial); Optuna runs one at a
  time, so each of its trials sees all earlier ones (an advantage in information per unit of cost).
"""


def _commands(out: Path) -> list[str]:
    path = out / "commands.log"
    if not path.exists():
        return []
    seen: list[str] = []
    for line in path.read_text().splitlines():
        if line.strip() and line not in seen:
            seen.append(line)
    return seen


def _include(path: Path) -> str:
    return path.read_text().strip() + "\n" if path.exists() else ""


def write_results(results: Path, out: Path, runs: list[dict], tables: str) -> None:
    """benchmarks/RESULTS.md: valid from whatever events exist (partial runs included)."""
    here = results.parent
    png = out / "anytime.png"
    done: dict[tuple[str, str], int] = {}
    for run in runs:
        done[run["problem"], run["method"]] = done.get((run["problem"], run["method"]), 0) + 1
    coverage = []
    for problem in _ordered({p for p, _ in done}):
        methods = ALL_PROBLEMS[problem].methods if is_ppo(ALL_PROBLEMS[problem]) else METHODS
        counts = ", ".join(f"{m} {done.get((problem, m), 0)}" for m in METHODS)
        not_run = [m for m in METHODS if (problem, m) not in done]
        coverage.append(f"- {problem}: seeds per method: {counts}"
                        + (f" (not run: {', '.join(not_run)}" + ("; the benchmark runs only "
                           f"{', '.join(methods)} on this problem" if len(methods) < len(METHODS) else "") + ")" if not_run else ""))
    memory = {}
    for run in runs:
        memory[run["problem"]] = max(memory.get(run["problem"], 0.0), float(run.get("driver_maxrss_mib_so_far", 0.0)))
    walls = {}
    for run in runs:
        walls.setdefault(run["problem"], []).append(float(run["wall_s"]))
    commands = _commands(out)
    text = [
        "# Search quality at equal cost: raysweep's phases against the usual alternatives",
        "",
        "Generated by `python -m benchmarks.search_quality ... --results benchmarks/RESULTS.md` from the events in "
        f"`{os.path.relpath(out, here)}/events/` (one CSV per problem, method and seed; rebuild with `--report-only`). "
        "Sections after the tables come from `benchmarks/results/*.md`.",
        "",
        "## Setup",
        "",
        f"- Machine: {os.cpu_count()} CPU cores ({platform.machine()}, {platform.system()}), no GPU; a local Ray with 2 CPUs.",
        f"- Versions: {versions()}.",
        "- Commands (as run, in order):",
        "",
        "```bash",
        *(commands or ["python -m benchmarks.search_quality --problem hartmann6 --seeds 10"]),
        "```",
        "",
        "Completed runs:",
        "",
        *coverage,
        "",
        "### Methods",
        "",
        METHOD_TEXT,
        "### Protocol",
        "",
        PROTOCOL_TEXT,
        "## Results",
        "",
        f"![anytime regret]({os.path.relpath(png, here)})",
        "",
        "Anytime plot: median (line) and interquartile range (band) over seeds of the normalised regret of the recommended "
        f"config against the share of the budget spent; log scale; dotted line: the target.",
        "",
        tables,
        _include(here / "results" / "discussion.md"),
        "## Overheads",
        "",
        "Driver peak memory (`ru_maxrss` of the benchmark process, recorded after each run; the process also holds torch, Ax "
        "and Optuna): " + ", ".join(f"{p} {m:.0f} MiB" for p, m in memory.items()) + ".",
        "",
        "Wall time of one search (median over seeds and methods): "
        + ", ".join(f"{p} {np.median(w):.0f} s" for p, w in walls.items()) + ".",
        "",
        _include(here / "results" / "overheads.md"),
        _include(here / "results" / "scale.md"),
    ]
    tmp = results.with_suffix(".tmp")
    tmp.write_text("\n".join(text).rstrip() + "\n")
    os.replace(tmp, results)


# =============================================================================
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problem", nargs="+", choices=sorted(ALL_PROBLEMS), default=["hartmann6"])
    parser.add_argument("--seeds", type=int, default=10, help="seeds 0 .. N-1 (or from --first-seed)")
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--budget", type=float, default=None,
                        help=f"total cost in full runs (default {DEFAULT_BUDGET:g}; cartpole_ppo {ppo.CARTPOLE_PPO.default_budget:g})")
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
        if any(not is_ppo(ALL_PROBLEMS[name]) for name in args.problem):
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
                    budget = args.budget or (problem.default_budget if is_ppo(problem) else DEFAULT_BUDGET)
                    for method in args.methods:
                        if is_ppo(problem) and method not in problem.methods:
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
