"""The search space: one declaration of every parameter, shared by all phases.

Three coordinate spaces appear here and their names are kept apart on purpose:

* ``raw``: the value the trainable receives (``3e-4``, ``0.95``, ``"relu"``).
* ``internal``: the parameter's own scale, where it is spread evenly:
  ``log(x)`` for log and power-of-two parameters, ``log(1 - x)`` for
  ``logit_normal`` (values near 1 such as gamma), ``x`` otherwise.
* ``unit``: the internal value mapped affinely onto [0, 1], so that the
  declared ``min`` is 0 and ``max`` is 1.

A phase may narrow where candidates are generated, never the bounds
declared here: an observation keeps its raw value in every phase.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Sequence

import numpy as np
from scipy.special import ndtr, ndtri

Distribution = Literal[
    "uniform",
    "log_uniform",
    "int_uniform",
    "int_log_uniform",
    "pow2",
    "logit_normal",
    "choice",
]
DISTRIBUTIONS: tuple[str, ...] = (
    "uniform",
    "log_uniform",
    "int_uniform",
    "int_log_uniform",
    "pow2",
    "logit_normal",
    "choice",
)
LOG_DISTRIBUTIONS = frozenset({"log_uniform", "int_log_uniform", "pow2"})
INT_DISTRIBUTIONS = frozenset({"int_uniform", "int_log_uniform", "pow2"})

#: Standard deviation of the mean bias, as a fraction of the internal width,
#: when a parameter gives ``mean`` but no ``scale``.
DEFAULT_BIAS_SCALE = 0.25

RawValue = float | int | str | bool


@dataclass(frozen=True)
class Parameter:
    """One dimension of the search space, already validated.

    ``mean`` and ``scale`` bias random and grid sampling; they never change
    the bounds.
    """

    name: str
    distribution: Distribution
    min: float | None = None
    max: float | None = None
    values: tuple[RawValue, ...] = ()
    mean: float | None = None
    scale: float | None = None

    # -- kind -----------------------------------------------------------
    @property
    def is_choice(self) -> bool:
        return self.distribution == "choice"

    @property
    def is_int(self) -> bool:
        return self.distribution in INT_DISTRIBUTIONS

    @property
    def is_log(self) -> bool:
        return self.distribution in LOG_DISTRIBUTIONS

    @property
    def scaling(self) -> Literal["linear", "log", "log1m"]:
        if self.is_log:
            return "log"
        if self.distribution == "logit_normal":
            return "log1m"
        return "linear"

    def with_bias(self, mean: float | None, scale: float | None) -> "Parameter":
        """The same parameter with another sampling bias (a phase's ``bias``)."""
        return replace(self, mean=mean, scale=scale)

    # -- coordinates ------------------------------------------------------
    def to_internal(self, raw_value: float) -> float:
        if self.scaling == "log":
            return math.log(raw_value)
        if self.scaling == "log1m":
            return math.log1p(-raw_value)
        return float(raw_value)

    def from_internal(self, internal_value: float) -> float:
        if self.scaling == "log":
            return math.exp(internal_value)
        if self.scaling == "log1m":
            return -math.expm1(internal_value)
        return internal_value

    @property
    def internal_bounds(self) -> tuple[float, float]:
        """Internal values of ``min`` and ``max`` (decreasing for ``log1m``)."""
        assert self.min is not None and self.max is not None
        return self.to_internal(self.min), self.to_internal(self.max)

    def to_unit(self, raw_value: float) -> float:
        lo, hi = self.internal_bounds
        return (self.to_internal(raw_value) - lo) / (hi - lo)

    def from_unit(self, unit_value: float) -> RawValue:
        """Map a unit coordinate back to a legal raw value (rounded for ints)."""
        assert self.min is not None and self.max is not None
        unit_value = min(1.0, max(0.0, float(unit_value)))
        if unit_value == 0.0:
            return self.snap(self.min)
        if unit_value == 1.0:
            return self.snap(self.max)
        lo, hi = self.internal_bounds
        # 12 significant digits hide float noise from the round trip (1e-3, not 0.0010000000000000002).
        return self.snap(float(f"{self.from_internal(lo + unit_value * (hi - lo)):.12g}"))

    def snap(self, raw_value: float) -> RawValue:
        """Round a numeric raw value to the nearest legal one inside the bounds."""
        assert self.min is not None and self.max is not None
        value = min(self.max, max(self.min, raw_value))
        if self.distribution == "pow2":
            exponent = round(math.log2(value))
            lo_exp, hi_exp = self.pow2_exponents
            return 2 ** min(hi_exp, max(lo_exp, exponent))
        if self.is_int:
            return int(min(self.max, max(self.min, round(value))))
        return float(value)

    @property
    def pow2_exponents(self) -> tuple[int, int]:
        assert self.min is not None and self.max is not None
        return int(round(math.log2(self.min))), int(round(math.log2(self.max)))

    def cardinality(self) -> int | None:
        """Number of distinct legal values, or None for a continuous parameter."""
        if self.is_choice:
            return len(self.values)
        if self.distribution == "pow2":
            lo, hi = self.pow2_exponents
            return hi - lo + 1
        if self.distribution == "int_uniform" or self.distribution == "int_log_uniform":
            assert self.min is not None and self.max is not None
            return int(self.max) - int(self.min) + 1
        return None

    def discrete_values(self) -> list[RawValue]:
        """Every legal value of a discrete parameter (raises for a continuous one)."""
        if self.is_choice:
            return list(self.values)
        if self.distribution == "pow2":
            lo, hi = self.pow2_exponents
            return [2**k for k in range(lo, hi + 1)]
        if self.is_int:
            assert self.min is not None and self.max is not None
            return list(range(int(self.min), int(self.max) + 1))
        raise ValueError(f"parameter {self.name!r} is continuous ({self.distribution})")

    def contains(self, raw_value: Any) -> bool:
        if self.is_choice:
            return raw_value in self.values
        assert self.min is not None and self.max is not None
        try:
            value = float(raw_value)
        except (TypeError, ValueError):
            return False
        return self.min <= value <= self.max

    # -- the mean bias -----------------------------------------------------
    def _bias_unit(self) -> tuple[float, float] | None:
        """(centre, std) of the bias in unit coordinates, or None if unbiased."""
        if self.mean is None or self.is_choice:
            return None
        scale = DEFAULT_BIAS_SCALE if self.scale is None else self.scale
        return self.to_unit(self.mean), scale

    def unit_quantile(self, probability: np.ndarray) -> np.ndarray:
        """Inverse CDF of this parameter's sampling law, in unit coordinates.

        Unbiased parameters are uniform in their own scale; a ``mean`` makes
        the law a normal centred on it, truncated to the bounds.
        """
        probability = np.asarray(probability, dtype=float)
        bias = self._bias_unit()
        if bias is None:
            return probability
        centre, std = bias
        lo_cdf = ndtr((0.0 - centre) / std)
        hi_cdf = ndtr((1.0 - centre) / std)
        mass = lo_cdf + probability * (hi_cdf - lo_cdf)
        mass = np.clip(mass, 1e-300, 1.0 - 1e-16)
        return np.clip(centre + std * ndtri(mass), 0.0, 1.0)

    # -- sampling ----------------------------------------------------------
    def sample(self, rng: np.random.Generator, size: int) -> list[RawValue]:
        """Draw raw values from the biased law (uniform over choices)."""
        if self.is_choice:
            picks = rng.integers(0, len(self.values), size=size)
            return [self.values[int(i)] for i in picks]
        units = self.unit_quantile(rng.random(size))
        return [self.from_unit(u) for u in units]

    def grid(self, resolution: int) -> list[RawValue]:
        """``resolution`` points spaced in the parameter's own scale.

        Without a mean they are evenly spaced from ``min`` to ``max``; with one
        they sit at evenly spaced quantiles of the biased law, so they crowd
        around the mean. Integer parameters may yield fewer distinct points.
        """
        if self.is_choice:
            return list(self.values)
        if self._bias_unit() is None:
            units = np.linspace(0.0, 1.0, resolution)
        else:
            units = self.unit_quantile((np.arange(resolution) + 0.5) / resolution)
        points: list[RawValue] = []
        for unit_value in units:
            value = self.from_unit(float(unit_value))
            if value not in points:
                points.append(value)
        return points

    def describe(self) -> str:
        if self.is_choice:
            return f"choice {list(self.values)}"
        text = f"{self.distribution} [{_fmt(self.min)}, {_fmt(self.max)}]"
        if self.mean is not None:
            scale = DEFAULT_BIAS_SCALE if self.scale is None else self.scale
            text += f" mean {_fmt(self.mean)} (scale {scale:g})"
        return text


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


Config = dict[str, RawValue]


@dataclass(frozen=True)
class SearchSpace:
    """The ordered parameters of a sweep."""

    parameters: tuple[Parameter, ...]
    _by_name: dict[str, Parameter] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_name", {p.name: p for p in self.parameters})

    def __getitem__(self, name: str) -> Parameter:
        return self._by_name[name]

    def __iter__(self):
        return iter(self.parameters)

    def __len__(self) -> int:
        return len(self.parameters)

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.parameters]

    def with_bias(self, bias: dict[str, tuple[float | None, float | None]]) -> "SearchSpace":
        """The same bounds with some parameters' ``(mean, scale)`` replaced."""
        return SearchSpace(
            tuple(
                p.with_bias(*bias[p.name]) if p.name in bias else p for p in self.parameters
            )
        )

    def distinct_configs(self) -> int | None:
        """How many distinct configs exist, or None when any parameter is continuous."""
        total = 1
        for parameter in self.parameters:
            count = parameter.cardinality()
            if count is None:
                return None
            total *= count
        return total

    def sample(self, rng: np.random.Generator, size: int) -> list[Config]:
        columns = {p.name: p.sample(rng, size) for p in self.parameters}
        return [{name: columns[name][i] for name in self.names} for i in range(size)]

    def to_unit_vector(self, config: Config) -> np.ndarray:
        """Unit coordinates of a config; a choice maps to its index spread on [0, 1]."""
        out = np.empty(len(self.parameters))
        for i, parameter in enumerate(self.parameters):
            value = config[parameter.name]
            if parameter.is_choice:
                n = len(parameter.values)
                out[i] = parameter.values.index(value) / (n - 1) if n > 1 else 0.5
            else:
                out[i] = parameter.to_unit(float(value))  # type: ignore[arg-type]
        return out


def config_key(config: Config, names: Sequence[str]) -> tuple:
    """A hashable identity of a config, for finding duplicates."""
    return tuple(_key_value(config[name]) for name in names)


def _key_value(value: RawValue) -> RawValue:
    if isinstance(value, float):
        return float(f"{value:.12g}")
    return value
