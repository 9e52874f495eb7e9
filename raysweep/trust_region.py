"""A box that follows the optimum: the trust-region rule of a narrowed phase.

A narrowed phase starts in the box :mod:`raysweep.narrowing` builds around the
best configs so far. When the best values lie beyond that box, a fixed box
keeps the phase pressed against its edge. This rule moves the box after each
trial of the phase ends, in the spirit of TuRBO (D. Eriksson, M. Pearce,
J. Gardner, R. Turner, M. Poloczek, "Scalable Global Optimization via Local
Bayesian Optimization", NeurIPS 2019): a trust region grows after successes and
shrinks after repeated failures, always inside the declared bounds.

Success
    A trial succeeds when its value improves on the *incumbent*: the best
    usable observation inside the current box, earlier phases' included (the
    box's own best, as TuRBO judges its region), by more than
    :data:`IMPROVEMENT` of the incumbent's magnitude (TuRBO's ``1e-3``). With
    no usable observation in the box, any usable value succeeds. Failed trials
    (no value) and values that do not improve are failures. A phase's own
    resamples re-measure a known config and are not judged.

Growth (one side at a time)
    A success whose value of a parameter lies within :data:`EDGE_BAND` of the
    box's width from one end, where that end is not a declared bound, moves
    that end outward by :data:`GROW_FRACTION` of the box's width (at least of
    ``min_width``), clipped to the declared bounds. TuRBO doubles its whole box
    after 3 successes in a row; a success *at an edge* already says in which
    direction, and a phase has few trials, so one is enough and only that side
    moves. A success anywhere resets the failure count.

Shrinking
    After ``failure_tolerance`` failures in a row (TuRBO's ``max(4, d)`` for
    one trial at a time, ``d`` the box's numeric parameters) every numeric
    range shrinks by :data:`SHRINK_FACTOR` around the incumbent (the box's
    middle when it holds none), kept inside the current box and never
    narrower than ``min_width``; the count starts again.

Coordinates
    Everything is measured in each parameter's unit coordinates
    (:meth:`Parameter.to_unit`: log for log and power-of-two parameters,
    ``log(1 - x)`` for ``logit_normal``, mapped so the declared bounds are 0
    and 1), so ``min_width`` is the narrowing's fraction of the declared
    width. An end that moves is mapped back to a raw value; integer and
    power-of-two ends are rounded outward to legal values (and a shrunk end
    clipped to the old box), so the box always holds legal values. An end
    that does not move keeps its raw value exactly.

Choices are left alone: their allowed values came from the top configs and
have no order, so no edge to press against or direction to grow in; the
model still learns from every value the history holds.

Pure logic: no Ray, no Ax.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from raysweep.narrowing import Box
from raysweep.records import Observation
from raysweep.space import Parameter, SearchSpace

__all__ = ["EDGE_BAND", "GROW_FRACTION", "IMPROVEMENT", "SHRINK_FACTOR", "Move", "TrustRegion", "box_changes",
           "describe_box_moves"]

#: A value this close to an end of the box (a fraction of the box's width in
#: unit coordinates) presses against that end. Wider than the 1% that counts
#: a trial as *on* an edge for people (:data:`raysweep.narrowing.EDGE_TOLERANCE`):
#: quasi-random starts near an edge are evidence too.
EDGE_BAND = 0.1
#: How far a growing end moves outward, as a fraction of the box's width.
GROW_FRACTION = 0.5
#: The width a shrink leaves, as a fraction of the box's width.
SHRINK_FACTOR = 0.5
#: A success beats the incumbent by more than this fraction of its magnitude.
IMPROVEMENT = 1e-3
#: The fewest failures in a row before a shrink (TuRBO's 4).
MIN_FAILURE_TOLERANCE = 4

#: Unit-coordinate slack for "this end is a declared bound".
_AT_BOUND = 1e-9


@dataclass(frozen=True)
class Move:
    """What one trial did to the region.

    ``kind``: ``"grow"`` (``sides`` names each ``(parameter, "lower"|"upper")``
    end that moved out), ``"shrink"``, ``"success"`` (no free edge to grow),
    ``"failure"``, or ``"skip"`` (not judged: a resample). ``"success"`` and
    ``"failure"`` leave the box as it was.
    """

    kind: str
    sides: tuple[tuple[str, str], ...] = ()

    def describe(self) -> str:
        """For logs: ``grew learning_rate upper, x lower`` / ``shrank`` / ``failure``."""
        if self.kind == "grow":
            return "grew " + ", ".join(f"{name} {side}" for name, side in self.sides)
        return "shrank" if self.kind == "shrink" else self.kind


class TrustRegion:
    """The box of one narrowed phase and the rule's counters (see the module docstring).

    Args:
        space: the sweep's declared search space.
        box: the phase's initial box (:func:`raysweep.narrowing.phase_box`).
        min_width: the narrowest a numeric range may get, a fraction of the
            declared unit width in (0, 1] (the narrowing's ``min_width``).
        failure_tolerance: failures in a row before a shrink; default
            ``max(4, number of numeric ranges in the box)``.

    Raises ValueError for a box outside the space's declared bounds or a bad
    setting, naming it.
    """

    def __init__(
        self, space: SearchSpace, box: Box, *, min_width: float = 0.05, failure_tolerance: int | None = None
    ) -> None:
        if not isinstance(box, Box):
            raise ValueError(f"box must be a raysweep Box; got {box!r}")
        box.check_within(space)
        if isinstance(min_width, bool) or not isinstance(min_width, (int, float)) or not 0 < min_width <= 1:
            raise ValueError(f"min_width must lie in (0, 1] (a fraction of the declared width); got {min_width!r}")
        if failure_tolerance is None:
            failure_tolerance = max(MIN_FAILURE_TOLERANCE, len(box.ranges))
        if isinstance(failure_tolerance, bool) or not isinstance(failure_tolerance, int) or failure_tolerance < 1:
            raise ValueError(f"failure_tolerance must be an int >= 1; got {failure_tolerance!r}")
        self.space = space
        self.initial = box
        self.box = box
        self.min_width = float(min_width)
        self.failure_tolerance = failure_tolerance
        self.failures = 0  # in a row, since the last success or shrink
        self.growths = 0  # trials that moved at least one end outward
        self.shrinks = 0

    # -- the rule -------------------------------------------------------------------
    def observe(self, trial: Observation, others: Sequence[Observation], mode: str) -> Move:
        """Judge one finished trial of the phase and move the box; return what happened.

        ``others``: every other observation the phase knows (earlier phases and
        its own finished trials; ``trial`` itself is left out if present);
        the incumbent is the best usable one inside the current box.
        ``mode`` is ``"max"`` or ``"min"``.
        """
        if mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min'; got {mode!r}")
        if isinstance(trial.resampled_from, str) and trial.resampled_from:
            return Move("skip")
        incumbent = self.incumbent([o for o in others if o.trial_id != trial.trial_id], mode)
        if trial.usable and (incumbent is None or _improves(float(trial.objective), float(incumbent.objective), mode)):  # type: ignore[arg-type]
            self.failures = 0
            sides = self._free_edges_at(trial.params)
            if not sides:
                return Move("success")
            self.box = self._grown(sides)
            self.growths += 1
            return Move("grow", tuple(sides))
        self.failures += 1
        if self.failures < self.failure_tolerance:
            return Move("failure")
        self.failures = 0
        shrunk = self._shrunk(incumbent.params if incumbent is not None else {})
        if shrunk == self.box:
            return Move("failure")  # every range is at min_width already
        self.box = shrunk
        self.shrinks += 1
        return Move("shrink")

    def incumbent(self, observations: Sequence[Observation], mode: str) -> Observation | None:
        """The best usable observation inside the current box, or None."""
        inside = [o for o in observations if o.usable and self.box.contains(o.params)]
        if not inside:
            return None
        pick = max if mode == "max" else min
        return pick(inside, key=lambda o: float(o.objective))  # type: ignore[arg-type]

    def _free_edges_at(self, params: Mapping[str, Any]) -> list[tuple[str, str]]:
        """The ends of the box, not declared bounds, that ``params`` lies within EDGE_BAND of."""
        sides = []
        for name in self.box.ranges:
            parameter = self.space[name]
            value = params.get(name)
            if not _is_number(value) or not _has_unit(parameter, float(value)):
                continue
            unit = parameter.to_unit(float(value))
            lo, hi = self.box.unit_interval(parameter)
            band = EDGE_BAND * (hi - lo) + _AT_BOUND
            if lo > _AT_BOUND and unit <= lo + band:
                sides.append((name, "lower"))
            if hi < 1.0 - _AT_BOUND and unit >= hi - band:
                sides.append((name, "upper"))
        return sides

    def _grown(self, sides: Sequence[tuple[str, str]]) -> Box:
        ranges = dict(self.box.ranges)
        for name, side in sides:
            parameter = self.space[name]
            lo, hi = self.box.unit_interval(parameter)
            step = GROW_FRACTION * max(hi - lo, self.min_width)
            raw_lo, raw_hi = ranges[name]
            if side == "lower":
                raw_lo = _raw_end(parameter, max(0.0, lo - step), "lower")
            else:
                raw_hi = _raw_end(parameter, min(1.0, hi + step), "upper")
            ranges[name] = (raw_lo, raw_hi)
        return Box(ranges=ranges, choices=self.box.choices)

    def _shrunk(self, centre_params: Mapping[str, Any]) -> Box:
        ranges = dict(self.box.ranges)
        for name, (raw_lo, raw_hi) in self.box.ranges.items():
            parameter = self.space[name]
            lo, hi = self.box.unit_interval(parameter)
            width = max(SHRINK_FACTOR * (hi - lo), self.min_width)
            if width >= hi - lo:
                continue  # at min_width already
            value = centre_params.get(name)
            centre = (lo + hi) / 2
            if _is_number(value) and _has_unit(parameter, float(value)):
                centre = min(hi, max(lo, parameter.to_unit(float(value))))
            new_lo = min(hi - width, max(lo, centre - width / 2))
            new_hi = new_lo + width
            ends = (
                raw_lo if new_lo <= lo else _raw_end(parameter, new_lo, "lower"),
                raw_hi if new_hi >= hi else _raw_end(parameter, new_hi, "upper"),
            )
            ranges[name] = (max(raw_lo, ends[0]), min(raw_hi, ends[1]))  # rounding outward stays in the old box
        return Box(ranges=ranges, choices=self.box.choices)

    # -- saved state ------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict: both boxes (:meth:`Box.to_dict`), the settings and the counters."""
        return {
            "initial": self.initial.to_dict(),
            "box": self.box.to_dict(),
            "min_width": self.min_width,
            "failure_tolerance": self.failure_tolerance,
            "failures": self.failures,
            "growths": self.growths,
            "shrinks": self.shrinks,
        }

    @classmethod
    def from_dict(cls, space: SearchSpace, data: Mapping[str, Any]) -> "TrustRegion":
        """Inverse of :meth:`to_dict`; raises ValueError (or KeyError) for a malformed dict."""
        region = cls(
            space, Box.from_dict(data["initial"]), min_width=data["min_width"], failure_tolerance=data["failure_tolerance"]
        )
        region.box = Box.from_dict(data["box"])
        region.box.check_within(space)
        region.failures = int(data["failures"])
        region.growths = int(data["growths"])
        region.shrinks = int(data["shrinks"])
        return region

    def moves(self) -> dict[str, int]:
        """``{"growths": n, "shrinks": m}``, as ``state.json`` keeps them."""
        return {"growths": self.growths, "shrinks": self.shrinks}


def box_changes(initial: Box, final: Box) -> list[tuple[str, tuple[float, float], tuple[float, float]]]:
    """The numeric ranges that differ between two boxes of a phase: ``(name, initial (lo, hi), final (lo, hi))``,
    in ``initial``'s order (a range only one box restricts is left out)."""
    return [
        (name, interval, final.ranges[name])
        for name, interval in initial.ranges.items()
        if name in final.ranges and tuple(final.ranges[name]) != tuple(interval)
    ]


def describe_box_moves(initial: Box, final: Box, moves: Mapping[str, int] | None = None) -> str:
    """One line for people: ``box moved: x [0.18, 0.23] -> [0.18, 0.44]; 5 growths, 0 shrinks``.

    ``moves`` is ``state.json``'s ``box_moves`` (left out of the line when None);
    ``box did not move`` when no range changed.
    """
    counts = ""
    if moves is not None:
        growths, shrinks = moves.get("growths", 0), moves.get("shrinks", 0)
        counts = f"{growths} growth{'s' * (growths != 1)}, {shrinks} shrink{'s' * (shrinks != 1)}"
    changes = box_changes(initial, final)
    if not changes:
        return "box did not move" + (f" ({counts})" if counts else "")
    parts = [f"{name} [{a:.4g}, {b:.4g}] -> [{c:.4g}, {d:.4g}]" for name, (a, b), (c, d) in changes]
    return "box moved: " + ", ".join(parts) + (f"; {counts}" if counts else "")


def _improves(value: float, incumbent: float, mode: str) -> bool:
    margin = IMPROVEMENT * abs(incumbent)
    return value > incumbent + margin if mode == "max" else value < incumbent - margin


def _raw_end(parameter: Parameter, unit: float, side: str) -> float | int:
    """The raw value of a box end at ``unit``, rounded outward to a legal value inside the declared bounds."""
    assert parameter.min is not None and parameter.max is not None
    if unit <= 0.0:
        raw = float(parameter.min)
    elif unit >= 1.0:
        raw = float(parameter.max)
    else:
        internal_lo, internal_hi = parameter.internal_bounds
        raw = min(parameter.max, max(parameter.min, parameter.from_internal(internal_lo + unit * (internal_hi - internal_lo))))
    if parameter.distribution == "pow2":
        low_exp, high_exp = parameter.pow2_exponents
        exponent = math.floor(math.log2(raw) + 1e-9) if side == "lower" else math.ceil(math.log2(raw) - 1e-9)
        return 2 ** min(high_exp, max(low_exp, exponent))
    if parameter.is_int:
        rounded = math.floor(raw + 1e-9) if side == "lower" else math.ceil(raw - 1e-9)
        return int(min(math.floor(parameter.max), max(math.ceil(parameter.min), rounded)))
    # 12 significant digits hide the round trip's float noise (0.425, not 0.42499999999999993).
    return float(min(parameter.max, max(parameter.min, float(f"{raw:.12g}"))))


def _has_unit(parameter: Parameter, value: float) -> bool:
    """Whether ``value`` has a unit coordinate (log of a positive number, log(1 - x) below 1)."""
    if parameter.scaling == "log":
        return value > 0
    if parameter.scaling == "log1m":
        return value < 1
    return True


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
