"""Trainables that report the way real training code does: nested results, NumPy and
torch scalars, strings, values that are no number, a metric only every few iterations."""

from __future__ import annotations

import numpy as np
from ray import tune


def _value(config: dict, step: int) -> float:
    return (1.0 - (float(config.get("x", 0.3)) - 0.3) ** 2) * step / 3


def nested(config: dict) -> None:
    """RLlib's layout: the metric sits in a dict of dicts."""
    for step in range(1, 4):
        value = _value(config, step)
        tune.report({"env_runners": {"episode_return_mean": value, "episode_len_mean": 10.0 * step}, "step": step})


def typed(config: dict) -> None:
    """Reports the metric ``score`` as the kind ``config["kind"]`` names, beside an int64 and huge ints."""
    import torch

    kind = config["kind"]
    for step in range(1, 4):
        value = _value(config, step)
        score = {
            "numpy": lambda: np.float32(value),
            "array0d": lambda: np.array(value),
            "torch": lambda: torch.tensor(value, dtype=torch.float64),
            "string": lambda: f"{value!r}",
            "bool": lambda: True,
            "huge": lambda: 10**400,
            "dict": lambda: {"a": value},
            "list": lambda: [value],
            "array": lambda: np.array([value, value]),
        }[kind]()
        # beside it, in every report: an int64 counter, an int no float holds, a boolean flag
        tune.report({"score": score, "epoch": np.int64(step), "huge_count": 10**400, "flag": True})


def every_third(config: dict) -> None:
    """Trains for 7 iterations and evaluates (reports ``score``) only at iterations 3 and 6."""
    for step in range(1, 8):
        report = {"loss": 1.0 / step}
        if step % 3 == 0:
            report["score"] = _value(config, step // 3)
        tune.report(report)


def guard(config: dict) -> None:
    """Skips configs that cannot run, as many training scripts do: returns without a report."""
    if config["batch"] > config["buffer"]:
        return
    tune.report({"score": config["buffer"] / config["batch"]})


def metric_or_not(config: dict) -> None:
    """``ok`` reports ``score``; ``renamed`` never does (a typo); ``dict`` reports it as a dict."""
    kind = config["kind"]
    for step in range(1, 3):
        if kind == "ok":
            tune.report({"score": float(step)})
        elif kind == "renamed":
            tune.report({"other": 1.0})
        else:
            tune.report({"score": {"a": 1.0}})


def tune_key(config: dict) -> None:
    """Optimises ``timesteps_total``, one of Tune's own result keys, reported by the trainable."""
    for step in range(1, 4):
        tune.report({"timesteps_total": int(1000 * step * (1 + float(config["x"])))})


def raises(config: dict) -> None:
    raise RuntimeError(f"bad config x={config['x']:.3f}")
