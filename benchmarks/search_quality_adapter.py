"""What ``benchmarks.search_quality``'s one runner asks of a problem: the adapter interface.

The runner (``benchmarks/search_quality_methods.py``) runs every method once, for
every problem; what differs between problems lives in a subclass of
:class:`ProblemAdapter`:

- how a raysweep experiment is built and how its phases are sized
  (``experiment``, ``phases``, ``trials_for_last_phase``, ``guide_stages``);
- how a narrowed box becomes declared parameters (``box_parameters``);
- how a run directory's trials become rows (``rows``, ``spent``);
- how a trial runs outside raysweep (Optuna in process: ``optuna_config``,
  ``run_in_process``; bare Tune: ``tune_trainable``, ``tune_space``,
  ``tune_row``);
- how the recommended configs are scored (``regret``).

Rows, the currency between runner and report: one per trial, a DataFrame with at
least ``phase`` (int), ``status`` (``completed`` / ``early_stopped`` /
``time_budget`` / ...), ``fidelity`` (share of a full run reached, 1 = full),
``value`` (the observed objective, always *minimised*: a maximised metric is
negated), ``cost`` (in the problem's cost unit), ``ended`` (epoch seconds) and
``params`` (the config as JSON).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import pandas as pd


class ProblemAdapter:
    """One benchmark problem as the runner sees it (see the module docstring).

    Attributes every adapter sets: ``name``; ``cost_unit`` (words, e.g.
    ``"simulated seconds"``); ``full_cost`` (the cost of one full run: ``--budget``
    counts these); ``default_budget`` (full runs); ``target`` (the normalised
    regret counted as reaching the optimum); ``methods`` (the methods this problem
    supports); ``asha`` (the ASHA keywords of the methods with early stopping:
    ``time_attr``, ``grace_period``, ``reduction_factor``, ``max_t``);
    ``cost_key`` (the reported metric holding a run's cumulative cost).
    """

    name: str
    cost_unit: str
    full_cost: float
    default_budget: float
    target: float
    methods: tuple[str, ...]
    asha: dict
    cost_key: str
    #: The metric Tune schedulers compare (the trainable's reported name) and its direction.
    tune_metric: str
    tune_mode: str
    #: The expected cost of one run stopped at the lowest fidelity (``screen_stop``).
    screen_cost: float

    def declared(self) -> dict:
        """The declared parameters (raysweep's ``parameters`` mapping) that methods other than raysweep
        search: without ``mean`` biases."""
        raise NotImplementedError

    # -- raysweep experiments --------------------------------------------------------------
    def experiment(self, name: str, seed: int, run_dir: Path, phases: list[dict], parameters: dict | None = None,
                   overrides: dict | None = None):
        """A validated raysweep Experiment over ``parameters`` (default: the declared ones), with
        ``overrides`` (top-level experiment fields, e.g. ``{"model": "single_fidelity"}``) applied last.
        Raises raysweep's SpecError on anything raysweep rejects."""
        raise NotImplementedError

    def phases(self, method: str) -> tuple[list[dict], list[float]]:
        """A phased method's raysweep phases (without ``trials``) and the expected cost of one of each
        phase's trials, to size the phase from the cost left. ValueError for a method that is not phased."""
        raise NotImplementedError

    def trials_for_last_phase(self, left: float, cost_per_trial: float) -> int:
        """Trials of a method's last phase given the cost ``left``. Trials that end past the budget do
        not count, and a budget left unspent is the method's loss; a problem with exact costs can stop
        where the budget ends (rounding down), one with varying costs rounds up."""
        raise NotImplementedError

    def guide_stages(self) -> tuple[list[tuple[dict, float, float | None]], dict, str]:
        """The guide's stages as (phase with its time budget, expected cost per trial, std multiplier of
        the box around the previous stage's top configs or None), the ``narrow`` keywords
        (``top_fraction``, ``min_top``) and the direction ``narrow`` ranks the objective in."""
        raise NotImplementedError

    def box_parameters(self, box) -> dict:
        """The declared parameters restricted to a :class:`raysweep.narrowing.Box`, with no ``mean`` bias."""
        raise NotImplementedError

    def rows(self, run_dir: Path) -> pd.DataFrame:
        """One row per trial of a raysweep run directory (see the module docstring)."""
        raise NotImplementedError

    #: The trials' column that holds each trial's cost (a reported metric's last value).
    cost_column = "metric.sim_cost_s"

    def spent(self, run_dir: Path) -> float:
        """The cost the run directory's trials have spent so far (0 before any): the sum of :attr:`cost_column`."""
        path = run_dir / "results" / "trials"
        if not path.exists():
            return 0.0
        return float(pd.read_parquet(path, columns=[self.cost_column])[self.cost_column].fillna(0.0).sum())

    # -- trials outside raysweep ----------------------------------------------------------
    def optuna_pruner(self):
        """Optuna's HyperbandPruner over this problem's resource (reports, PPO updates, ...)."""
        raise NotImplementedError

    def optuna_config(self, trial) -> dict:
        """A config suggested by an Optuna trial over the declared space."""
        return optuna_suggest(trial, self.declared())

    def reports(self, config: dict, seed: int) -> Iterable[dict]:
        """The reports of one run of ``config``, in order (problems whose runs are computed, not trained)."""
        raise NotImplementedError

    def run_in_process(self, config: dict, seed: int, on_report: Callable[[dict], None]) -> None:
        """Run one trial in this process, calling ``on_report`` with each report (as the trainable
        reports it to Tune); an exception from ``on_report`` ends the run and propagates."""
        for report in self.reports(config, seed):
            on_report(report)

    def optuna_step(self, report: dict) -> tuple[float, int, bool]:
        """What Optuna sees of a report: (minimised value, resource index, whether it may prune here)."""
        raise NotImplementedError

    def report_row(self, report: dict, config: dict, status: str, ended: float, wall_s: float) -> dict:
        """The row of a trial whose last report is ``report``."""
        raise NotImplementedError

    def tune_trainable(self) -> Callable[[dict], None]:
        """The Ray Tune function trainable (reports as raysweep's trials do): the experiment's ``trainable``."""
        from raysweep.spec import resolve_trainable

        return resolve_trainable(self.trainable)

    def tune_space(self) -> dict:
        """Tune's closest distributions to the declared space (no ``mean`` bias), plus a ``seed``."""
        from ray import tune

        space = {name: tune_domain(spec) for name, spec in self.declared().items()}
        space["seed"] = tune.randint(0, 2**31 - 1)
        return space

    def tune_samples(self, budget_cost: float) -> int:
        """How many configs a bare Tune search may sample: more than the budget can pay for."""
        raise NotImplementedError

    def tune_row(self, ended: float, result: dict, config: dict) -> dict:
        """The row of a bare Tune trial from its last result."""
        raise NotImplementedError

    def screen_stop(self) -> dict:
        """Tune's ``stop`` criterion that ends a run at the problem's lowest fidelity."""
        raise NotImplementedError

    def expected_full_cost(self, config: dict) -> float:
        """The expected cost of a full run of ``config`` (to split a budget before running it)."""
        return self.full_cost

    # -- scoring ---------------------------------------------------------------------------
    def regret(self, rows: pd.DataFrame, budget_cost: float, out: Path, log) -> pd.Series:
        """Normalised regret of the rows' configs (0 the optimum, 1 an average random config; NaN for rows
        a problem does not score, e.g. PPO's non-recommended configs). ``out`` may hold a cache."""
        raise NotImplementedError

    def problem_text(self, budget: float) -> str:
        """The sentence of the report that states the budget, the regret and the target."""
        raise NotImplementedError


def read_trials(run_dir: Path) -> pd.DataFrame:
    """The run directory's trials table (raysweep's Parquet dataset)."""
    return pd.read_parquet(run_dir / "results" / "trials")


def params_json(frame: pd.DataFrame, names: list[str], convert: Callable[[Any], Any]) -> list[str]:
    """Each trial's config as JSON: ``convert`` of every ``param.<name>`` column."""
    return [json.dumps({n: convert(r[f"param.{n}"]) for n in names}) for _, r in frame.iterrows()]


def plain(value: Any) -> Any:
    """A NumPy scalar as the Python number it holds (JSON has no numpy types)."""
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    return value


def within(parameters: dict, box) -> dict:
    """Declared parameters restricted to a narrowing box: numeric ones to its range, choices to its values."""
    out = {}
    for name, spec in parameters.items():
        spec = dict(spec)
        if name in box.choices:
            spec["values"] = list(box.choices[name])
        elif name in box.ranges:
            lo, hi = box.ranges[name]
            spec = {"distribution": "choice", "values": [lo]} if lo == hi else {**spec, "min": lo, "max": hi}
        out[name] = spec
    return out


def unbiased(parameters: dict) -> dict:
    """The declared parameters without ``mean`` / ``scale``: the guide's sweeps had no prior."""
    return {name: {k: v for k, v in spec.items() if k not in ("mean", "scale")} for name, spec in parameters.items()}


def tune_domain(spec: dict):
    """The Ray Tune distribution closest to a declared parameter (no ``mean`` bias: Tune's sampling has none)."""
    import math

    from ray import tune

    d = spec["distribution"]
    if d == "choice":
        return tune.choice(spec["values"])
    if d == "pow2":
        lo, hi = (int(round(math.log2(spec[b]))) for b in ("min", "max"))
        return tune.choice([2**e for e in range(lo, hi + 1)])
    if d == "int_log_uniform":
        return tune.lograndint(int(spec["min"]), int(spec["max"]) + 1)
    if d == "log_uniform":
        return tune.loguniform(float(spec["min"]), float(spec["max"]))
    if d in ("uniform", "logit_normal"):
        return tune.uniform(float(spec["min"]), float(spec["max"]))
    raise ValueError(f"no Tune distribution for {d!r}")


def optuna_suggest(trial, parameters: dict) -> dict:
    """A config suggested by an Optuna trial over declared parameters: power-of-two ones by exponent,
    ``logit_normal`` ones uniformly (Optuna has no logit scale)."""
    import math

    config: dict[str, Any] = {}
    for name, spec in parameters.items():
        d = spec["distribution"]
        if d == "choice":
            config[name] = trial.suggest_categorical(name, spec["values"])
        elif d == "pow2":
            lo, hi = (int(round(math.log2(spec[b]))) for b in ("min", "max"))
            config[name] = 2 ** trial.suggest_int(f"{name}_log2", lo, hi)
        elif d == "int_log_uniform":
            config[name] = trial.suggest_int(name, int(spec["min"]), int(spec["max"]), log=True)
        elif d in ("uniform", "logit_normal"):
            config[name] = trial.suggest_float(name, float(spec["min"]), float(spec["max"]))
        elif d == "log_uniform":
            config[name] = trial.suggest_float(name, float(spec["min"]), float(spec["max"]), log=True)
        else:
            raise ValueError(f"no Optuna suggestion for parameter {name}'s distribution {d!r}")
    return config
