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

The functions are written out in NumPy here (the formulas and constants of
``botorch.test_functions.multi_fidelity``), so a Ray worker running a trial
imports NumPy only, not torch; :func:`check_against_botorch` compares the two
on random points and the benchmark runs it before anything else.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np

REPORTS = 9
FULL_COST_S = 100.0
FIXED_FRACTION = 0.1  # start-up share of a full run's cost (environment, model, compilation)
NOISE_FRACTION = 0.02  # noise std as a fraction of the problem's regret scale

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
class Problem:
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

    def regret(self, params: dict) -> float:
        return (self.true_value(params) - self.optimum) / self.scale

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
