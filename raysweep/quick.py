"""Quick mode: a three-phase sweep from command-line flags, with no YAML.

``--params`` is a comma-separated list of parameter declarations:

==============================  ==================================================
``gae_lambda``                  raysweep's default range for a known name
``gae_lambda:0.8-0.99``         a range LOW-HIGH (``-1-1``, ``-2--0.5``, ``1e-4-1e-2``:
                                a number's own ``-`` is its sign or exponent, so the
                                one between the two numbers is the separator)
``learning_rate:1e-4-1e-2:log`` a range with a distribution: ``log``, ``int``,
                                ``int_log``, ``pow2``, ``logit`` or any full name
                                (``log_uniform``, ``logit_normal``, ...)
``activation:[tanh,relu]``      a choice (YAML values: ``[64,128]`` are numbers)
``total_timesteps=50000``       a fixed value every trial gets (a one-value choice)
==============================  ==================================================

Commas inside ``[...]`` belong to the choice. The phases are 30% grid, 50%
Bayesian narrowed to mean +- 2 std of the top configs, 20% Bayesian narrowed
to mean +- 1 std; ``--max-trial-time`` applies to each.
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

#: Short names of distributions after a range (``lr:1e-4-1e-2:log``); full names work too.
KIND_ALIASES = {
    "log": "log_uniform",
    "int": "int_uniform",
    "int_log": "int_log_uniform",
    "logit": "logit_normal",
}
_RANGE_KINDS = ("uniform", "log_uniform", "int_uniform", "int_log_uniform", "pow2", "logit_normal")

_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_RANGE = re.compile(rf"^({_NUMBER})-({_NUMBER})(?::(\w+))?$")
_SYNTAX = "each item is name, name:LOW-HIGH[:log|int|int_log|pow2|logit], name:[a,b,...] or name=value"


def parse_params(text: str) -> dict[str, dict[str, Any]]:
    """Parameter declarations (experiment-file dicts) from ``--params``; SpecError naming the item."""
    parameters: dict[str, dict[str, Any]] = {}
    for item in _split_items(text):
        name, declaration = _parse_item(item)
        if name in parameters:
            raise SpecError(f"--params {name}", "parameter given twice", item)
        parameters[name] = declaration
    if not parameters:
        raise SpecError("--params", "name at least one parameter", text)
    return parameters


def _split_items(text: str) -> list[str]:
    """Items split at commas outside ``[...]``."""
    items, depth, current = [], 0, []
    for char in text:
        if char == "," and depth == 0:
            items.append("".join(current))
            current = []
            continue
        depth += {"[": 1, "]": -1}.get(char, 0)
        if depth < 0:
            raise SpecError("--params", "a ']' without its '['", text)
        current.append(char)
    if depth:
        raise SpecError("--params", "a '[' without its ']'", text)
    items.append("".join(current))
    return [item.strip() for item in items if item.strip()]


def _parse_item(item: str) -> tuple[str, dict[str, Any]]:
    match = re.match(r"^([A-Za-z_]\w*)\s*([:=]?)\s*(.*)$", item, re.S)
    if match is None or (match.group(2) and not match.group(3)):
        raise SpecError("--params", _SYNTAX, item)
    name, separator, rest = match.groups()
    if separator == "=":
        return name, {"distribution": "choice", "values": [_scalar(rest, name, item)]}
    if separator == ":" and rest.startswith("["):
        values = _scalar(rest, name, item)
        if not isinstance(values, list) or not values or any(isinstance(v, (list, dict)) for v in values):
            raise SpecError(f"--params {name}", "a choice reads name:[a,b,...] with at least one plain value", item)
        return name, {"distribution": "choice", "values": values}
    if separator == ":":
        return name, _parse_range(name, rest, item)
    if name in DEFAULT_RANGES:
        distribution, low, high = DEFAULT_RANGES[name]
        return name, {"distribution": distribution, "min": low, "max": high}
    raise SpecError(
        f"--params {name}",
        f"no default range for this parameter; give one as {name}:LOW-HIGH "
        f"(defaults exist for {', '.join(DEFAULT_RANGES)})",
        name,
    )


def _parse_range(name: str, text: str, item: str) -> dict[str, Any]:
    match = _RANGE.match(text.strip())
    if match is None:
        raise SpecError(
            f"--params {name}", "a range reads LOW-HIGH with an optional :log, :int, :int_log, :pow2 or :logit, "
            "for example 0.8-0.99 or 1e-4-1e-2:log", text,
        )
    low, high, kind = float(match.group(1)), float(match.group(2)), match.group(3)
    if kind is not None:
        distribution = KIND_ALIASES.get(kind, kind)
        if distribution not in _RANGE_KINDS:
            raise SpecError(
                f"--params {name}", f"unknown distribution after the range (use {', '.join([*KIND_ALIASES, *_RANGE_KINDS])})", kind
            )
    else:
        default = DEFAULT_RANGES.get(name)
        distribution = default[0] if default else "uniform"
        if distribution.startswith("int") and not (low.is_integer() and high.is_integer()):
            distribution = "uniform"
    if distribution in ("int_uniform", "int_log_uniform", "pow2") and low.is_integer() and high.is_integer():
        return {"distribution": distribution, "min": int(low), "max": int(high)}
    return {"distribution": distribution, "min": low, "max": high}


def _scalar(text: str, name: str, item: str) -> Any:
    """A YAML value from a flag (``50000``, ``relu``, ``[64, 128]``)."""
    from raysweep import yaml_input

    return yaml_input.load_text(text, f"--params {name}")


def quick_experiment(
    *,
    trainable: str,
    params: str,
    budget: int,
    metric: str,
    mode: str,
    name: str | None = None,
    max_trial_time: str | None = None,
) -> dict[str, Any]:
    """The experiment dict of quick mode (validated later like any file).

    ``max_trial_time`` (``90s``, ``30m``, ``1h``) is every phase's per-trial
    time budget; the experiment's validation checks it like a file's.
    """
    sweep_name = name or re.sub(r"[^A-Za-z0-9_.-]+", "_", trainable.replace(":", "_")).strip("_") or "quick"
    experiment: dict[str, Any] = {
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
    if max_trial_time is not None:
        for phase in experiment["phases"]:
            phase["max_trial_time"] = max_trial_time
    return experiment
