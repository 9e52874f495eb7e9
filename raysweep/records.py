"""Typed records that flow between the layers: one trial record is both the
Parquet row and, later, the payload other sinks log."""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from typing import Any

from raysweep.space import RawValue


class TrialStatus(str, enum.Enum):
    """How a trial ended. Only ``COMPLETED`` is a full-fidelity measurement."""

    COMPLETED = "completed"
    EARLY_STOPPED = "early_stopped"  # stopped by the scheduler (ASHA)
    TIME_BUDGET = "time_budget"  # stopped by the phase's max_trial_time
    FAILED = "failed"  # raised, exited non-zero, never reported the metric, or reported a non-number / NaN / inf for it

    @property
    def has_value(self) -> bool:
        """Whether the trial's last objective may be used as an observation."""
        return self is not TrialStatus.FAILED


def is_finite_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass
class TrialRecord:
    """Everything raysweep keeps about one finished trial (one Parquet row)."""

    sweep: str
    phase: int  # 1-based
    phase_name: str
    trial_id: str
    status: TrialStatus
    params: dict[str, RawValue]
    objective: float | None  # the metric's last reported finite value
    best_objective: float | None  # the best value it reported, in the sweep's mode
    metrics: dict[str, int | float]  # each reported number's last value, by flattened name (raysweep.metrics)
    cost_s: float  # wall seconds the trial held its resources
    gpu_s: float  # cost_s x GPUs held
    iterations: int
    started_at: float  # unix seconds
    ended_at: float
    error: str | None = None
    seed: int | None = None
    resampled_from: str | None = None  # trial id whose config this one re-ran
    fidelity: float | None = None  # how far it got, in the units of the experiment's fidelity.attr
    # points of its learning curve, (fidelity, metric), rising, the objective's last (raysweep.fidelity.curve)
    curve: tuple[tuple[float, float], ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. the narrowed box


@dataclass
class ProgressRecord:
    """One report of a trial (one row of ``results/progress``)."""

    trial_id: str
    iteration: int
    time_s: float  # seconds since the trial started
    metrics: dict[str, int | float]  # the numbers of this report, by flattened name (raysweep.metrics)


@dataclass(frozen=True)
class Observation:
    """A finished trial as a searcher sees it: raw params, status, value, cost."""

    trial_id: str
    phase: int
    params: dict[str, RawValue]
    status: TrialStatus
    objective: float | None
    cost_s: float
    gpu_s: float
    iterations: int
    seed: int | None = None
    resampled_from: str | None = None
    fidelity: float | None = None  # how far it got (raysweep.fidelity); None when unknown
    # points of its learning curve, (fidelity, metric), rising; the last is where the
    # objective was measured (raysweep.fidelity.curve); empty when unknown
    curve: tuple[tuple[float, float], ...] = ()

    @property
    def usable(self) -> bool:
        """A value a model may learn from: not failed, and a finite number."""
        return self.status.has_value and self.objective is not None and math.isfinite(self.objective)
