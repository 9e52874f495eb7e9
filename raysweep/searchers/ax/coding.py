"""How raysweep's parameters are declared to Ax, and how values cross over.

How parameters appear in Ax
    (see :class:`ParameterCoding`) Float parameters (``uniform``, ``log_uniform``,
    ``logit_normal``) cross as their unit coordinate, ``<name>__unit`` in
    [0, 1]: the parameter's own scale (log, ``log(1 - x)``) mapped so its
    declared bounds are 0 and 1. The model sees them exactly as it would with
    Ax's log transform, and no box is too narrow for Ax however small the raw
    values are. ``int_uniform`` / ``int_log_uniform`` are Ax int ranges (linear
    / log), ``pow2`` an ordered int choice of the powers of two (Ax encodes it
    by index, which is exactly log2 scale), ``choice`` a choice (numeric
    values ordered, others unordered; values of mixed types, such as ``null``
    beside numbers, as an unordered choice of their JSON texts). Ints and
    ordered choices are relaxed to floats for the model (Ax's
    ``Cont_X_trans``) and rounded back on the way out, so candidates are always
    legal raw values; :meth:`Parameter.snap` checks again. Unordered choices
    are one-hot encoded. History values Ax cannot hold (a missing parameter, an
    undeclared choice, a non-integer for an int) are skipped with a warning;
    numbers outside the declared bounds are kept.

A narrowed box reaches Ax only as the space candidates are generated in
(:func:`generation_space`); the Ax experiment keeps the declared bounds.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
from ax import ChoiceParameterConfig, RangeParameterConfig
from ax.core.parameter import ChoiceParameter, RangeParameter
from ax.core.search_space import SearchSpace as AxSearchSpace

from raysweep.narrowing import Box
from raysweep.space import Parameter, RawValue, SearchSpace

#: Suffix of the Ax parameter that holds a float parameter's unit coordinate.
UNIT_SUFFIX = "__unit"
#: A box range narrower than this in Ax's coordinates (unit coordinates for
#: floats) is pinned to one value: Ax refuses ranges under 1.5e-5 wide.
MIN_AX_RANGE_WIDTH = 1e-4


@dataclass(frozen=True)
class ParameterCoding:
    """How one raysweep parameter is declared to Ax, and how values cross over.

    * Float ranges (``uniform``, ``log_uniform``, ``logit_normal``) cross as
      their *unit coordinate* (:meth:`Parameter.to_unit`: the internal scale
      mapped so the declared bounds are 0 and 1), a linear Ax range named
      ``<name>__unit``. Ax refuses ranges narrower than 1.5e-5 in its own
      coordinates, so raw bounds of any magnitude (a weight decay box of
      [2e-7, 8e-6]) would otherwise break it; in unit coordinates a box is as
      wide as its share of the declared internal width. Out-of-bounds history
      maps outside [0, 1] and Ax widens the model's space to hold it.
    * Int ranges (``int_uniform``, ``int_log_uniform``) stay Ax ints in their raw
      values (an int range is at least 1 wide), log-scaled for the log one.
    * ``pow2`` is an ordered int choice of the powers of two.
    * A ``choice`` of one value type (all str, all bool, all int, all numbers)
      is an Ax choice of those values, ordered when numeric; a choice mixing
      types (``[null, 0.5, 1.0]``) crosses as an unordered str choice of one
      token per value (:func:`choice_token`), mapped back to the raw value.
    """

    parameter: Parameter
    ax_name: str

    @property
    def unit(self) -> bool:
        """Whether the parameter crosses in unit coordinates (float ranges)."""
        p = self.parameter
        return not p.is_choice and not p.is_int

    @property
    def tokens(self) -> dict[str, RawValue] | None:
        """Token -> raw value for a choice Ax cannot hold as it is, else None."""
        p = self.parameter
        if not p.is_choice or choice_type(p) != "mixed":
            return None
        return {choice_token(value): value for value in p.values}

    def ax_config(self) -> RangeParameterConfig | ChoiceParameterConfig:
        p = self.parameter
        if p.is_choice:
            tokens = self.tokens
            if tokens is not None:
                return ChoiceParameterConfig(
                    name=self.ax_name, values=list(tokens), parameter_type="str", is_ordered=len(tokens) <= 2
                )
            values = list(p.values)
            kind = choice_type(p)
            ordered = kind in ("int", "float") or len(values) <= 2
            if kind in ("int", "float"):
                values = sorted(values)  # type: ignore[type-var]
            return ChoiceParameterConfig(
                name=self.ax_name, values=values, parameter_type=kind, is_ordered=ordered  # type: ignore[arg-type]
            )
        assert p.min is not None and p.max is not None
        if p.distribution == "pow2":
            lo, hi = p.pow2_exponents
            return ChoiceParameterConfig(
                name=self.ax_name, values=[2**k for k in range(lo, hi + 1)], parameter_type="int", is_ordered=True
            )
        if p.is_int:
            return RangeParameterConfig(
                name=self.ax_name,
                bounds=(int(math.ceil(p.min)), int(math.floor(p.max))),
                parameter_type="int",
                scaling="log" if p.is_log else "linear",
            )
        return RangeParameterConfig(name=self.ax_name, bounds=(0.0, 1.0), parameter_type="float", scaling="linear")

    def problem_with(self, raw_value: Any) -> str | None:
        """Why ``raw_value`` cannot be attached to Ax, or None."""
        p = self.parameter
        if p.is_choice:
            return None if _declared_choice(p, raw_value) else f"{p.name}={raw_value!r} is not one of the declared values {list(p.values)!r}"
        if isinstance(raw_value, bool) or not isinstance(raw_value, (int, float, np.integer, np.floating)):
            return f"{p.name}={raw_value!r} is not a number"
        value = float(raw_value)
        if not math.isfinite(value):
            return f"{p.name}={raw_value!r} is not finite"
        if p.is_int and value != round(value):
            return f"{p.name}={raw_value!r} is not an integer"
        if p.distribution == "pow2" and (value <= 0 or 2 ** round(math.log2(value)) != value):
            return f"{p.name}={raw_value!r} is not a power of two"
        if p.is_log and value <= 0:
            return f"{p.name}={raw_value!r} must be > 0 on a log scale"
        if p.distribution == "logit_normal" and value >= 1:
            return f"{p.name}={raw_value!r} must be < 1 (logit_normal)"
        return None

    def to_ax(self, raw_value: Any) -> Any:
        p = self.parameter
        if p.is_choice:
            if self.tokens is not None:
                return choice_token(raw_value)
            kind = choice_type(p)
            if kind == "float":
                return float(raw_value)
            if kind == "int":
                return int(raw_value)
            return raw_value
        if self.unit:
            return p.to_unit(float(raw_value))
        return int(round(float(raw_value)))

    def from_ax(self, ax_value: Any, *, snap: bool) -> RawValue:
        """The raw value of an Ax value; ``snap`` rounds it to a legal one in the
        declared bounds, otherwise it is returned as the model holds it."""
        p = self.parameter
        if p.is_choice:
            tokens = self.tokens
            if tokens is not None:
                return tokens.get(ax_value, ax_value)
            return next((value for value in p.values if value == ax_value), ax_value)
        if self.unit:
            lo, hi = p.internal_bounds
            raw = p.from_internal(lo + float(ax_value) * (hi - lo))
        else:
            raw = float(ax_value)
        if snap:
            return p.snap(float(raw))
        if p.is_int and float(raw) == round(float(raw)):
            return int(round(float(raw)))
        return float(raw)


def choice_type(parameter: Parameter) -> str:
    """The Ax value type of a choice's values, or ``"mixed"`` when they mix types."""
    values = parameter.values
    if all(isinstance(v, bool) for v in values):
        return "bool"
    if all(isinstance(v, str) for v in values):
        return "str"
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return "int"
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return "float"
    return "mixed"


