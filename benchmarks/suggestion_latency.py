"""Suggestion latency of the Ax searcher as history grows, beside Optuna's GP and TPE.

    python -m benchmarks.suggestion_latency [--model {single_fidelity,multi_fidelity}]
        [--sizes 50 100 250 1000 2000] [--repeats 30] [--out FILE]

A synthetic six-parameter problem with every kind of parameter raysweep has
(log, logit_normal, int-log with a mean bias, pow2, linear, choice) and a cost
constraint (cost <= 1800 s). For each size N, N earlier observations (the same
ones for every method) are handed over as history, then:

* ``raysweep``: an :class:`AxSearcher` with that history runs a short phase the
  way Tune drives it: two trials in flight, each suggestion followed by one
  completion, so the data grow by one point per suggestion;
* ``optuna GP`` / ``optuna TPE``: an Optuna study (``GPSampler`` /
  ``TPESampler``, defaults, seeded) gets the same observations as completed
  trials with ``study.add_trials`` (the cost constraint as each trial's
  constraint value, cost - 1800, which both samplers read), and is asked for
  one suggestion. Optuna has no powers-of-two or logit scale: ``pow2`` is an
  integer on a log scale, ``logit_normal`` a float on a linear one, and the
  timesteps (an integer of 4.9e9 values, which GPSampler would enumerate) a
  float on a log scale.

Columns. Every time is "wall / CPU" seconds: wall-clock (``time.perf_counter``)
and CPU of this whole process (``time.process_time``, all its threads, so it
can exceed the wall time); on shared cores CPU seconds are the steadier figure.

* ``load``: the machine's 1-minute load average when the row was measured
  (2 cores: above 2, other processes competed for them);
* ``attach``: handing the history over. raysweep: ``AxSearcher(...,
  history=...)`` (the Ax experiment built from the N observations); Optuna:
  ``create_trial`` for each and ``study.add_trials``;
* ``cold first``: the first suggestion, whose GP hyperparameters are fit from
  scratch (raysweep: once per phase without a previous phase's fit, and the
  first after a restore is warm from the saved state; Optuna: its one
  suggestion, ``study.ask()`` plus sampling every parameter);
* ``warm first``: the first suggestion of a second searcher with the same
  history whose fit starts from the hyperparameters the first searcher wrote
  after its first fit (``warm_hyperparameters``, what the next phase of a sweep
  gets from ``<run_dir>/model/``);
* ``median`` / ``p90``: the later ``--repeats`` suggestions of the first searcher;
* ``refits``: how many of those re-optimised the hyperparameters (the others
  reused them with the new data);
* ``save``: ``searcher.save(path)`` at the end of the phase, what Tune calls at
  each experiment-state save: time and bytes written;
* ``pickle``: ``pickle.dumps(searcher)`` (through ``__getstate__``, as Tune
  pickles a searcher it restores): time and bytes.

``--model multi_fidelity`` measures the multi-fidelity GP
(:mod:`raysweep.searchers.ax.multi_fidelity`, ``fidelity_scale=FidelityScale(attr=
"training_iteration", full=100)``). Each observation is then a run of up to
:data:`FULL_ITERATIONS` iterations whose reports rise towards its objective
(:func:`value_at`): three in four are cut short at 10-40 iterations
(``time_budget`` or ``early_stopped``, alternately), one in four completes. Its
learning curve is thinned with :func:`raysweep.fidelity.curve`, as the recorder
keeps it, so most observations bring 4 points to the model (column ``model
points``: the history's points, what the subset of ``MAX_MODEL_ROWS`` is drawn
from). The phase's own trials run the same way: each one's reports are read by
a registered :class:`~raysweep.outcomes.OutcomeBook` (a cut-short one marked
with its status, as the stopper or ASHA would) before ``on_trial_complete``, so
they too reach the model as their curves. Optuna has no counterpart here and is
not run in this mode.

The GP of raysweep sees at most ``raysweep.searchers.ax.subset.MAX_MODEL_ROWS``
of the observations (a subset, past that size); Optuna's GP sees all of them.
raysweep fits with one torch thread, Optuna with torch's default.

Not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pickle
import platform
import statistics
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.timing import Timing, timed
from raysweep import fidelity, outcomes
from raysweep.fidelity import FidelityScale
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
#: Optuna's GPSampler enumerates every value of an integer parameter when it
#: optimises the acquisition (5e9 timesteps: 36 GiB); wider integers go to Optuna as floats.
MAX_OPTUNA_INT_VALUES = 100_000


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


def history(size: int, rng: np.random.Generator, model: str = "single_fidelity") -> list[Observation]:
    """``size`` earlier observations: completed single runs (``single_fidelity``), or
    runs with learning curves, most of them cut short (``multi_fidelity``)."""
    configs = SPACE.sample(rng, size)
    if model == "multi_fidelity":
        return [curve_observation(f"earlier-{i}", config, i, rng) for i, config in enumerate(configs)]
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
        for i, config in enumerate(configs)
    ]


# -- learning curves (--model multi_fidelity) ---------------------------------
#: A full run, in training iterations (the fidelity scale's ``full``).
FULL_ITERATIONS = 100
SCALE = FidelityScale(attr=fidelity.ITERATION, full=float(FULL_ITERATIONS))
#: Iterations at which a cut-short run stops, drawn uniformly (both ends included).
CUT_AT = (10, 40)
#: A curve starts this far below its run's final value and rises at this rate
#: per iteration: at 100 iterations it is within 2 * exp(-5) = 0.013 of it.
CURVE_DROP = 2.0
CURVE_RATE = 0.05


def value_at(final: float, iteration: float) -> float:
    """The metric a run reports at ``iteration``: rising towards ``final`` (its value at full training)."""
    return final - CURVE_DROP * math.exp(-CURVE_RATE * iteration)


def run_plan(position: int, rng: np.random.Generator) -> tuple[TrialStatus, int]:
    """How far run number ``position`` gets: the 4th of every 4 completes
    :data:`FULL_ITERATIONS`; the others stop at :data:`CUT_AT` iterations,
    alternately by the time budget and by ASHA."""
    if position % 4 == 3:
        return TrialStatus.COMPLETED, FULL_ITERATIONS
    status = TrialStatus.TIME_BUDGET if position % 2 == 0 else TrialStatus.EARLY_STOPPED
    return status, int(rng.integers(CUT_AT[0], CUT_AT[1] + 1))


def reports(config: dict, reached: int, rng: np.random.Generator) -> list[dict[str, float]]:
    """A run's results as Tune hands them over, one per iteration up to ``reached``:
    ``score`` rising towards the config's (noisy) objective, ``time_total_s`` its cost so far."""
    final = objective(config, rng)
    full_cost = cost_s(config)
    return [
        {
            "score": value_at(final, iteration),
            fidelity.ITERATION: iteration,
            "time_total_s": full_cost * iteration / FULL_ITERATIONS,
        }
        for iteration in range(1, reached + 1)
    ]


