"""The simulated training runs of ``benchmarks.search_quality``.

Two of BoTorch's multi-fidelity test functions, ``AugmentedHartmann`` (six
inputs in [0, 1]) and ``AugmentedBranin`` (x1 in [-5, 10], x2 in [0, 15]), are
*minimised*. Their last input, the fidelity ``s`` in [0, 1], plays the fraction
of the training timesteps done so far: one simulated run reports ``REPORTS``
times, at ``s = 1/9, 2/9, ..., 1``, so ASHA (or Optuna's pruner) can stop it at
any report. At full fidelity both functions are the usual Hartmann-6 and Branin.

Each report carries
    ``value``        f(x, s) plus Gaussian observation noise (the objective),
    ``fidelity``     s,
    ``sim_cost_s``   the simulated seconds spent so far, affine in s:
                     ``FULL_COST_S * (FIXED_FRACTION + (1 - FIXED_FRACTION) * s)``,
    ``time_this_iter_s``  the simulated seconds of this step. Ray Tune adds it up
                     as ``time_total_s`` instead of measuring wall time, so
                     raysweep's per-trial time budget and its ``cost_s`` column
                     both count simulated seconds (``cost_s`` is the larger of
                     wall time and ``time_total_s``; a step takes milliseconds).

Nothing sleeps: a run of 100 simulated seconds takes a few milliseconds.

raysweep's experiments declare ``fidelity: {attr: fidelity, max: 1.0}``
(:data:`FIDELITY`), so every observation carries the share of a full run it reached.

The functions are written out in NumPy here (the formulas and constants of
``botorch.test_functions.multi_fidelity``), so a Ray worker running a trial
imports NumPy only, not torch; :func:`check_against_botorch` compares the two
on random points and the benchmark runs it before anything else.

:class:`Problem` is also the runner's adapter for these problems (see
``benchmarks/search_quality_adapter.py``): the phases of each method with their
simulated time budgets, how trials are sized, rows read and configs scored.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pandas as pd

from benchmarks.search_quality_adapter import ProblemAdapter, read_trials

REPORTS = 9
FULL_COST_S = 100.0
FIXED_FRACTION = 0.1  # start-up share of a full run's cost (environment, model, compilation)
NOISE_FRACTION = 0.02  # noise std as a fraction of the problem's regret scale

# -- how the methods run on these problems -------------------------------------------
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
TARGET = 0.05  # normalised regret; see benchmarks/search_quality.py
#: The experiment's ``fidelity``: each report's ``fidelity`` is the share of a full run done (1 = full), so the
#: model sees a run cut by phase 1's time budget or by ASHA at the share it really reached.
FIDELITY = {"attr": "fidelity", "max": 1.0}

# -- the functions (constants from botorch.test_functions.multi_fidelity) -----------
_H_ALPHA = np.array([1.0, 1.2, 3.0, 3.2])
_H_A = np.array(
    [
        [10, 3, 17, 3.5, 1.7, 8],
        [0.05, 10, 17, 0.1, 8, 14],
        [3, 3.5, 1.7, 10, 17, 8],
        [17, 8, 0.05, 10, 0.1, 14],
    ]
)
_H_P = 1e-4 * np.array(
    [
        [1312, 1696, 5569, 124, 8283, 5886],
        [2329, 4135, 8307, 3736, 1004, 9991],
        [2348, 1451, 3522, 2883, 3047, 6650],
        [4047, 8828, 8732, 5743, 1091, 381.0],
    ]
)


def augmented_hartmann(x: np.ndarray, s: np.ndarray | float) -> np.ndarray:
    """AugmentedHartmann at points ``x`` (..., 6) and fidelity ``s``."""
    x = np.asarray(x, dtype=float)
    inner = np.sum(_H_A * (x[..., None, :] - _H_P) ** 2, axis=-1)
    terms = np.exp(-inner)
    alpha1 = _H_ALPHA[0] - 0.1 * (1.0 - np.asarray(s, dtype=float))
    return -np.sum(_H_ALPHA[1:] * terms[..., 1:], axis=-1) - alpha1 * terms[..., 0]


def augmented_branin(x: np.ndarray, s: np.ndarray | float) -> np.ndarray:
    """AugmentedBranin at points ``x`` (..., 2) and fidelity ``s``."""
    x = np.asarray(x, dtype=float)
    s = np.asarray(s, dtype=float)
    x1, x2 = x[..., 0], x[..., 1]
    t1 = x2 - (5.1 / (4 * math.pi**2) - 0.1 * (1.0 - s)) * x1**2 + 5 / math.pi * x1 - 6
    t2 = 10 * (1 - 1 / (8 * math.pi)) * np.cos(x1)
    return t1**2 + t2 + 10


@dataclass(frozen=True)
class Problem(ProblemAdapter):
    name: str
    function: Callable[[np.ndarray, np.ndarray | float], np.ndarray]
    bounds: tuple[tuple[float, float], ...]
    optimum: float  # f* at full fidelity (BoTorch's _optimal_value)
    uniform_mean: float  # E[f(x, 1)] for x uniform on the bounds (200k samples, seed 0)
    trainable: str  # module:function for raysweep

    @property
    def names(self) -> list[str]:
        return [f"x{i + 1}" for i in range(len(self.bounds))]

    @property
    def scale(self) -> float:
        """Normalised regret = (f(x, 1) - f*) / scale: 0 at the optimum, 1 for an average random config."""
        return self.uniform_mean - self.optimum

    @property
    def noise_std(self) -> float:
        return NOISE_FRACTION * self.scale

    def true_value(self, params: dict) -> float:
        """The noiseless value at full fidelity: what the config is really worth."""
        return float(self.function(np.array([float(params[n]) for n in self.names]), 1.0))

    def reports(self, params: dict, seed: int) -> Iterator[dict]:
        """The reports of one simulated run, in order (see the module docstring)."""
        x = np.array([float(params[n]) for n in self.names])
        rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, len(self.bounds)])
        spent = 0.0
        for i in range(1, REPORTS + 1):
            s = i / REPORTS
            step = FULL_COST_S * ((FIXED_FRACTION if i == 1 else 0.0) + (1 - FIXED_FRACTION) / REPORTS)
            spent += step
            value = float(self.function(x, s)) + self.noise_std * float(rng.standard_normal())
            yield {"value": value, "fidelity": s, "sim_cost_s": spent, "time_this_iter_s": step}


    # -- the runner's adapter ------------------------------------------------------------
    cost_unit = "simulated seconds"
    full_cost = FULL_COST_S
    default_budget = 50.0
    target = TARGET
    methods = ("raysweep", "guide_cold", "random", "ax_single", "optuna_tpe_hyperband", "tune_random_asha", "bohb",
               "screen_topk", "raysweep_single_fidelity")
    asha = {k: v for k, v in ASHA.items() if k != "type"}
    cost_key = "sim_cost_s"  # a run's simulated seconds so far: the sum of its reported time_this_iter_s
    tune_metric = METRIC
    tune_mode = MODE
    screen_cost = FULL_COST_S * (FIXED_FRACTION + (1 - FIXED_FRACTION) / REPORTS)  # the first report

    def declared(self) -> dict:
        return {n: {"distribution": "uniform", "min": float(lo), "max": float(hi)} for n, (lo, hi) in zip(self.names, self.bounds)}

    def experiment(self, name, seed, run_dir, phases, parameters=None, overrides=None):
        from raysweep.spec import experiment_from_dict

        data = {
            "name": name,
            "trainable": self.trainable,
            "metric": METRIC,
            "mode": MODE,
            "resources": {"cpu": 1, "gpu": 0},
            "storage": str(run_dir),
            "seed": seed,
            "parameters": parameters or self.declared(),
            "phases": phases,
            "wandb": {"mode": "disabled"},
            "fidelity": dict(FIDELITY),
        }
        return experiment_from_dict({**data, **(overrides or {})})

    def phases(self, method):
        if method in ("raysweep", "raysweep_single_fidelity"):
            return [
                # raysweep's time budget counts the simulated seconds the runs report (the larger of its clock and them)
                {"name": "explore", "searcher": "grid", "grid_resolution": GRID_RESOLUTION, "max_trial_time": EXPLORE_TIME_S},
                {"name": "exploit", "searcher": "ax", "random_samples": AX_RANDOM_STARTS, "max_trial_time": GUARD_TIME_S,
                 "early_stopping": ASHA},
                {"name": "refine", "searcher": "ax", "random_samples": 0, "max_trial_time": GUARD_TIME_S,
                 "narrow": {**NARROW_TOP, "std_multiplier": 1.0}},
            ], [EXPLORE_TIME_S, ASHA_COST_FRACTION * FULL_COST_S, FULL_COST_S]
        if method == "random":
            return [{"name": "random", "searcher": "random", "max_trial_time": GUARD_TIME_S}], [FULL_COST_S]
        if method == "ax_single":
            return [{"name": "bayes", "searcher": "ax", "random_samples": AX_RANDOM_STARTS, "max_trial_time": GUARD_TIME_S}], [FULL_COST_S]
        raise ValueError(f"{method} is not a phased method")

    def trials_for_last_phase(self, left, cost_per_trial):
        return int(left // cost_per_trial)  # every full run costs exactly FULL_COST_S

    def guide_stages(self):
        return [
            ({"name": "coarse", "searcher": "grid", "grid_resolution": GRID_RESOLUTION, "max_trial_time": GUARD_TIME_S},
             FULL_COST_S, None),
            ({"name": "refine", "searcher": "ax", "random_samples": AX_RANDOM_STARTS, "max_trial_time": GUARD_TIME_S,
              "early_stopping": ASHA}, ASHA_COST_FRACTION * FULL_COST_S, 2.0),
            ({"name": "finetune", "searcher": "ax", "random_samples": AX_RANDOM_STARTS, "max_trial_time": GUARD_TIME_S},
             FULL_COST_S, 1.0),
        ], NARROW_TOP, MODE

    def box_parameters(self, box):
        return {n: {"distribution": "uniform", "min": float(lo), "max": float(hi)}
                for n, (lo, hi) in ((n, box.ranges[n]) for n in self.names)}

    def rows(self, run_dir: Path) -> pd.DataFrame:
        frame = read_trials(run_dir)
        return pd.DataFrame(
            {
                "phase": frame["phase"].astype(int),
                "status": frame["status"].astype(str),
                "fidelity": frame["metric.fidelity"].astype(float),
                "value": frame["objective"].astype(float),
                "cost": frame["metric.sim_cost_s"].astype(float),
                "ended": frame["ended_at"].map(lambda t: t.timestamp()).astype(float),
                "params": [json.dumps({n: float(r[f"param.{n}"]) for n in self.names}) for _, r in frame.iterrows()],
            }
        )

    def optuna_pruner(self):
        import optuna

        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=REPORTS, reduction_factor=3)

    def optuna_step(self, report):
        step = int(round(report["fidelity"] * REPORTS))
        return float(report["value"]), step, step < REPORTS  # the last report is a full run: nothing to prune

    def report_row(self, report, config, status, ended, wall_s):
        return {"phase": 1, "status": status, "fidelity": report["fidelity"], "value": report["value"],
                "cost": report["sim_cost_s"], "ended": ended, "params": json.dumps({n: config[n] for n in self.names})}

    def tune_samples(self, budget_cost):
        return int(4 * budget_cost / FULL_COST_S / 0.1) + 10  # more than the budget can pay for

    def tune_row(self, ended, result, config):
        complete = result["fidelity"] >= 1.0
        return {"phase": 1, "status": "completed" if complete else "early_stopped", "fidelity": result["fidelity"],
                "value": result[METRIC], "cost": result["sim_cost_s"], "ended": ended,
                "params": json.dumps({n: float(config[n]) for n in self.names})}

    def screen_stop(self):
        return {"training_iteration": 1}  # the first report: fidelity 1/9

    def regret(self, rows, budget_cost, out, log):
        return pd.Series([self.regret_of(json.loads(p)) for p in rows["params"]], index=rows.index, dtype=float)

    def regret_of(self, params: dict) -> float:
        return (self.true_value(params) - self.optimum) / self.scale

    def problem_text(self, budget):
        return (f"Budget: {budget:g} full runs = {budget * FULL_COST_S:,.0f} simulated seconds. Regret: (f(x) - f*) / (mean f - f*) "
                f"at full fidelity, noiseless; target: regret <= {TARGET} (f <= {self.optimum + TARGET * self.scale:.4g}; f* = {self.optimum:g}).")


HARTMANN6 = Problem(
    name="hartmann6",
    function=augmented_hartmann,
    bounds=((0.0, 1.0),) * 6,
    optimum=-3.32237,
    uniform_mean=-0.260161,
    trainable="benchmarks.search_quality_problems:train_hartmann6",
)
BRANIN = Problem(
    name="branin",
    function=augmented_branin,
    bounds=((-5.0, 10.0), (0.0, 15.0)),
    optimum=0.397887,
    uniform_mean=54.5319,
    trainable="benchmarks.search_quality_problems:train_branin",
)
PROBLEMS = {p.name: p for p in (HARTMANN6, BRANIN)}


def _train(problem: Problem, config: dict) -> None:
    from ray import tune

    for report in problem.reports(config, int(config.get("seed", 0))):
        tune.report(report)


def train_hartmann6(config: dict) -> None:
    """Ray Tune function trainable: one simulated run on AugmentedHartmann."""
    _train(HARTMANN6, config)


def train_branin(config: dict) -> None:
    """Ray Tune function trainable: one simulated run on AugmentedBranin."""
    _train(BRANIN, config)


def check_against_botorch(points: int = 2000, seed: int = 0) -> float:
    """Largest absolute difference to BoTorch's own functions on random points
    (random fidelities included); raises AssertionError above 1e-6 (BoTorch
    keeps Hartmann's constants in float32, which alone makes ~4e-8)."""
    import torch
    from botorch.test_functions.multi_fidelity import AugmentedBranin, AugmentedHartmann

    rng = np.random.default_rng(seed)
    worst = 0.0
    for problem, reference in ((HARTMANN6, AugmentedHartmann()), (BRANIN, AugmentedBranin())):
        lo = np.array([b[0] for b in problem.bounds])
        hi = np.array([b[1] for b in problem.bounds])
        x = lo + (hi - lo) * rng.random((points, len(lo)))
        s = rng.random(points)
        ours = problem.function(x, s)
        theirs = reference.evaluate_true(torch.tensor(np.column_stack([x, s]), dtype=torch.float64)).numpy()
        worst = max(worst, float(np.max(np.abs(ours - theirs))))
        assert math.isclose(problem.optimum, float(reference.optimal_value), rel_tol=1e-6), problem.name
    assert worst < 1e-6, f"NumPy copies differ from BoTorch by {worst}"
    return worst
