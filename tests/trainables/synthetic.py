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
