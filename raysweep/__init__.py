"""raysweep: multi-phase hyperparameter sweeps on Ray Tune.

The public API is small: load an experiment, plan it, run it, read its results.
Its names are imported on first use (PEP 562), so ``python -m raysweep --help``,
``validate`` and ``status`` never import Ray, Ax or torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["Experiment", "SpecError", "TrialStatus", "UserError", "load_experiment", "plan", "run"]
__version__ = "0.1.0"

_HOMES = {
    "Experiment": "raysweep.spec",
    "SpecError": "raysweep.errors",
    "TrialStatus": "raysweep.records",
    "UserError": "raysweep.errors",
    "load_experiment": "raysweep.spec",
    "plan": "raysweep.planning",
    "run": "raysweep.sweep",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'raysweep' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
