"""Trainables for sweeps at the edges: every trial failing, choices of mixed types."""

from __future__ import annotations

from ray import tune


def flaky(config: dict) -> None:
    """Raises for almost every x, as a run that runs out of GPU memory does."""
    if config["x"] < 0.99:
        raise RuntimeError("simulated crash (e.g. CUDA OOM)")
    tune.report({"ret": config["x"]})


def clipped(config: dict) -> None:
    """``max_grad_norm`` is None (no clipping) or a number; the trainable must get it as declared."""
    clip = config["max_grad_norm"]
    if clip is not None and not isinstance(clip, float):
        raise TypeError(f"max_grad_norm arrived as {clip!r}")
    base = 0.5 if clip is None else 1.0 / (1.0 + abs(clip - 0.5))
    tune.report({"score": base + config["lr"] * 10})


def paced(config: dict) -> None:
    """Reports ``score`` and ``timesteps`` (1,000 a step) for ``steps`` steps, ``pause`` seconds apart."""
    import time

    for step in range(1, int(config.get("steps", 8)) + 1):
        time.sleep(float(config.get("pause", 0.0)))
        tune.report({"score": float(config["x"]) * step, "timesteps": 1000 * step})
