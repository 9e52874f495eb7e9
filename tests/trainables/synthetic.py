"""Cheap trainables for tests: a smooth objective with known optimum, failures on demand."""

from __future__ import annotations

import math
import time

from ray import tune


def objective(config: dict) -> float:
    """Peaks at x = 0.3 (unit scale), lr = 1e-3, act = relu."""
    x = float(config.get("x", 0.3))
    lr = float(config.get("lr", 1e-3))
    act_bonus = 0.5 if config.get("act", "relu") == "relu" else 0.0
    return 10.0 - 20 * (x - 0.3) ** 2 - (math.log10(lr) + 3) ** 2 + act_bonus


def train(config: dict) -> None:
    """Reports ``score`` a few times, approaching the objective."""
    steps = int(config.get("steps", 4))
    sleep = float(config.get("sleep", 0.0))
    if config.get("fail") == "raise":
        raise RuntimeError("synthetic failure")
    final = objective(config)
    for i in range(1, steps + 1):
        if sleep:
            time.sleep(sleep)
        value = float("nan") if config.get("fail") == "nan" and i == 2 else final * i / steps
        tune.report({"score": value, "step": i})


def slow(config: dict) -> None:
    """Reports every 0.2 s for ``steps`` reports: long enough to pass a small time budget."""
    for i in range(1, int(config.get("steps", 100)) + 1):
        time.sleep(0.2)
        tune.report({"score": float(i) * float(config.get("x", 1.0)), "step": i})


def hang(config: dict) -> None:
    """Reports once, then goes silent far past any budget."""
    tune.report({"score": float(config.get("x", 1.0)), "step": 1})
    time.sleep(float(config.get("hang_s", 3600)))
    tune.report({"score": 99.0, "step": 2})


def surrogate(config: dict) -> None:
    """A cheap stand-in for an RL run over any parameters of the note experiments.

    The return rises with timesteps (the fidelity) and falls with the distance of
    every other numeric parameter from the middle of its log or linear range.
    """
    timesteps = float(config.get("total_timesteps", 1e9))
    fidelity = math.log10(timesteps) - 8.0  # 0 at 100M, ~1.7 at 5B
    penalty = 0.0
    for key, value in config.items():
        if key in ("total_timesteps", "seed") or not isinstance(value, (int, float)):
            continue
        if key in ("learning_rate", "ent_coef", "eps"):  # ent_coef may be exactly 0 on a grid
            penalty += (math.log10(max(value, 1e-6)) + 3.0) ** 2 * 0.1
        penalty += (value - 0.9) ** 2 if key == "gae_lambda" else 0.0
        penalty += (value - 0.5) ** 2 if key in ("vf_coef", "clip_coef", "vf_clip_coef") else 0.0
    noise = ((int(config.get("seed", 0)) * 7919) % 100) / 1000.0
    final = 100.0 * (1.0 + fidelity) / (1.0 + penalty) + noise
    for i in range(1, 5):
        tune.report({"episode_return_mean": final * i / 4, "timesteps": timesteps * i / 4})
