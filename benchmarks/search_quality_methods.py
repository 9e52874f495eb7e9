"""The methods of ``benchmarks.search_quality``, each written once for every problem.

A method takes a problem adapter (``benchmarks/search_quality_adapter.py``), a
seed, the budget in the problem's cost unit, a work directory and a log stream,
and returns the rows of its trials. What differs between problems (phases, time
budgets, sizing, spaces, how rows are read) comes from the adapter; what differs
between raysweep variants comes from :data:`EXPERIMENT_OVERRIDES`.

``raysweep`` / ``random`` / ``ax_single``
    raysweep phases of one experiment, run one at a time (``sweep.run(...,
    phase=k)``), each sized from the cost left when it starts: a phase of share
    ``SHARES[k]`` of the budget gets ``round(min(share, left) / cost per trial)``
    trials, the last phase ``adapter.trials_for_last_phase(left, ...)``.
``raysweep_single_fidelity``
    ``raysweep`` with the experiment field ``model: single_fidelity`` (the GP
    over the parameters alone, every observation counted as a full run: the
    model the published ``raysweep`` rows were run with). Same phases, same
    ``fidelity`` field, same seeds: the two variants differ in ``model`` only,
    so the pair measures the multi-fidelity model itself.
``guide_cold``
    the multi-stage guide's recipe: each stage its own raysweep experiment whose
    declared bounds are the box around the previous stage's top configs (a cold
    start: no history).
``optuna_tpe_hyperband``
    Optuna's own study loop (not Ray), TPE with its Hyperband pruner, one trial at
    a time in this process, stopped once the budget is spent.
``tune_random_asha``
    bare Ray Tune, random search with ASHA, stopped once the budget is spent.
``bohb``
    bare Ray Tune, ``TuneBOHB`` (HpBandSter's BOHB: TPE-like kernel densities
    over the configs that reached the largest budget with enough data) with the
    ``HyperBandForBOHB`` scheduler (reduction factor 3 up to a full run, on the
    same resource as ASHA), stopped once the budget is spent. The trainables keep
    no checkpoints, so a trial that HyperBand pauses and resumes starts again from
    the beginning; the runner counts the cost of every restart (what such a run
    would cost), not only the last attempt's.
``screen_topk``
    cheap screening, then the top K in full. Half the budget
    (:data:`SCREEN_SHARE`) screens a random sample at the problem's lowest
    fidelity (``adapter.screen_stop()``): as many configs as that half pays for
    at the expected cost of one screening run. The other half re-runs the best
    screened configs from scratch at full fidelity, best first, as many as their
    expected full cost fits (at least one). Both stages are bare Ray Tune with
    random search, 2 trials at a time.

The raysweep-based baselines (``guide_cold``, ``ax_single``) run with
``model: single_fidelity`` (:data:`EXPERIMENT_OVERRIDES`): the model their
published rows were run with, so that those rows stay what this code produces
and raysweep's default model is measured by ``raysweep`` alone.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from benchmarks.search_quality_adapter import ProblemAdapter

SHARES = (0.3, 0.5, 0.2)  # of the cost, per phase / stage
SCREEN_SHARE = 0.5  # screen_topk: the share of the budget spent on screening at the lowest fidelity
BOHB_REDUCTION = 3

#: Every method, in the order of the report's tables (and of the plot's colours: new ones go last).
METHODS = ("raysweep", "guide_cold", "random", "ax_single", "optuna_tpe_hyperband", "tune_random_asha", "bohb",
           "screen_topk", "raysweep_single_fidelity")
LABELS = {
    "raysweep": "raysweep phased (grid -> Ax -> narrowed Ax)",
    "guide_cold": "guide recipe, cold start per stage",
    "random": "random search",
    "ax_single": "single Ax phase",
    "optuna_tpe_hyperband": "Optuna TPE + Hyperband pruner",
    "tune_random_asha": "Ray Tune random + ASHA",
    "bohb": "Ray Tune BOHB (TuneBOHB + HyperBandForBOHB)",
    "screen_topk": "screening at the lowest fidelity, then top-K in full",
    "raysweep_single_fidelity": "raysweep phased, single-fidelity model",
}
#: Per-method top-level experiment fields layered over the problem's experiment (see the module docstring).
EXPERIMENT_OVERRIDES: dict[str, dict[str, Any]] = {
    "raysweep_single_fidelity": {"model": "single_fidelity"},
    "guide_cold": {"model": "single_fidelity"},
    "ax_single": {"model": "single_fidelity"},
}
#: The raysweep phases a variant runs (its own name otherwise).
PHASES_OF = {"raysweep_single_fidelity": "raysweep"}


def run_method(problem: ProblemAdapter, method: str, seed: int, budget_cost: float, work: Path, log) -> pd.DataFrame:
    """One method's trials on one problem, one row per trial (see ``search_quality_adapter``)."""
    runners: dict[str, Callable[..., pd.DataFrame]] = {
        "guide_cold": run_guide_cold,
        "optuna_tpe_hyperband": run_optuna,
        "tune_random_asha": run_tune_random_asha,
        "bohb": run_bohb,
        "screen_topk": run_screen_topk,
    }
    if method in runners:
        return runners[method](problem, seed, budget_cost, work, log)
    return run_phased(problem, method, seed, budget_cost, work, log)


