"""Where a Bayesian phase's quasi-random starts land: a parameter's biased law,
truncated to the phase's box.

The searcher draws scrambled Halton points in the unit cube; each coordinate
goes through the parameter's biased law (:meth:`Parameter.unit_quantile`),
restricted to the part of it inside the box.
"""

from __future__ import annotations

import numpy as np

from raysweep.narrowing import Box
from raysweep.space import Parameter, RawValue


def sample_in_box(parameter: Parameter, unit_draw: float, box: Box | None) -> RawValue:
    """Map a uniform draw to a raw value of the parameter's biased law, truncated to the box."""
    if parameter.is_choice:
        allowed = box.allowed_values(parameter) if box is not None else tuple(parameter.values)
        return allowed[min(int(unit_draw * len(allowed)), len(allowed) - 1)]
    lo_unit, hi_unit = box.unit_interval(parameter) if box is not None else (0.0, 1.0)
    lo_mass, hi_mass = _unit_cdf(parameter, lo_unit), _unit_cdf(parameter, hi_unit)
    unit = float(parameter.unit_quantile(np.array([lo_mass + unit_draw * (hi_mass - lo_mass)]))[0])
    raw = parameter.from_unit(min(hi_unit, max(lo_unit, unit)))
    if box is not None and parameter.name in box.ranges:
        lo, hi = box.ranges[parameter.name]
        if not parameter.is_int:
            raw = min(hi, max(lo, float(raw)))  # type: ignore[arg-type]
    return raw


def _unit_cdf(parameter: Parameter, unit_value: float) -> float:
    """The inverse of :meth:`Parameter.unit_quantile` at one point (bisection)."""
    if unit_value <= 0.0:
        return 0.0
    if unit_value >= 1.0:
        return 1.0
    lo, hi = 0.0, 1.0
    for _ in range(60):
        mid = (lo + hi) / 2
        if parameter.unit_quantile(np.array([mid]))[0] < unit_value:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2
