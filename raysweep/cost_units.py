"""Cost in the unit that fits its magnitude: seconds, minutes or hours (GPU-seconds ... when trials hold GPUs).

A sweep of 2-second trials and one of 3-hour trials are both read at a
glance: 0.0006 h or 10 800 s are not. One unit serves every number shown
together (an axis, a table column), chosen from the largest of them, so the
numbers stay comparable. Pure logic: no pandas, no matplotlib, so ``status``
can use it and still answer at once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable

__all__ = ["CostUnit", "HOURS_FROM_S", "MINUTES_FROM_S", "cost_unit", "format_cost", "format_number"]

#: From this many seconds on, minutes read better than seconds (120 s is "2 min").
MINUTES_FROM_S = 120.0
#: From this many seconds on, hours read better than minutes (2 h, not 120 min).
HOURS_FROM_S = 7200.0


@dataclass(frozen=True)
class CostUnit:
    """A unit of cost: ``name`` for axis labels, ``short`` for cells and lines, ``seconds`` in one unit."""

    name: str  # "minutes", "GPU-minutes"
    short: str  # "min", "GPU-min"
    seconds: float
    gpu: bool

    @property
    def label(self) -> str:
        """What an axis or column of this unit measures: ``trial minutes`` (wall clock) or ``GPU-minutes``."""
        return self.name if self.gpu else f"trial {self.name}"

    def of(self, seconds: float) -> float:
        """``seconds`` (or GPU-seconds) expressed in this unit."""
        return float(seconds) / self.seconds

    def format(self, seconds: float) -> str:
        """``seconds`` in this unit with its short name: ``2.5 min``, ``41 s``, ``1,234 GPU-h``."""
        return f"{format_number(self.of(seconds))} {self.short}"


_UNITS = {
    False: (CostUnit("seconds", "s", 1.0, False), CostUnit("minutes", "min", 60.0, False), CostUnit("hours", "h", 3600.0, False)),
    True: (
        CostUnit("GPU-seconds", "GPU-s", 1.0, True),
        CostUnit("GPU-minutes", "GPU-min", 60.0, True),
        CostUnit("GPU-hours", "GPU-h", 3600.0, True),
    ),
}


def cost_unit(seconds: "float | Iterable[float]", gpu: bool = False) -> CostUnit:
    """The unit that fits the largest of ``seconds`` (one number or many; NaN and inf ignored).

    Seconds below :data:`MINUTES_FROM_S`, minutes below :data:`HOURS_FROM_S`,
    hours from there on; with ``gpu`` the GPU- units of the same sizes (the
    values are then GPU-seconds, seconds x GPUs held). No finite value gives seconds.
    """
    values = [seconds] if isinstance(seconds, (int, float)) else list(seconds)
    finite = [abs(float(v)) for v in values if v is not None and math.isfinite(float(v))]
    largest = max(finite, default=0.0)
    seconds_unit, minutes_unit, hours_unit = _UNITS[bool(gpu)]
    if largest >= HOURS_FROM_S:
        return hours_unit
    if largest >= MINUTES_FROM_S:
        return minutes_unit
    return seconds_unit


def format_cost(seconds: float, gpu: bool = False) -> str:
    """One cost in the unit that fits it: ``2.4 s``, ``15 min``, ``3.2 GPU-h``."""
    return cost_unit(seconds, gpu).format(seconds)


def format_number(value: float) -> str:
    """A number to three significant digits without an exponent (``0.0123``, ``4.56``, ``789``, ``12,345``)."""
    value = float(value)
    if not math.isfinite(value):
        return str(value)
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}" if abs(value) >= 1e-4 or value == 0 else f"{value:.1e}"
