"""Quick mode: a three-phase sweep from command-line flags, with no YAML.

``--params "gae_lambda:0.8-0.99,vf_coef,ent_coef"``: a name alone takes
raysweep's default range; ``name:lo-hi`` gives one. The phases are 30% grid,
50% Bayesian narrowed to mean +- 2 std of the top configs, 20% Bayesian
narrowed to mean +- 1 std.
"""

from __future__ import annotations

import re
from typing import Any

from raysweep.errors import SpecError

#: Default ranges for common RL knobs: (distribution, min, max).
DEFAULT_RANGES: dict[str, tuple[str, float, float]] = {
    "gae_lambda": ("uniform", 0.8, 0.99),
    "vf_coef": ("uniform", 0.1, 1.0),
    "ent_coef": ("uniform", 0.0, 0.05),
    "policy_lr": ("log_uniform", 1e-4, 1e-2),
    "learning_rate": ("log_uniform", 1e-4, 1e-2),
    "clip_range": ("uniform", 0.1, 0.3),
    "n_steps": ("int_uniform", 64, 1024),
    "batch_size": ("int_uniform", 256, 4096),
    "gamma": ("uniform", 0.95, 0.999),
}

_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_RANGE = re.compile(rf"^({_NUMBER})-({_NUMBER})$")


def parse_params(text: str) -> dict[str, dict[str, Any]]:
    """Parameter declarations from ``name[:lo-hi],...``."""
    parameters: dict[str, dict[str, Any]] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, bounds = item.partition(":")
        name = name.strip()
        if not name:
            raise SpecError("--params", "each item is name or name:lo-hi", item)
        if bounds:
            match = _RANGE.match(bounds.strip())
            if match is None:
                raise SpecError(f"--params {name}", "a range reads lo-hi, for example 0.8-0.99", bounds)
            low, high = float(match.group(1)), float(match.group(2))
            default = DEFAULT_RANGES.get(name)
            distribution = default[0] if default else "uniform"
            if distribution.startswith("int") and not (low.is_integer() and high.is_integer()):
                distribution = "uniform"
            parameters[name] = {"distribution": distribution, "min": low, "max": high}
        elif name in DEFAULT_RANGES:
            distribution, low, high = DEFAULT_RANGES[name]
            parameters[name] = {"distribution": distribution, "min": low, "max": high}
        else:
            raise SpecError(
                f"--params {name}",
                f"no default range for this parameter; give one as {name}:LOW-HIGH "
                f"(defaults exist for {', '.join(DEFAULT_RANGES)})",
                name,
            )
    if not parameters:
        raise SpecError("--params", "name at least one parameter", text)
    return parameters


def quick_experiment(
    *, trainable: str, params: str, budget: int, metric: str, mode: str, name: str | None = None
) -> dict[str, Any]:
    """The experiment dict of quick mode (validated later like any file)."""
    sweep_name = name or re.sub(r"[^A-Za-z0-9_.-]+", "_", trainable.replace(":", "_")).strip("_") or "quick"
    return {
        "name": sweep_name,
        "trainable": trainable,
        "metric": metric,
        "mode": mode,
        "budget": budget,
        "parameters": parse_params(params),
        "phases": [
            {"name": "coarse", "searcher": "grid", "share": 0.3, "grid_resolution": 5},
            {
                "name": "refine",
                "searcher": "ax",
                "share": 0.5,
                "random_samples": 0,
                "narrow": {"top_fraction": 0.1, "min_top": 5, "std_multiplier": 2.0},
            },
            {
                "name": "finetune",
                "searcher": "ax",
                "share": 0.2,
                "random_samples": 0,
                "narrow": {"top_fraction": 0.1, "min_top": 5, "std_multiplier": 1.0},
            },
        ],
    }