def run_phased(problem: ProblemAdapter, method: str, seed: int, budget_cost: float, work: Path, log) -> pd.DataFrame:
    """Run a method's raysweep phases one at a time in one experiment, each sized from the cost left."""
    from raysweep import sweep

    name = PHASES_OF.get(method, method)  # a variant is its base method's experiment, overrides aside
    phases, cost_per_trial = problem.phases(name)
    overrides = EXPERIMENT_OVERRIDES.get(method)
    run_dir = work / "run"
    planned: list[int] = []
    for k, phase in enumerate(phases):
        left = budget_cost - problem.spent(run_dir)
        if k == len(phases) - 1:
            trials = problem.trials_for_last_phase(left, cost_per_trial[k])
        else:
            trials = round(min(SHARES[k] * budget_cost, left) / cost_per_trial[k])
        if trials <= 0:
            break
        planned.append(trials)
        # later phases need a trial count to validate; they are not run in this call
        specs = [dict(p, trials=(planned[i] if i < len(planned) else 1)) for i, p in enumerate(phases)]
        sweep.run(problem.experiment(name, seed, run_dir, specs, overrides=overrides), phase=k + 1, stream=log)
    return problem.rows(run_dir)


def run_guide_cold(problem: ProblemAdapter, seed: int, budget_cost: float, work: Path, log) -> pd.DataFrame:
    """The guide's stages, each a separate cold-started raysweep run in the box its predecessor's best configs span."""
    from raysweep import sweep
    from raysweep.narrowing import narrow
    from raysweep.sinks.parquet import ParquetSink

    stages, top, mode = problem.guide_stages()
    frames = []
    spent = 0.0
    previous: tuple[Any, Path] | None = None
    for k, (phase, cost, k_std) in enumerate(stages):
        left = budget_cost - spent
        if k < len(stages) - 1:
            trials = round(min(SHARES[k] * budget_cost, left) / cost)
        else:
            trials = problem.trials_for_last_phase(left, cost)
        if k == 0:
            trials = max(trials, top["min_top"])  # stage 2 narrows around at least min_top configs
        if trials <= 0:
            break
        parameters = problem.declared()
        if previous is not None:
            experiment, run_dir = previous
            observations = ParquetSink(run_dir, experiment.space).read_observations()
            parameters = problem.box_parameters(narrow(experiment.space, observations, mode, std_multiplier=k_std, **top))
        run_dir = work / f"stage{k + 1}"
        experiment = problem.experiment(f"guide-stage{k + 1}", seed * 10 + k, run_dir, [dict(phase, trials=trials)],
                                        parameters, overrides=EXPERIMENT_OVERRIDES.get("guide_cold"))
        sweep.run(experiment, stream=log)
        rows = problem.rows(run_dir).assign(phase=k + 1)
        spent += float(rows["cost"].sum())
        frames.append(rows)
        previous = (experiment, run_dir)
    return pd.concat(frames, ignore_index=True)


class _Pruned(Exception):
    """Raised from an Optuna trial's report handler to end a run its pruner stopped."""


