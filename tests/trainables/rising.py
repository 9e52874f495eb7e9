"""A trainable whose optimum lies on the declared upper bound of ``x``: a narrowed box must move to find it."""

from __future__ import annotations

import math

from ray import tune


def score(config: dict) -> float:
    """Rises with x (best at x = 1); a little better near lr = 1e-3."""
    return 10.0 * float(config["x"]) - 0.1 * abs(math.log10(float(config["lr"])) + 3)


def train(config: dict) -> None:
    tune.report({"score": score(config)})