def curve_observation(trial_id: str, config: dict, position: int, rng: np.random.Generator) -> Observation:
    """An earlier run as the recorder keeps it: status, fidelity reached and its thinned learning curve."""
    status, reached = run_plan(position, rng)
    results = reports(config, reached, rng)
    curve = fidelity.curve([(float(r[fidelity.ITERATION]), r["score"]) for r in results])
    return Observation(
        trial_id=trial_id,
        phase=1,
        params=dict(config),
        status=status,
        objective=curve[-1][1],
        cost_s=results[-1]["time_total_s"],
        gpu_s=0.0,
        iterations=reached,
        fidelity=float(reached),
        curve=curve,
    )


def complete_with_curve(
    searcher: AxSearcher,
    book: outcomes.OutcomeBook,
    trial_id: str,
    config: dict,
    position: int,
    rng: np.random.Generator,
) -> None:
    """End a phase trial as Tune and raysweep's stopper or ASHA would: every report
    read by the phase's book, a cut-short trial marked, then ``on_trial_complete``."""
    status, reached = run_plan(position, rng)
    results = reports(config, reached, rng)
    for result in results:
        book.read(trial_id, result)
    if status is not TrialStatus.COMPLETED:
        book.mark(trial_id, status)
    searcher.on_trial_complete(trial_id, results[-1])


def model_points(past: list[Observation], model: str) -> int:
    """How many points the history brings to the model (before any subset)."""
    if model == "multi_fidelity":
        return sum(len(SCALE.points(o)) for o in past if o.usable)
    return sum(1 for o in past if o.usable)



