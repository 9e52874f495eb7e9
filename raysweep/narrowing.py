"""Narrowing: the box where a later phase generates candidates.

A phase that narrows looks at the best configs of the sweep so far and keeps,
per parameter, ``mean +- k * std`` of their values. The statistics are taken in
the parameter's *internal* scale (``log(x)`` for log and power-of-two
parameters, ``log(1 - x)`` for ``logit_normal``, ``x`` otherwise), because that
is the scale in which the parameter is spread evenly: a learning rate between
1e-4 and 1e-2 narrows around its geometric mean, not its arithmetic one.

The box only restricts *where new candidates are generated*. The declared
bounds of the search space never change, and no observation is ever clipped to
a box: a model keeps learning from every raw value seen in every phase.

Which observations count
------------------------
* Failed observations (and any without a finite objective) never count.
* Given ``values`` (trial id -> value at the target fidelity, from
  :func:`raysweep.target_ranking.target_values`), every usable observation, of
  any status, is ranked by its value there: a run cut short competes with what
  a full run of its config is predicted to reach, not with its partial value.
* Without ``values`` the top configs are ranked among ``COMPLETED``
  observations, the only full-fidelity measurements, by their objective. When
  fewer than ``min_top`` trials completed, ``EARLY_STOPPED`` and ``TIME_BUDGET``
  observations join the ranking with their last reported value rather than
  leaving the phase without a box.
* Either way the box's statistics are over the chosen configs' raw parameter
  values (in each parameter's internal scale).
* A config measured several times (resampling) appears once per measurement, so
  a config that stays good on a second seed weighs more.

Too few observations
--------------------
:func:`narrow` needs ``min_top`` usable observations. A phase does not stop for
want of them (earlier trials failed, a small first phase): :func:`phase_box`
narrows around the usable ones there are when at least
:data:`MIN_OBSERVATIONS_TO_NARROW` exist, and otherwise leaves the phase in the
declared bounds; either way it returns a note saying what it did, which the
runner shows once (console, ``state.json``, ``status``).

Pure logic: no Ray, no Ax.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from raysweep.records import Observation, TrialStatus
from raysweep.space import Parameter, RawValue, SearchSpace

__all__ = ["Box", "BoxEdge", "EDGE_TOLERANCE", "MIN_OBSERVATIONS_TO_NARROW", "box_edges", "box_edges_per_trial",
           "describe_box_edges", "narrow", "phase_box", "top_observations"]

#: Fewest usable observations a box is built from: one point has no spread, so
#: its box would be ``min_width`` wide around a single, possibly lucky, config.
MIN_OBSERVATIONS_TO_NARROW = 2

#: Relative slack when checking that a raw float lies in a box: values that went
#: through log / exp round trips may land a few ulps outside their interval.
_CONTAINS_RTOL = 1e-9

#: A value this close to an end of a box (a fraction of the box's width in the
#: parameter's internal scale) counts as sitting on that edge.
EDGE_TOLERANCE = 0.01


@dataclass(frozen=True)
class Box:
    """Where one phase generates candidates, in raw values.

    ``ranges`` maps each numeric parameter to its ``(lo, hi)`` raw interval,
    inclusive, with ``lo <= hi`` (for integer and power-of-two parameters both
    ends are legal values). ``choices`` maps each choice parameter to the values
    still allowed, in declared order. A parameter that appears in neither is not
    restricted.
    """

    ranges: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    choices: Mapping[str, tuple[RawValue, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        ranges: dict[str, tuple[float, float]] = {}
        for name, interval in dict(self.ranges).items():
            if len(interval) != 2:
                raise ValueError(f"box range of {name!r} must be a (lo, hi) pair; got {interval!r}")
            lo, hi = interval
            if not (_is_number(lo) and _is_number(hi)):
                raise ValueError(f"box range of {name!r} must hold two numbers; got {interval!r}")
            if not lo <= hi:
                raise ValueError(f"box range of {name!r} must have lo <= hi; got {interval!r}")
            ranges[name] = (lo, hi)
        choices: dict[str, tuple[RawValue, ...]] = {}
        for name, values in dict(self.choices).items():
            values = tuple(values)
            if not values:
                raise ValueError(f"box choices of {name!r} must allow at least one value; got {values!r}")
            choices[name] = values
        overlap = sorted(set(ranges) & set(choices))
        if overlap:
            raise ValueError(f"a parameter is either a range or a choice in a box; both given for {overlap}")
        object.__setattr__(self, "ranges", ranges)
        object.__setattr__(self, "choices", choices)

    # -- membership ------------------------------------------------------------
    def contains(self, config: Mapping[str, Any]) -> bool:
        """Whether every restricted parameter of ``config`` lies in the box.

        A restricted parameter missing from ``config`` makes it fall outside.
        """
        for name, (lo, hi) in self.ranges.items():
            if name not in config or not _is_number(config[name]):
                return False
            value = float(config[name])
            slack = _CONTAINS_RTOL * max(abs(lo), abs(hi), 1e-300)
            if not lo - slack <= value <= hi + slack:
                return False
        for name, allowed in self.choices.items():
            if name not in config or config[name] not in allowed:
                return False
        return True

    def check_within(self, space: SearchSpace) -> None:
        """Raise ValueError unless the box names only parameters of ``space``
        and stays inside their declared bounds / values."""
        for name, (lo, hi) in self.ranges.items():
            if name not in space.names:
                raise ValueError(f"box restricts {name!r}, which is not a parameter of the search space {space.names}")
            parameter = space[name]
            if parameter.is_choice:
                raise ValueError(f"box gives a range for {name!r}, a choice parameter; give its allowed values instead")
            assert parameter.min is not None and parameter.max is not None
            slack = _CONTAINS_RTOL * max(abs(parameter.min), abs(parameter.max))
            if lo < parameter.min - slack or hi > parameter.max + slack:
                raise ValueError(
                    f"box range of {name!r} must lie inside its declared bounds "
                    f"[{parameter.min:g}, {parameter.max:g}]; got [{lo:g}, {hi:g}]"
                )
        for name, allowed in self.choices.items():
            if name not in space.names:
                raise ValueError(f"box restricts {name!r}, which is not a parameter of the search space {space.names}")
            parameter = space[name]
            if not parameter.is_choice:
                raise ValueError(f"box gives allowed values for {name!r}, a numeric parameter; give a (lo, hi) range instead")
            unknown = [v for v in allowed if v not in parameter.values]
            if unknown:
                raise ValueError(f"box allows values {unknown!r} for {name!r}, which declares only {list(parameter.values)!r}")

    # -- coordinates -------------------------------------------------------------
    def unit_interval(self, parameter: Parameter) -> tuple[float, float]:
        """The box of a numeric parameter in its unit coordinates, ``(lo, hi)``
        sorted; ``(0, 1)`` when the parameter is not restricted."""
        if parameter.name not in self.ranges:
            return 0.0, 1.0
        lo, hi = self.ranges[parameter.name]
        unit_ends = sorted((parameter.to_unit(lo), parameter.to_unit(hi)))
        return max(0.0, unit_ends[0]), min(1.0, unit_ends[1])

    def allowed_values(self, parameter: Parameter) -> tuple[RawValue, ...]:
        """The values of a choice parameter the box allows (all when unrestricted)."""
        return self.choices.get(parameter.name, tuple(parameter.values))

    # -- serialisation -------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict: ``{"ranges": {name: [lo, hi]}, "choices": {name: [...]}}``."""
        return {
            "ranges": {name: [_plain_number(lo), _plain_number(hi)] for name, (lo, hi) in self.ranges.items()},
            "choices": {name: list(values) for name, values in self.choices.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Box":
        """Inverse of :meth:`to_dict`; raises ValueError naming what is malformed."""
        if not isinstance(data, Mapping):
            raise ValueError(f"a box is a mapping with 'ranges' and 'choices'; got {data!r}")
        unknown = sorted(set(data) - {"ranges", "choices"})
        if unknown:
            raise ValueError(f"a box holds only 'ranges' and 'choices'; got unknown keys {unknown}")
        ranges = data.get("ranges") or {}
        choices = data.get("choices") or {}
        if not isinstance(ranges, Mapping) or not isinstance(choices, Mapping):
            raise ValueError(f"box 'ranges' and 'choices' must be mappings; got {ranges!r} and {choices!r}")
        return cls(
            ranges={str(name): tuple(interval) for name, interval in ranges.items()},  # type: ignore[misc]
            choices={str(name): tuple(values) for name, values in choices.items()},
        )

    def describe(self) -> str:
        """One short line per restricted parameter, for the CLI."""
        if not self.ranges and not self.choices:
            return "(no restriction)"
        parts = [f"{name} [{lo:.4g}, {hi:.4g}]" for name, (lo, hi) in self.ranges.items()]
        parts += [f"{name} {{{', '.join(str(v) for v in values)}}}" for name, values in self.choices.items()]
        return ", ".join(parts)


def top_observations(
    observations: Sequence[Observation],
    mode: str,
    *,
    top_fraction: float = 0.1,
    min_top: int = 5,
    values: Mapping[str, float] | None = None,
) -> list[Observation]:
    """The best observations, as :func:`narrow` ranks them (see the module docstring).

    ``values`` maps trial ids to their value at the target fidelity; when
    given, every usable observation is ranked by it (one missing from it by
    its objective). Raises ValueError for a bad argument or when fewer than
    ``min_top`` usable observations exist.
    """
    _check_mode(mode)
    if not 0 < top_fraction <= 1:
        raise ValueError(f"top_fraction must lie in (0, 1]; got {top_fraction!r}")
    if isinstance(min_top, bool) or not isinstance(min_top, int) or min_top < 1:
        raise ValueError(f"min_top must be an int >= 1; got {min_top!r}")
    usable = [o for o in observations if o.usable]
    completed = [o for o in usable if o.status is TrialStatus.COMPLETED]
    pool = completed if len(completed) >= min_top and values is None else usable
    if len(pool) < min_top:
        failed = len(observations) - len(usable)
        raise ValueError(
            f"narrowing needs at least min_top={min_top} usable observations (completed, or early-stopped / "
            f"time-budget ones as a fallback); got {len(usable)} of {len(observations)} ({failed} failed or without a value)"
        )
    count = min(len(pool), max(min_top, math.ceil(top_fraction * len(pool))))
    def value(observation: Observation) -> float:
        if values is not None and observation.trial_id in values:
            return float(values[observation.trial_id])
        return float(observation.objective)  # type: ignore[arg-type]

    return sorted(pool, key=value, reverse=(mode == "max"))[:count]


def narrow(
    space: SearchSpace,
    observations: Sequence[Observation],
    mode: str,
    *,
    top_fraction: float = 0.1,
    min_top: int = 5,
    std_multiplier: float,
    min_width: float = 0.05,
    values: Mapping[str, float] | None = None,
) -> Box:
    """The box around the top configs of ``observations``.

    Per numeric parameter: ``mean +- std_multiplier * std`` (sample std) of the
    top configs' internal values, clipped to the declared bounds, widened to at
    least ``min_width`` of the declared internal width (so a box never collapses
    to a point, even when all top configs agree), then mapped back to raw values;
    integer and power-of-two ends are rounded outward to legal values. Choice
    parameters keep the values seen among the top configs. ``values`` (trial id
    -> value at the target fidelity) ranks them as :func:`top_observations` says.

    Raises ValueError for a bad argument or when fewer than ``min_top`` usable
    observations exist.
    """
    if not math.isfinite(std_multiplier) or std_multiplier < 0:
        raise ValueError(f"std_multiplier must be a finite number >= 0; got {std_multiplier!r}")
    if not math.isfinite(min_width) or not 0 < min_width <= 1:
        raise ValueError(f"min_width must lie in (0, 1] (a fraction of the declared internal width); got {min_width!r}")
    top = top_observations(observations, mode, top_fraction=top_fraction, min_top=min_top, values=values)
    ranges: dict[str, tuple[float, float]] = {}
    choices: dict[str, tuple[RawValue, ...]] = {}
    for parameter in space:
        seen = [o.params[parameter.name] for o in top if parameter.name in o.params]
        if not seen:
            continue  # a parameter the earlier phases did not record stays unrestricted
        if parameter.is_choice:
            choices[parameter.name] = tuple(v for v in parameter.values if v in seen)
            if not choices[parameter.name]:
                del choices[parameter.name]  # none of the recorded values is declared any more
        else:
            ranges[parameter.name] = _numeric_range(parameter, seen, std_multiplier, min_width)
    return Box(ranges=ranges, choices=choices)


def phase_box(
    space: SearchSpace,
    observations: Sequence[Observation],
    mode: str,
    *,
    top_fraction: float = 0.1,
    min_top: int = 5,
    std_multiplier: float,
    min_width: float = 0.05,
    values: Mapping[str, float] | None = None,
) -> tuple[Box | None, str | None]:
    """The box of a narrowed phase, or None, and a note when it is not the usual one.

    With at least ``min_top`` usable observations this is :func:`narrow` and the
    note is None. With fewer, but at least :data:`MIN_OBSERVATIONS_TO_NARROW`,
    the box is built around all the usable ones (``min_top`` lowered to their
    count). With fewer still the phase is not narrowed (None): it generates in
    the declared bounds. The note says which, with the counts. ``values``
    (trial id -> value at the target fidelity) ranks the top configs as
    :func:`top_observations` says.
    """
    usable = sum(1 for o in observations if o.usable)
    settings = dict(top_fraction=top_fraction, std_multiplier=std_multiplier, min_width=min_width, values=values)
    if usable >= min_top:
        return narrow(space, observations, mode, min_top=min_top, **settings), None
    failed = len(observations) - usable
    counts = f"{usable} usable of {len(observations)} earlier trials ({failed} failed or without a value)"
    if usable >= MIN_OBSERVATIONS_TO_NARROW:
        box = narrow(space, observations, mode, min_top=usable, **settings)
        return box, f"narrowed around all {counts}, fewer than min_top={min_top}"
    return None, (
        f"not narrowed: {counts}, fewer than the {MIN_OBSERVATIONS_TO_NARROW} a box needs; "
        "candidates come from the declared bounds"
    )


@dataclass(frozen=True)
class BoxEdge:
    """How many of a phase's trials sit on one edge of its box: ``trials`` of ``total``.

    ``side`` is ``"lower"`` or ``"upper"`` in raw values (for ``logit_normal``
    the raw lower end too, although its internal scale runs the other way).
    """

    parameter: str
    side: str
    trials: int
    total: int


def box_edges(
    space: SearchSpace,
    box: Box,
    configs: Sequence[Mapping[str, Any]],
    *,
    tolerance: float = EDGE_TOLERANCE,
) -> list[BoxEdge]:
    """The edges of ``box`` that some of ``configs`` (one phase's trials) sit on.

    A config sits on an edge when its value lies within ``tolerance`` of the
    box's width of that end, measured in the parameter's internal scale (log
    for log and power-of-two parameters, ``log(1 - x)`` for ``logit_normal``).
    Ends that coincide with a declared bound are left out: piling up there is
    the search space's limit, not the box's. Many trials on a free edge say
    the optimum may lie outside the box. Choice parameters have no edges.

    Returns the edges with at least one trial, in the space's parameter order,
    lower before upper; ``total`` is ``len(configs)``. Raises ValueError for a
    ``tolerance`` outside [0, 0.5].
    """
    if not 0 <= tolerance <= 0.5:
        raise ValueError(f"tolerance must lie in [0, 0.5] (a fraction of the box's width); got {tolerance!r}")
    edges: list[BoxEdge] = []
    for parameter in space:
        if parameter.is_choice or parameter.name not in box.ranges:
            continue
        assert parameter.min is not None and parameter.max is not None
        lo, hi = box.ranges[parameter.name]
        internal_lo, internal_hi = parameter.to_internal(lo), parameter.to_internal(hi)
        slack = tolerance * abs(internal_hi - internal_lo)
        values = [
            parameter.to_internal(float(config[parameter.name]))
            for config in configs
            if _is_number(config.get(parameter.name)) and _in_domain(parameter, float(config[parameter.name]))
        ]
        for side, end, internal_end, bound in (("lower", lo, internal_lo, parameter.min), ("upper", hi, internal_hi, parameter.max)):
            if _same_number(end, bound):
                continue
            count = sum(1 for value in values if abs(value - internal_end) <= slack + _CONTAINS_RTOL * max(abs(internal_end), 1.0))
            if count:
                edges.append(BoxEdge(parameter.name, side, count, len(configs)))
    return edges


def box_edges_per_trial(
    space: SearchSpace,
    boxed_configs: Sequence[tuple[Box, Mapping[str, Any]]],
    *,
    tolerance: float = EDGE_TOLERANCE,
) -> list[BoxEdge]:
    """:func:`box_edges` for a phase whose box moved: each config judged against
    the box it was generated in, ``(box, config)`` pairs; ``total`` counts them all."""
    counts: dict[tuple[str, str], int] = {}
    groups: dict[str, tuple[Box, list[Mapping[str, Any]]]] = {}
    for box, config in boxed_configs:
        groups.setdefault(json.dumps(box.to_dict(), sort_keys=True, default=str), (box, []))[1].append(config)
    for box, configs in groups.values():
        for edge in box_edges(space, box, configs, tolerance=tolerance):
            counts[(edge.parameter, edge.side)] = counts.get((edge.parameter, edge.side), 0) + edge.trials
    order = [(p.name, side) for p in space for side in ("lower", "upper")]
    return [BoxEdge(name, side, counts[(name, side)], len(boxed_configs)) for name, side in order if (name, side) in counts]


def describe_box_edges(edges: Sequence[BoxEdge], total: int) -> str:
    """One line for people: ``box edges: learning_rate upper 7/10, total_timesteps upper 9/10``.

    ``total`` is the phase's trial count, shown when no trial sits on an edge.
    """
    if not edges:
        return f"box edges: no trial on an edge (of {total})"
    return "box edges: " + ", ".join(f"{e.parameter} {e.side} {e.trials}/{e.total}" for e in edges)


def _in_domain(parameter: Parameter, value: float) -> bool:
    """Whether ``value`` has an internal coordinate (log of a positive number, log1p of less than 1)."""
    if parameter.scaling == "log":
        return value > 0
    if parameter.scaling == "log1m":
        return value < 1
    return True


def _same_number(a: float, b: float) -> bool:
    return abs(a - b) <= _CONTAINS_RTOL * max(abs(a), abs(b), 1e-300)


def _numeric_range(
    parameter: Parameter, raw_values: Sequence[RawValue], std_multiplier: float, min_width: float
) -> tuple[float, float]:
    assert parameter.min is not None and parameter.max is not None
    internal_values = np.array([parameter.to_internal(float(v)) for v in raw_values])  # type: ignore[arg-type]
    mean = float(internal_values.mean())
    std = float(internal_values.std(ddof=1)) if len(internal_values) > 1 else 0.0
    bound_a, bound_b = parameter.internal_bounds
    internal_lo, internal_hi = min(bound_a, bound_b), max(bound_a, bound_b)
    lo = max(internal_lo, mean - std_multiplier * std)
    hi = min(internal_hi, mean + std_multiplier * std)
    if hi < lo:  # the top configs lie outside the declared bounds (a changed spec)
        lo = hi = min(internal_hi, max(internal_lo, mean))
    lo, hi = _widen(lo, hi, min_width * (internal_hi - internal_lo), internal_lo, internal_hi)
    raw_ends = sorted((parameter.from_internal(lo), parameter.from_internal(hi)))
    raw_lo = min(parameter.max, max(parameter.min, raw_ends[0]))
    raw_hi = min(parameter.max, max(parameter.min, raw_ends[1]))
    if parameter.distribution == "pow2":
        lo_exp, hi_exp = parameter.pow2_exponents
        exp_lo = max(lo_exp, math.floor(math.log2(raw_lo) + 1e-9))
        exp_hi = min(hi_exp, math.ceil(math.log2(raw_hi) - 1e-9))
        return 2**exp_lo, 2**exp_hi
    if parameter.is_int:
        return (
            max(int(math.ceil(parameter.min)), math.floor(raw_lo + 1e-9)),
            min(int(math.floor(parameter.max)), math.ceil(raw_hi - 1e-9)),
        )
    return float(raw_lo), float(raw_hi)


def _widen(lo: float, hi: float, width: float, floor: float, ceiling: float) -> tuple[float, float]:
    """Grow ``[lo, hi]`` symmetrically to at least ``width``, shifted to stay in bounds."""
    if hi - lo >= width:
        return lo, hi
    centre = (lo + hi) / 2
    lo, hi = centre - width / 2, centre + width / 2
    if lo < floor:
        lo, hi = floor, floor + width
    if hi > ceiling:
        lo, hi = ceiling - width, ceiling
    return max(floor, lo), min(ceiling, hi)


def _check_mode(mode: str) -> None:
    if mode not in ("max", "min"):
        raise ValueError(f"mode must be 'max' or 'min'; got {mode!r}")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool) and math.isfinite(value)


def _plain_number(value: float) -> float | int:
    if isinstance(value, (int, np.integer)):
        return int(value)
    return float(value)