def choice_token(value: Any) -> str:
    """The Ax value of one value of a mixed-type choice: its JSON text (``null``,
    ``0.5``, ``"0.5"``), so that values equal in Python but not in kind
    (``1``, ``1.0``, ``true``) stay apart."""
    try:
        return json.dumps(value, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError):
        return repr(value)


def _declared_choice(parameter: Parameter, raw_value: Any) -> bool:
    """Whether ``raw_value`` is one of the choice's declared values, of the same kind."""
    if choice_type(parameter) == "mixed":
        return choice_token(raw_value) in {choice_token(v) for v in parameter.values}
    return raw_value in parameter.values


def codings_for(space: SearchSpace) -> dict[str, ParameterCoding]:
    codings = {}
    names = set(space.names)
    for parameter in space:
        unit = not parameter.is_choice and not parameter.is_int
        ax_name = parameter.name + UNIT_SUFFIX if unit else parameter.name
        if ax_name != parameter.name and ax_name in names:
            raise ValueError(f"parameter name {ax_name!r} is reserved for the Ax coding of {parameter.name!r} (unit coordinates)")
        if parameter.distribution == "logit_normal" and (parameter.max is None or parameter.max >= 1):
            raise ValueError(f"logit_normal parameter {parameter.name!r} needs max < 1; got {parameter.max!r}")
        if parameter.is_choice and len({choice_token(v) for v in parameter.values}) != len(parameter.values):
            raise ValueError(f"choice parameter {parameter.name!r} holds values Ax cannot tell apart: {list(parameter.values)!r}")
        codings[parameter.name] = ParameterCoding(parameter, ax_name)
    return codings


