"""The arguments of an AxSearcher, checked once when it is built."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from raysweep.narrowing import Box
from raysweep.space import SearchSpace

COST_FIELDS = ("cost_s", "gpu_s")
SEED_KEY = "seed"


def validate_settings(
    *,
    space: SearchSpace,
    metric: str,
    mode: str,
    num_trials: int,
    random_samples: int,
    resample_every: int | None,
    max_suggestion_cost: float | None,
    cost_field: str,
    box: Box | None,
    seed: int,
    gpus_per_trial: float,
) -> None:
    if not isinstance(space, SearchSpace) or len(space) == 0:
        raise ValueError(f"space must be a non-empty raysweep SearchSpace; got {space!r}")
    if not isinstance(metric, str) or not metric:
        raise ValueError(f"metric must be a non-empty string; got {metric!r}")
    if mode not in ("max", "min"):
        raise ValueError(f"mode must be 'max' or 'min'; got {mode!r}")
    if not is_int(num_trials) or num_trials < 0:
        raise ValueError(f"num_trials must be an int >= 0; got {num_trials!r}")
    if not is_int(random_samples) or random_samples < 0:
        raise ValueError(f"random_samples must be an int >= 0; got {random_samples!r}")
    if resample_every is not None and (not is_int(resample_every) or resample_every < 2):
        raise ValueError(f"resample_every must be None or an int >= 2; got {resample_every!r}")
    if max_suggestion_cost is not None and (
        isinstance(max_suggestion_cost, bool) or not isinstance(max_suggestion_cost, (int, float))
        or not math.isfinite(max_suggestion_cost) or max_suggestion_cost <= 0
    ):
        raise ValueError(f"max_suggestion_cost must be None or a positive number of seconds; got {max_suggestion_cost!r}")
    if cost_field not in COST_FIELDS:
        raise ValueError(f"cost_field must be one of {COST_FIELDS}; got {cost_field!r}")
    if isinstance(gpus_per_trial, bool) or not isinstance(gpus_per_trial, (int, float)) or not gpus_per_trial >= 0:
        raise ValueError(f"gpus_per_trial must be a number >= 0; got {gpus_per_trial!r}")
    if cost_field == "gpu_s" and not gpus_per_trial > 0:
        raise ValueError(f"cost_field='gpu_s' needs gpus_per_trial > 0; got {gpus_per_trial!r}")
    if not is_int(seed):
        raise ValueError(f"seed must be an int; got {seed!r}")
    if box is not None:
        if not isinstance(box, Box):
            raise ValueError(f"box must be a raysweep Box or None; got {box!r}")
        box.check_within(space)
    if SEED_KEY in space.names:
        raise ValueError(f"{SEED_KEY!r} is the trial seed raysweep adds to every config; rename that parameter")


def is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def float_or(value: Any, default: Any) -> Any:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return default
    return number if math.isfinite(number) else default