def measure_raysweep(
    past: list[Observation], repeats: int, scratch: Path, seed: int = 0, model: str = "single_fidelity"
) -> dict[str, Any]:
    """The raysweep row for one history: attach, cold and warm first suggestion,
    later suggestions, save and pickle (see the module docstring)."""
    rng = np.random.default_rng(seed + 1)
    gp_path = scratch / "gp.json"
    multi_fidelity = model == "multi_fidelity"
    book = None
    if multi_fidelity:
        book = outcomes.register(outcomes.OutcomeBook(f"latency-{len(past)}-{seed}", "score", SCALE.attr))

    def searcher_with(**extra: Any) -> AxSearcher:
        return AxSearcher(
            SPACE,
            metric="score",
            mode="max",
            num_trials=repeats + 1,
            history=past,
            random_samples=0,
            max_suggestion_cost=COST_LIMIT_S,
            seed=seed,
            fidelity_scale=SCALE if multi_fidelity else None,
            **extra,
        )

    outcome_key = {"outcome_key": book.key} if book is not None else {}
    searcher, attach = timed(lambda: searcher_with(hyperparameters_path=str(gp_path), **outcome_key))
    later: list[Timing] = []
    refits = 0
    warm_hyperparameters = None
    in_flight: list[tuple[str, dict]] = []
    for position in range(repeats + 1):
        trial_id = f"trial-{position}"
        optimised_before = _optimised_rows(searcher)
        config, took = timed(lambda: searcher.suggest(trial_id))
        _check_model_based(searcher, trial_id)
        if position == 0:
            cold = took
            # What the first fit left for a next phase, before later refits overwrite it.
            warm_hyperparameters = json.loads(gp_path.read_text())
        else:
            later.append(took)
            refits += _optimised_rows(searcher) != optimised_before
        in_flight.append((trial_id, config))
        if len(in_flight) == 2:
            done_id, done_config = in_flight.pop(0)
            if book is not None:
                complete_with_curve(searcher, book, done_id, done_config, position - 1, rng)
            else:
                searcher.on_trial_complete(
                    done_id, {"score": objective(done_config, rng), "time_total_s": cost_s(done_config)}
                )
    state_path = scratch / "searcher-state.json"
    _, save = timed(lambda: searcher.save(str(state_path)))
    pickled, pickle_took = timed(lambda: pickle.dumps(searcher))
    save_bytes = state_path.stat().st_size

    warm_searcher = searcher_with(warm_hyperparameters=warm_hyperparameters)
    _, warm = timed(lambda: warm_searcher.suggest("warm-0"))
    _check_model_based(warm_searcher, "warm-0")
    return {
        "points": model_points(past, model),
        "attach": attach,
        "cold": cold,
        "warm": warm,
        "median": _median(later),
        "p90": _p90(later),
        "refits": f"{refits}/{repeats}",
        "save": save,
        "save_bytes": save_bytes,
        "pickle": pickle_took,
        "pickle_bytes": len(pickled),
    }


def _check_model_based(searcher: AxSearcher, trial_id: str) -> None:
    kind = searcher.generated_by(trial_id)
    if kind != "model":
        raise RuntimeError(f"suggestion {trial_id} was {kind!r}, not model-based")


def _median(timings: list[Timing]) -> Timing:
    return Timing(statistics.median(t.wall for t in timings), statistics.median(t.cpu for t in timings))


def _p90(timings: list[Timing]) -> Timing:
    return Timing(float(np.quantile([t.wall for t in timings], 0.9)), float(np.quantile([t.cpu for t in timings], 0.9)))


def _optimised_rows(searcher: AxSearcher) -> int | None:
    # Benchmark-only peek at the surrogate's refit bookkeeping.
    surrogate = searcher._surrogate
    return None if surrogate is None else surrogate.rows_at_last_optimisation


