"""Reading the trials table: normalised columns, the usable rows, phase labels, the cost axis.

The table is what ``pandas.read_parquet(run_dir / "results/trials")`` returns;
every view starts from :func:`normalized`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from raysweep.cost_units import CostUnit, cost_unit
from raysweep.records import TrialStatus


def normalized(trials: pd.DataFrame) -> pd.DataFrame:
    """A copy with an int ``phase``, str ``status``, float ``objective`` and costs, in run order."""
    frame = trials.copy()
    if "phase" in frame:
        frame["phase"] = pd.to_numeric(frame["phase"].astype(str), errors="coerce").fillna(0).astype(int)
    else:
        frame["phase"] = 1
    if "phase_name" not in frame:
        frame["phase_name"] = ""
    frame["phase_name"] = frame["phase_name"].fillna("").astype(str)
    frame["status"] = frame["status"].astype(str) if "status" in frame else TrialStatus.COMPLETED.value
    for column in ("objective", "cost_s", "gpu_s"):
        frame[column] = pd.to_numeric(frame[column], errors="coerce") if column in frame else np.nan
    frame["cost_s"] = frame["cost_s"].fillna(0.0)
    frame["gpu_s"] = frame["gpu_s"].fillna(0.0)
    order = ["phase", "ended_at"] if "ended_at" in frame else ["phase"]
    return frame.sort_values(order, kind="stable").reset_index(drop=True)


def is_usable(frame: pd.DataFrame) -> pd.Series:
    """Rows whose objective may be plotted: not failed, finite."""
    return (frame["status"] != TrialStatus.FAILED.value) & np.isfinite(frame["objective"].astype(float))


def param_names(frame: pd.DataFrame) -> list[str]:
    """The parameters' names, from the ``param.<name>`` columns, in column order."""
    return [c[len("param."):] for c in frame.columns if c.startswith("param.")]


def phase_label(frame: pd.DataFrame, phase: int) -> str:
    """``3 refine``: the phase's number and the name its rows carry (the number alone without one)."""
    names = frame.loc[frame["phase"] == phase, "phase_name"]
    name = next((n for n in names if n), "")
    return f"{phase} {name}".strip()


def cost_axis(trials: pd.DataFrame, cumulative: bool = False) -> tuple[str, CostUnit]:
    """The cost column to plot and the unit that fits it.

    ``gpu_s`` (GPU-seconds, in GPU- units) when some trial held GPUs, else
    ``cost_s`` (wall seconds). The unit fits the largest value the axis
    shows: the total with ``cumulative``, else the costliest trial.
    """
    gpu = pd.to_numeric(trials["gpu_s"], errors="coerce").fillna(0) if "gpu_s" in trials else pd.Series(dtype=float)
    column = "gpu_s" if len(gpu) and (gpu > 0).any() else "cost_s"
    values = pd.to_numeric(trials[column], errors="coerce").fillna(0) if column in trials else pd.Series(dtype=float)
    largest = float(values.sum() if cumulative else values.max()) if len(values) else 0.0
    return column, cost_unit(largest, gpu=column == "gpu_s")


def check_mode(mode: str) -> None:
    """Raise ``ValueError`` unless ``mode`` is ``max`` or ``min``."""
    if mode not in ("max", "min"):
        raise ValueError(f"mode must be max or min, but got {mode!r}")


def is_number(value: Any) -> bool:
    """Whether ``value`` is an int or float (numpy's too), not a bool."""
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))