def run_optuna(problem: ProblemAdapter, seed: int, budget_cost: float, work: Path, log) -> pd.DataFrame:
    """Optuna's TPE + Hyperband pruner in this process, one trial at a time; stops once the budget is spent."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.TPESampler(seed=seed)
    study = optuna.create_study(direction="minimize", sampler=sampler, pruner=problem.optuna_pruner())
    rows: list[dict] = []
    spent = [0.0]

    def objective(trial: "optuna.Trial") -> float:
        config = problem.optuna_config(trial)
        last: dict = {}

        def on_report(report: dict) -> None:
            last.clear()
            last.update(report)
            value, step, may_prune = problem.optuna_step(report)
            trial.report(value, step)
            if may_prune and trial.should_prune():
                raise _Pruned

        started = time.monotonic()
        status = "completed"
        try:
            problem.run_in_process(config, seed * 1_000_003 + trial.number, on_report)
        except _Pruned:
            status = "early_stopped"
        row = problem.report_row(last, config, status, time.time(), time.monotonic() - started)
        spent[0] += row["cost"]
        rows.append(row)
        if status == "early_stopped":
            raise optuna.TrialPruned()
        return row["value"]

    def stop_when_spent(study: "optuna.Study", _trial: Any) -> None:
        if spent[0] >= budget_cost:
            study.stop()

    study.optimize(objective, callbacks=[stop_when_spent])
    return pd.DataFrame(rows)


def run_tune_random_asha(problem: ProblemAdapter, seed: int, budget_cost: float, work: Path, log) -> pd.DataFrame:
    """Ray Tune's random search with ASHA, stopped when the trials' cost reaches the budget."""
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.basic_variant import BasicVariantGenerator

    from benchmarks.search_quality_tune import search

    last = search(
        problem.tune_trainable(),
        problem.tune_space(),
        metric=problem.tune_metric,
        mode=problem.tune_mode,
        search_alg=BasicVariantGenerator(random_state=seed),
        scheduler=ASHAScheduler(**problem.asha),
        num_samples=problem.tune_samples(budget_cost),
        cost_key=problem.cost_key,
        budget=budget_cost,
        storage=work / "tune",
    )
    return pd.DataFrame([problem.tune_row(ended, result, config) for ended, result, config, _ in last])


def run_bohb(problem: ProblemAdapter, seed: int, budget_cost: float, work: Path, log) -> pd.DataFrame:
    """Ray Tune's BOHB (see the module docstring), stopped when the trials' cost reaches the budget."""
    from ray.tune.schedulers import HyperBandForBOHB
    from ray.tune.search.bohb import TuneBOHB

    from benchmarks.search_quality_tune import search

    space = problem.tune_space()
    space.pop("seed")  # BOHB models every key of its space; the trial's seed comes from the config's hash below
    scheduler = HyperBandForBOHB(time_attr=problem.asha["time_attr"], max_t=problem.asha["max_t"],
                                 reduction_factor=BOHB_REDUCTION)
    last = search(
        _seeded(problem.tune_trainable(), seed),
        space,
        metric=problem.tune_metric,
        mode=problem.tune_mode,
        search_alg=TuneBOHB(seed=seed),
        scheduler=scheduler,
        num_samples=problem.tune_samples(budget_cost),
        cost_key=problem.cost_key,
        budget=budget_cost,
        storage=work / "tune",
    )
    rows = []
    for ended, result, config, cost in last:
        row = problem.tune_row(ended, result, config)
        row["cost"] = cost  # every attempt of a paused and restarted trial
        rows.append(row)
    return pd.DataFrame(rows)


def _seeded(trainable: Callable[[dict], None], seed: int) -> Callable[[dict], None]:
    """The trainable with a per-trial ``seed`` derived from the benchmark seed and the config
    (BOHB's space holds only the searched parameters)."""
    import functools

    @functools.wraps(trainable)
    def run(config: dict) -> None:
        key = json.dumps({k: config[k] for k in sorted(config)}, default=str)
        return trainable({**config, "seed": (hash_text(key) + seed * 1_000_003) % (2**31 - 1)})

    return run


def hash_text(text: str) -> int:
    """A hash of ``text`` that is the same in every process (Python's ``hash`` of a str is salted)."""
    import zlib

    return zlib.crc32(text.encode())


def run_screen_topk(problem: ProblemAdapter, seed: int, budget_cost: float, work: Path, log) -> pd.DataFrame:
    """Screen a random sample at the lowest fidelity, then re-run the best K in full (see the module docstring)."""
    from ray.tune.search.basic_variant import BasicVariantGenerator

    from benchmarks.search_quality_tune import search

    screen_budget = SCREEN_SHARE * budget_cost
    samples = max(1, math.floor(screen_budget / problem.screen_cost))
    screened = search(
        problem.tune_trainable(),
        problem.tune_space(),
        metric=problem.tune_metric,
        mode=problem.tune_mode,
        search_alg=BasicVariantGenerator(random_state=seed),
        scheduler=None,
        num_samples=samples,
        cost_key=problem.cost_key,
        budget=screen_budget,
        storage=work / "screen",
        stop=problem.screen_stop(),
    )
    first = pd.DataFrame([problem.tune_row(ended, result, config) for ended, result, config, _ in screened])
    first["phase"] = 1
    configs = [config for _, _, config, _ in screened]
    left = budget_cost - float(first["cost"].sum())
    chosen: list[dict] = []
    for index in first["value"].to_numpy().argsort(kind="stable"):  # best (lowest) first
        config = {k: v for k, v in configs[index].items() if k != "seed"}  # a fresh seed for the full run
        expected = problem.expected_full_cost(config)
        if chosen and expected > left:
            break
        chosen.append(config)
        left -= expected
    full = search(
        problem.tune_trainable(),
        problem.tune_space(),  # only the seed is sampled: every other key comes from the chosen points
        metric=problem.tune_metric,
        mode=problem.tune_mode,
        search_alg=BasicVariantGenerator(points_to_evaluate=chosen, random_state=seed + 1),
        scheduler=None,
        num_samples=len(chosen),
        cost_key=problem.cost_key,
        budget=math.inf,  # K was sized to the budget; trials that end past it are not counted by the analysis
        storage=work / "full",
    )
    second = pd.DataFrame([problem.tune_row(ended, result, config) for ended, result, config, _ in full])
    second["phase"] = 2
    return pd.concat([first, second], ignore_index=True)