# -- Optuna -------------------------------------------------------------------
def optuna_distributions(space: SearchSpace) -> dict[str, Any]:
    """Optuna's closest distribution for each parameter (no pow2 or logit scale in Optuna)."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    distributions: dict[str, Any] = {}
    for p in space:
        if p.is_choice:
            distributions[p.name] = CategoricalDistribution(list(p.values))
        elif p.is_int and p.max - p.min <= MAX_OPTUNA_INT_VALUES:
            distributions[p.name] = IntDistribution(int(p.min), int(p.max), log=p.is_log)
        else:
            distributions[p.name] = FloatDistribution(float(p.min), float(p.max), log=p.is_log)
    return distributions


def measure_optuna(past: list[Observation], sampler_name: str, seed: int = 0) -> dict[str, Any]:
    """Attach (``add_trials``) and one suggestion (``ask`` + every parameter) of an Optuna study."""
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    distributions = optuna_distributions(SPACE)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # GPSampler's experimental warning
        sampler = optuna.samplers.GPSampler(seed=seed) if sampler_name == "GP" else optuna.samplers.TPESampler(seed=seed)
    study = optuna.create_study(direction="maximize", sampler=sampler)

    def attach() -> None:
        study.add_trials(
            [
                optuna.trial.create_trial(
                    params=dict(o.params),
                    distributions=distributions,
                    value=float(o.objective),
                    constraints={"cost": float(o.cost_s) - COST_LIMIT_S},
                )
                for o in past
            ]
        )

    def suggest() -> dict[str, Any]:
        trial = study.ask()
        params = {}
        for name, dist in distributions.items():
            if isinstance(dist, CategoricalDistribution):
                params[name] = trial.suggest_categorical(name, dist.choices)
            elif isinstance(dist, FloatDistribution):
                params[name] = trial.suggest_float(name, dist.low, dist.high, log=dist.log)
            else:
                params[name] = trial.suggest_int(name, dist.low, dist.high, log=dist.log)
        return params

    _, attach_took = timed(attach)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, first = timed(suggest)
    return {"attach": attach_took, "cold": first}


# -- table --------------------------------------------------------------------
MODELS = ("single_fidelity", "multi_fidelity")
#: Measurements of each column (besides observations, method and load), by result key.
CELLS = (
    ("attach s", "attach"), ("cold first s", "cold"), ("warm first s", "warm"), ("median s", "median"),
    ("p90 s", "p90"), ("refits", "refits"), ("save s", "save"), ("save KB", "save_bytes"),
    ("pickle s", "pickle"), ("pickle KB", "pickle_bytes"),
)


def columns(model: str) -> tuple[str, ...]:
    """The table's columns; the multi-fidelity table adds the history's model points."""
    points = ("model points",) if model == "multi_fidelity" else ()
    return ("observations", *points, "method", "load", *(name for name, _ in CELLS))


def row(size: int, method: str, result: dict[str, Any], model: str = "single_fidelity") -> str:
    """One Markdown table row; "-" where the method has no such measurement."""

    def cell(key: str) -> str:
        value = result.get(key)
        if value is None:
            return "-"
        if key.endswith("_bytes"):
            return f"{value / 1024:.0f}"
        return str(value)

    points = [cell("points")] if model == "multi_fidelity" else []
    cells = [str(size), *points, method, f"{os.getloadavg()[0]:.1f}", *(cell(key) for _, key in CELLS)]
    return "| " + " | ".join(cells) + " |"


def header(model: str = "single_fidelity") -> list[str]:
    import ax
    import botorch

    versions = f"torch {torch.__version__}, ax {ax.__version__}, botorch {botorch.__version__}"
    if model == "single_fidelity":
        try:
            import optuna

            versions += f", optuna {optuna.__version__}"
        except ImportError:
            pass
    described = {
        "single_fidelity": "single-fidelity GP; each observation one completed run",
        "multi_fidelity": (
            f"multi-fidelity GP (fidelity_scale: {SCALE.attr}, full {SCALE.full:g}); each observation a run with "
            f"its learning curve, 3 in 4 cut short at {CUT_AT[0]}-{CUT_AT[1]} iterations"
        ),
    }[model]
    names = columns(model)
    return [
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, {versions}; "
        f"load average at start {', '.join(f'{x:.1f}' for x in os.getloadavg())}",
        "",
        f"model: {model} ({described})",
        "",
        "Times: wall / CPU seconds of this process.",
        "",
        "| " + " | ".join(names) + " |",
        "|" + "|".join("---:" if c not in ("method",) else "---" for c in names) + "|",
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model", choices=MODELS, default="single_fidelity",
        help="raysweep's GP: single_fidelity (with Optuna beside it) or multi_fidelity (learning curves; no Optuna)",
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[50, 100, 250, 1000, 2000])
    # 30 after the first: at 250 observations the data then grow past the 10% that triggers one refit
    parser.add_argument("--repeats", type=int, default=30, help="raysweep suggestions measured per size after the first")
    parser.add_argument("--out", type=Path, default=None, help="also write the table to this file, row by row")
    args = parser.parse_args(argv)
    lines = header(args.model)

    def emit(line: str) -> None:
        print(line, flush=True)
        lines.append(line)
        if args.out is not None:
            args.out.write_text("\n".join(lines) + "\n")

    for line in lines:
        print(line, flush=True)
    if args.out is not None:
        args.out.write_text("\n".join(lines) + "\n")
    for size in args.sizes:
        past = history(size, np.random.default_rng(size), args.model)
        with tempfile.TemporaryDirectory(prefix="raysweep-latency-") as scratch:
            result = measure_raysweep(past, args.repeats, Path(scratch), model=args.model)
            emit(row(size, "raysweep", result, args.model))
        if args.model == "multi_fidelity":
            continue  # Optuna's samplers have no learning-curve counterpart
        for sampler in ("GP", "TPE"):
            emit(row(size, f"optuna {sampler}", measure_optuna(past, sampler)))


if __name__ == "__main__":
    main()