def generation_space(
    declared: AxSearchSpace, codings: Mapping[str, ParameterCoding], box: Box | None
) -> tuple[AxSearchSpace, dict[str, Any], dict[str, list[Any]]]:
    """The box in Ax's terms: the declared space with narrowed ranges and
    ordered choices, the parameters pinned to one value (fixed features),
    and the values an unordered choice may not take.

    Ax's torch adapter cannot generate from a subset of a one-hot encoded
    choice (its one-hot columns are fixed when the model is fit), so those
    exclusions are applied inside the acquisition optimisation instead:
    the excluded values' one-hot columns are held at 0
    (:class:`LeanBoTorchGenerator`).
    """
    space = declared.clone()
    fixed: dict[str, Any] = {}
    excluded: dict[str, list[Any]] = {}
    if box is None:
        return space, fixed, excluded
    for name, coding in codings.items():
        ax_parameter = space.parameters.get(coding.ax_name)
        parameter = coding.parameter
        if isinstance(ax_parameter, RangeParameter) and name in box.ranges:
            lo, hi = box.ranges[name]
            if parameter.is_int:
                lo, hi = math.ceil(lo), math.floor(hi)
                if lo > hi:
                    raise ValueError(f"box range of {name!r} holds no integer; got {box.ranges[name]!r}")
            ends = sorted((coding.to_ax(lo), coding.to_ax(hi)))
            if coding.unit:
                ends = [min(1.0, max(0.0, end)) for end in ends]
            if ends[1] - ends[0] < MIN_AX_RANGE_WIDTH:
                # Narrower than Ax accepts (or one point): pinned at its middle.
                fixed[coding.ax_name] = ends[0] if not coding.unit else (ends[0] + ends[1]) / 2
            else:
                ax_parameter.update_range(lower=ends[0], upper=ends[1])
        elif isinstance(ax_parameter, ChoiceParameter):
            if parameter.is_choice:
                allowed = [coding.to_ax(v) for v in box.allowed_values(parameter)]
            else:  # pow2 as an ordered choice
                lo, hi = box.ranges.get(name, (parameter.min, parameter.max))
                allowed = [v for v in ax_parameter.values if lo <= v <= hi]  # type: ignore[operator]
            if not allowed:
                raise ValueError(f"box range of {name!r} holds no power of two; got {box.ranges[name]!r}")
            values = list(ax_parameter.values)
            if ax_parameter.is_ordered:
                # Ax encodes ordered choices by index and needs a contiguous run.
                indices = [values.index(v) for v in allowed]
                allowed = values[min(indices) : max(indices) + 1]
            else:
                allowed = [v for v in values if v in allowed]
            if len(allowed) == 1:
                fixed[coding.ax_name] = allowed[0]
            elif len(allowed) < len(values):
                if ax_parameter.is_ordered:
                    ax_parameter.set_values(allowed)
                else:
                    excluded[coding.ax_name] = [v for v in values if v not in allowed]
    return space, fixed, excluded
