"""The experiment file: typed models, validated once, at the boundary.

Every rule lives here. ``load_experiment`` turns YAML (plus ``--set``
overrides) into an :class:`Experiment` or raises :class:`SpecError` naming the
field path, the rule and the value. Nothing else in raysweep re-checks input.
"""

from __future__ import annotations

import importlib
import math
import os
import re
import shutil
import sys
from pathlib import Path
from typing import Annotated, Any, Callable, Literal

from pydantic import BaseModel, ConfigDict, Field, Strict, StrictBool, ValidationError, field_validator, model_validator

from raysweep import placeholders, yaml_input
from raysweep.durations import parse_duration
from raysweep.errors import SpecError
from raysweep.space import DISTRIBUTIONS, Parameter, SearchSpace

RESERVED_CONFIG_KEYS = frozenset({"seed", "trial_id"})
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")


# Numbers are numbers: `trials: true` is not 1 and `trials: "5"` is not 5; floats
# take ints (`min: 0`), and nothing takes inf or nan (allow_inf_nan below).
Int = Annotated[int, Strict()]
#: The most trials a phase or a budget may plan: grid and random phases draw their configs up front.
MAX_TRIALS = 100_000
Float = Annotated[float, Strict()]


def _positive_count(value: int | None) -> int | None:
    """A count of trials (or trials at once) must be > 0 when given."""
    if value is not None and value <= 0:
        raise ValueError("must be > 0")
    return value


def _plannable_count(value: int | None) -> int | None:
    """Trials are planned up front: at most MAX_TRIALS."""
    if value is not None and value > MAX_TRIALS:
        raise ValueError(f"must be at most {MAX_TRIALS} (a phase's configs are planned up front)")
    return value


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True, allow_inf_nan=False)


def _duration(value: Any) -> float | None:
    return None if value is None else parse_duration(value)


# ----------------------------------------------------------------------------
# parameters
# ----------------------------------------------------------------------------
class ParameterSpec(_Model):
    """One parameter, declared once for the whole sweep."""

    distribution: str
    min: Float | None = None
    max: Float | None = None
    mean: Float | None = None
    scale: Float | None = None
    values: list[Any] | None = None

    @field_validator("distribution")
    @classmethod
    def _known_distribution(cls, value: str) -> str:
        if value not in DISTRIBUTIONS:
            raise ValueError(f"unknown distribution (choose one of {', '.join(DISTRIBUTIONS)})")
        return value

    @field_validator("scale")
    @classmethod
    def _positive_scale(cls, value: float | None) -> float | None:
        if value is not None and not value > 0:
            raise ValueError("scale must be > 0")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> "ParameterSpec":
        d = self.distribution
        if d == "choice":
            if not self.values:
                raise _FieldError("values", "a choice needs at least one value", self.values)
            for value in self.values:
                if isinstance(value, (list, dict)):
                    raise _FieldError(
                        "values",
                        "choice values are strings, numbers, booleans or null (write a list such as a layer spec as a "
                        "string, e.g. '64x64', and parse it in the trainable)",
                        self.values,
                    )
            if len({repr(v) for v in self.values}) != len(self.values):
                raise _FieldError("values", "choice values must be distinct", self.values)
            for key in ("min", "max", "mean"):
                if getattr(self, key) is not None:
                    raise _FieldError(key, "a choice takes `values`, not min/max/mean", getattr(self, key))
            return self
        if self.values is not None:
            raise _FieldError("values", f"only a choice takes values, not {d}", self.values)
        for key in ("min", "max"):
            value = getattr(self, key)
            if value is None:
                raise _FieldError(key, f"{d} needs min and max")
            if not math.isfinite(value):
                raise _FieldError(key, "must be a finite number", value)
        assert self.min is not None and self.max is not None
        if not self.min < self.max:
            raise _FieldError("min", f"min must be < max (max is {self.max:g})", self.min)
        if d in ("log_uniform", "int_log_uniform", "pow2") and not self.min > 0:
            raise _FieldError("min", f"{d} needs min > 0", self.min)
        if d == "logit_normal":
            for key in ("min", "max"):
                value = getattr(self, key)
                if not 0 < value < 1:
                    raise _FieldError(key, "logit_normal bounds must lie inside (0, 1)", value)
        if d in ("int_uniform", "int_log_uniform", "pow2"):
            for key in ("min", "max"):
                value = getattr(self, key)
                if value != int(value):
                    raise _FieldError(key, f"{d} bounds must be whole numbers", value)
        if d == "pow2":
            for key in ("min", "max"):
                value = int(getattr(self, key))
                if value & (value - 1):
                    raise _FieldError(key, "pow2 bounds must be powers of two", value)
        if self.mean is not None and not self.min <= self.mean <= self.max:
            raise _FieldError("mean", f"mean must lie within [{self.min:g}, {self.max:g}]", self.mean)
        return self

    def to_parameter(self, name: str) -> Parameter:
        return Parameter(
            name=name,
            distribution=self.distribution,  # type: ignore[arg-type]
            min=self.min,
            max=self.max,
            values=tuple(self.values or ()),
            mean=self.mean,
            scale=self.scale,
        )


class BiasSpec(_Model):
    """A phase's new sampling bias for a parameter. Bounds stay as declared."""

    mean: Float | None = None
    scale: Float | None = None

    @field_validator("scale")
    @classmethod
    def _positive_scale(cls, value: float | None) -> float | None:
        if value is not None and not value > 0:
            raise ValueError("scale must be > 0")
        return value


# ----------------------------------------------------------------------------
# phases
# ----------------------------------------------------------------------------
class NarrowSpec(_Model):
    """Where a Bayesian phase generates candidates: a box around the top configs."""

    top_fraction: Float = 0.1
    min_top: Int = 5
    std_multiplier: Float = 2.0
    min_width: Float = 0.05

    @field_validator("top_fraction")
    @classmethod
    def _fraction(cls, value: float) -> float:
        if not 0 < value <= 1:
            raise ValueError("top_fraction must lie in (0, 1]")
        return value

    @field_validator("min_top")
    @classmethod
    def _min_top(cls, value: int) -> int:
        if value < 1:
            raise ValueError("min_top must be >= 1")
        return value

    @field_validator("std_multiplier")
    @classmethod
    def _k(cls, value: float) -> float:
        if not value > 0:
            raise ValueError("std_multiplier must be > 0")
        return value

    @field_validator("min_width")
    @classmethod
    def _width(cls, value: float) -> float:
        if not 0 < value <= 1:
            raise ValueError("min_width (a fraction of the declared width) must lie in (0, 1]")
        return value


class EarlyStoppingSpec(_Model):
    """Ray Tune's AsyncHyperBandScheduler (ASHA)."""

    type: Literal["asha"]
    time_attr: str = "training_iteration"
    grace_period: Float = 1
    reduction_factor: Float = 3
    max_t: Float = 100

    @model_validator(mode="after")
    def _sane(self) -> "EarlyStoppingSpec":
        if not self.grace_period > 0:
            raise _FieldError("grace_period", "grace_period must be > 0", self.grace_period)
        if not self.reduction_factor > 1:
            raise _FieldError("reduction_factor", "reduction_factor must be > 1", self.reduction_factor)
        if not self.max_t >= self.grace_period:
            raise _FieldError("max_t", f"max_t must be >= grace_period ({self.grace_period:g})", self.max_t)
        return self


SEARCHERS = ("grid", "random", "ax")


class PhaseSpec(_Model):
    name: str
    searcher: str
    share: Float | None = None
    trials: Int | None = None
    max_trial_time: float | None = None  # seconds; parsed (and checked finite) by parse_duration
    max_concurrent: Int | None = None
    max_failures: Int | None = None  # retries of a failed trial (node loss); default the experiment's
    # grid
    grid_resolution: Int = 5
    # ax
    random_samples: Int = 5
    resample_every: Int | None = None
    max_suggestion_cost: float | None = None  # seconds, as max_trial_time
    max_observations_to_load: Int | None = None
    warm_start: StrictBool = True  # false: the model sees no earlier phase (a cold start per stage)
    narrow: NarrowSpec | None = None
    # all
    early_stopping: EarlyStoppingSpec | None = None
    bias: dict[str, BiasSpec] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError("a phase name is letters, digits, _ . - and starts with a letter")
        return value

    @field_validator("searcher")
    @classmethod
    def _searcher(cls, value: str) -> str:
        if value not in SEARCHERS:
            raise ValueError(f"unknown searcher (choose one of {', '.join(SEARCHERS)})")
        return value

    @field_validator("max_trial_time", "max_suggestion_cost", mode="before")
    @classmethod
    def _durations(cls, value: Any) -> float | None:
        return _duration(value)

    @field_validator("share")
    @classmethod
    def _share(cls, value: float | None) -> float | None:
        if value is not None and not 0 < value <= 1:
            raise ValueError("share must lie in (0, 1]")
        return value

    _positive = field_validator("trials", "max_concurrent", "max_observations_to_load")(staticmethod(_positive_count))
    _plannable = field_validator("trials")(staticmethod(_plannable_count))

    @field_validator("max_failures")
    @classmethod
    def _retries(cls, value: int | None) -> int | None:
        if value is not None and value < 0:
            raise ValueError("max_failures must be >= 0")
        return value

    @field_validator("grid_resolution")
    @classmethod
    def _resolution(cls, value: int) -> int:
        if value < 2:
            raise ValueError("grid_resolution must be >= 2")
        return value

    @field_validator("random_samples")
    @classmethod
    def _random_samples(cls, value: int) -> int:
        if value < 0:
            raise ValueError("random_samples must be >= 0")
        return value

    @field_validator("resample_every")
    @classmethod
    def _resample_every(cls, value: int | None) -> int | None:
        if value is not None and value < 2:
            raise ValueError("resample_every must be >= 2 (every N-th trial re-runs a front config)")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> "PhaseSpec":
        if (self.share is None) == (self.trials is None):
            raise _FieldError(
                "share", "give exactly one of share (a fraction of budget) or trials", {"share": self.share, "trials": self.trials}
            )
        ax_only = {
            "narrow": self.narrow,
            "resample_every": self.resample_every,
            "max_suggestion_cost": self.max_suggestion_cost,
            "max_observations_to_load": self.max_observations_to_load,
            "warm_start": None if self.warm_start else False,
        }
        if self.searcher != "ax":
            for key, value in ax_only.items():
                if value is not None:
                    raise _FieldError(key, f"only phases with searcher ax take {key} (this phase's searcher is {self.searcher})", _plain(value))
        return self

    def fields_set_in_file(self) -> dict[str, Any]:
        """The phase as the user wrote it, for ``state.json``."""
        return self.model_dump(mode="json", exclude_defaults=True)


class Resources(_Model):
    cpu: Float = 1.0
    gpu: Float = 0.0

    @model_validator(mode="after")
    def _sane(self) -> "Resources":
        if not self.cpu > 0:
            raise _FieldError("cpu", "cpu must be > 0", self.cpu)
        if self.gpu < 0:
            raise _FieldError("gpu", "gpu must be >= 0", self.gpu)
        if self.gpu > 1 and self.gpu != int(self.gpu):
            raise _FieldError("gpu", "more than one GPU must be a whole number", self.gpu)
        return self


class FidelitySpec(_Model):
    """What measures a trial's progress, so that every observation carries the fidelity it reached.

    ``attr``: the reported value (a flattened result name, as ``metric``) whose
    last value is how far a trial got: ``training_iteration`` (the default),
    ``time_total_s`` for seconds, or the trainable's own (``timesteps``).
    ``max``: the fidelity of a full run, in ``attr``'s units (> 0); default: the
    most any completed trial of earlier phases reached. ``parameter``: a searched
    numeric parameter that *is* the training length (``total_timesteps``); a run
    then counts at the length it really trained (its last ``attr``, which must
    be given in that parameter's units), and a full run is one that reached
    its own value of the parameter.
    """

    attr: str = "training_iteration"
    max: Float | None = None
    parameter: str | None = None

    @field_validator("attr")
    @classmethod
    def _attr(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("attr must name a reported value")
        return value

    @field_validator("max")
    @classmethod
    def _max(cls, value: float | None) -> float | None:
        if value is not None and not (math.isfinite(value) and value > 0):
            raise ValueError("max must be a finite number > 0")
        return value


class WandbSpec(_Model):
    """Weights & Biases logging. ``auto``: online with credentials, else offline."""

    mode: Literal["auto", "online", "offline", "disabled"] = "auto"
    project: str | None = None  # default: the sweep's name
    entity: str | None = None
    group: str | None = None  # default: the sweep's name


# ----------------------------------------------------------------------------
# the experiment
# ----------------------------------------------------------------------------
class Experiment(_Model):
    name: str
    trainable: str | None = None
    command: list[str] | None = None
    metric: str
    mode: str
    budget: Int | None = None
    resources: Resources = Resources()
    storage: str | None = None  # a local directory or a cloud URI (s3://bucket/prefix, gs://...); default runs/<name>
    seed: Int = 0
    max_concurrent: Int | None = None
    max_failures: Int = 0  # Tune retries a failed trial this often (worth it on clusters that lose nodes)
    parameters: dict[str, ParameterSpec]
    phases: list[PhaseSpec]
    wandb: WandbSpec = WandbSpec()
    fidelity: FidelitySpec = FidelitySpec()
    # The Bayesian phases' GP: over (parameters, fidelity), or over the parameters alone
    # (every observation counted as if it were a full run, raysweep's model before fidelity).
    model: Literal["multi_fidelity", "single_fidelity"] = "multi_fidelity"

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError("a name is letters, digits, _ . - and starts with a letter")
        return value

    @field_validator("mode")
    @classmethod
    def _mode(cls, value: str) -> str:
        if value not in ("max", "min"):
            raise ValueError("mode must be max or min")
        return value

    @field_validator("metric")
    @classmethod
    def _metric(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("metric must name the reported value to optimise")
        return value

    _positive = field_validator("budget", "max_concurrent")(staticmethod(_positive_count))
    _plannable = field_validator("budget")(staticmethod(_plannable_count))

    @field_validator("max_failures")
    @classmethod
    def _retries(cls, value: int) -> int:
        if value < 0:
            raise ValueError("max_failures must be >= 0")
        return value

    @field_validator("trainable")
    @classmethod
    def _trainable(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$", value):
            raise ValueError("trainable must read module.path:function")
        return value

    @field_validator("command")
    @classmethod
    def _command(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and not value:
            raise ValueError("command must be a non-empty argv list")
        return value

    @field_validator("parameters")
    @classmethod
    def _parameters(cls, value: dict[str, ParameterSpec]) -> dict[str, ParameterSpec]:
        if not value:
            raise ValueError("declare at least one parameter")
        for name in value:
            if name in RESERVED_CONFIG_KEYS:
                raise ValueError(f"the parameter name {name!r} is reserved by raysweep")
            if not re.match(r"^[A-Za-z_]\w*$", name):
                raise ValueError(f"parameter name {name!r} must be an identifier")
        return value

    @field_validator("phases")
    @classmethod
    def _phases(cls, value: list[PhaseSpec]) -> list[PhaseSpec]:
        if not value:
            raise ValueError("declare at least one phase")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> "Experiment":
        if (self.trainable is None) == (self.command is None):
            raise _FieldError("trainable", "give exactly one of trainable (module:function) or command (argv list)", None)
        names = [p.name for p in self.phases]
        for i, name in enumerate(names):
            if name in names[:i]:
                raise _FieldError(f"phases[{i}].name", "phase names must be distinct", name)
        share_phases = [(i, p) for i, p in enumerate(self.phases) if p.share is not None]
        if share_phases:
            if self.budget is None:
                i, p = share_phases[0]
                raise _FieldError("budget", f"phases[{i}] gives a share, so the experiment needs a budget (total trials)", None)
            total = sum(p.share for _, p in share_phases)  # type: ignore[misc]
            if abs(total - 1.0) > 1e-6:
                raise _FieldError("phases", "the shares of the phases must sum to 1", round(total, 6))
            fixed = sum(p.trials or 0 for p in self.phases)
            if fixed >= self.budget:
                raise _FieldError("budget", f"the phases with fixed trials already take {fixed} of the budget", self.budget)
        for i, phase in enumerate(self.phases):
            for name, bias in phase.bias.items():
                if name not in self.parameters:
                    raise _FieldError(f"phases[{i}].bias.{name}", f"no such parameter (declared: {', '.join(self.parameters)})", name)
                declared = self.parameters[name]
                if declared.distribution == "choice":
                    raise _FieldError(f"phases[{i}].bias.{name}", "a choice parameter takes no mean bias", _plain(bias))
                if bias.mean is not None and not declared.min <= bias.mean <= declared.max:  # type: ignore[operator]
                    raise _FieldError(
                        f"phases[{i}].bias.{name}.mean",
                        f"mean must lie within the declared bounds [{declared.min:g}, {declared.max:g}]",
                        bias.mean,
                    )
            if phase.searcher == "ax" and phase.random_samples == 0 and i == 0:
                raise _FieldError(f"phases[{i}].random_samples", "the first phase has no earlier data, so it needs random_samples > 0", 0)
            if phase.narrow is not None and i == 0:
                raise _FieldError(f"phases[{i}].narrow", "the first phase has no earlier results to narrow around", _plain(phase.narrow))
        self._check_fidelity()
        if self.command is not None:
            samples = {name: _sample_values(spec) for name, spec in self.parameters.items()}
            for j, item in enumerate(self.command):
                try:
                    placeholders.check(item, samples)
                except placeholders.PlaceholderError as exc:
                    raise _FieldError(f"command[{j}]", str(exc), item) from None
        return self

    def _check_fidelity(self) -> None:
        name = self.fidelity.parameter
        if name is None:
            return
        declared = self.parameters.get(name)
        if declared is None:
            raise _FieldError("fidelity.parameter", f"no such parameter (declared: {', '.join(self.parameters)})", name)
        if declared.distribution == "choice" or declared.min is None or not declared.min > 0:
            raise _FieldError(
                "fidelity.parameter", "the fidelity parameter must be a numeric range with min > 0 (a training length)", name
            )
        if "attr" not in self.fidelity.model_fields_set:
            raise _FieldError(
                "fidelity.attr",
                f"with fidelity.parameter, name the reported value that counts training in {name}'s units",
            )

    # -- derived --------------------------------------------------------------
    @property
    def space(self) -> SearchSpace:
        return SearchSpace(tuple(spec.to_parameter(name) for name, spec in self.parameters.items()))

    def phase_space(self, index: int) -> SearchSpace:
        """The sweep's space with phase ``index``'s sampling bias (0-based)."""
        bias = {name: (b.mean if b.mean is not None else self.parameters[name].mean,
                       b.scale if b.scale is not None else self.parameters[name].scale)
                for name, b in self.phases[index].bias.items()}
        return self.space.with_bias(bias)

    @property
    def storage_path(self) -> str:
        return self.storage or os.path.join("runs", self.name)


class _FieldError(ValueError):
    """Raised inside validators to point at a sub-field of the model."""

    def __init__(self, field: str, rule: str, value: object = ...):
        self.field = field
        self.rule = rule
        self.value = value
        super().__init__(rule)


def _plain(value: Any) -> Any:
    return value.model_dump(mode="json", exclude_defaults=True) if isinstance(value, BaseModel) else value


def _sample_values(spec: ParameterSpec) -> list[Any]:
    """Values of each type a parameter can give a command placeholder (ints for integer distributions)."""
    if spec.distribution == "choice":
        return list(spec.values or ())
    if spec.distribution in ("int_uniform", "int_log_uniform", "pow2"):
        return [int(spec.min), int(spec.max)]  # type: ignore[arg-type]
    return [float(spec.min), float(spec.max)]  # type: ignore[arg-type]


# ----------------------------------------------------------------------------
# loading
# ----------------------------------------------------------------------------
def load_experiment(
    path: str | os.PathLike[str], overrides: list[str] = (), *, runnable: bool = True  # type: ignore[assignment]
) -> Experiment:
    """Read, override and validate an experiment file; raise SpecError on any problem.

    The file is read by :mod:`raysweep.yaml_input` (UTF-8, no duplicate keys,
    bounded aliases). ``runnable=False`` skips :func:`check_runnable` (importing
    the trainable), for commands that only need the file's fields.
    """
    path = Path(path)
    if not path.is_file():
        raise SpecError("", "experiment file not found", str(path))
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise SpecError(str(path), f"cannot read the experiment file ({exc.strerror or exc})") from None
    data = yaml_input.load_file_bytes(raw, str(path))
    if not isinstance(data, dict):
        raise SpecError(str(path), "must hold a mapping of experiment fields", data)
    return experiment_from_dict(data, overrides, runnable=runnable)


def experiment_from_dict(
    data: dict[str, Any], overrides: list[str] = (), *, runnable: bool = True  # type: ignore[assignment]
) -> Experiment:
    """Apply ``--set`` overrides and validate; SpecError on any problem (see :func:`load_experiment`)."""
    data = apply_overrides(data, overrides)
    try:
        experiment = Experiment.model_validate(data)
    except ValidationError as exc:
        raise _translate(exc) from None
    if runnable:
        check_runnable(experiment)
    return experiment


#: pydantic's words for a wrong type, as raysweep states the rule.
_TYPE_RULES = {
    "int_type": "must be a whole number",
    "float_type": "must be a number",
    "finite_number": "must be a finite number",
    "bool_type": "must be true or false",
    "string_type": "must be a string",
    "dict_type": "must be a mapping",
    "list_type": "must be a list",
    "model_type": "must be a mapping",
}


def _translate(exc: ValidationError) -> SpecError:
    """The first pydantic error as one SpecError with a YAML-style path."""
    error = exc.errors(include_url=False)[0]
    loc = list(error["loc"])
    cause = (error.get("ctx") or {}).get("error")
    if isinstance(cause, _FieldError):
        base = _format_path(loc)
        path = f"{base}.{cause.field}" if base else cause.field
        return SpecError(path, cause.rule, cause.value)
    path = _format_path(loc)
    kind = error["type"]
    if kind == "extra_forbidden":
        field = str(loc[-1])
        parent = _format_path(loc[:-1])
        return SpecError(path, f"unknown key {field!r}" + (f" in {parent}" if parent else ""))
    if kind == "missing":
        return SpecError(path, "required field is missing")
    if kind in _TYPE_RULES:
        return SpecError(path, _TYPE_RULES[kind], error.get("input"))
    message = error["msg"]
    if message.startswith("Value error, "):
        message = message[len("Value error, "):]
    return SpecError(path, message[0].lower() + message[1:], error.get("input"))


def _format_path(loc: list[Any]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


# ----------------------------------------------------------------------------
# --set overrides
# ----------------------------------------------------------------------------
_SEGMENT = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``dotted.path=value`` overrides; a path to no field is a SpecError.

    The value is YAML (``2h``, ``0.5``, ``[tanh, relu]``, ``{min: 0, max: 1}``).
    A phase is addressed by its name or by its number counted from 1, as
    ``--phase`` and ``status`` count (``phases.exploit.max_trial_time``,
    ``phases.2.max_trial_time``); ``phases[i]`` is refused with the two forms
    that say the same. Other lists take a 0-based index, as error messages
    print it (``command[2]``).
    """
    import copy

    data = copy.deepcopy(data)
    for override in overrides:
        if "=" not in override:
            raise SpecError("--set", "expected dotted.path=value", override)
        dotted, raw_value = override.split("=", 1)
        value = yaml_input.load_text(raw_value, f"--set {dotted}", f"--set {dotted}") if raw_value.strip() else ""
        _set_path(data, _split_path(dotted), value, dotted)
    return data


def _split_path(dotted: str) -> list[str | int]:
    """Path segments: names as str, ``[i]`` as int, ``.N`` as the str of digits (a phase number)."""
    segments: list[str | int] = []
    for name, index in _SEGMENT.findall(dotted):
        segments.append(int(index) if index else name)
    if not segments:
        raise SpecError("--set", "empty path", dotted)
    return segments


def _set_path(data: dict[str, Any], segments: list[str | int], value: Any, dotted: str) -> None:
    node: Any = data
    model: type[BaseModel] | None = Experiment
    for depth, segment in enumerate(segments):
        last = depth == len(segments) - 1
        where = _format_path(segments[: depth + 1])
        if isinstance(node, list):
            if depth == 1 and segments[0] == "phases":
                segment = _phase_position(node, segment, dotted)
            elif isinstance(segment, str) and segment.isdigit():
                segment = int(segment)
            if not isinstance(segment, int) or not 0 <= segment < len(node):
                raise SpecError(f"--set {dotted}", f"no such field: {where} (the list has {len(node)} items)", value)
            if last:
                node[segment] = value
                return
            node = node[segment]
            continue
        if not isinstance(node, dict) or isinstance(segment, int):
            raise SpecError(f"--set {dotted}", f"no such field: {where}", value)
        known = list(model.model_fields) if model is not None else None
        if segment not in node and (known is None or segment not in known):
            fields = f" (fields here: {', '.join(known)})" if known else ""
            raise SpecError(f"--set {dotted}", f"no such field: {where}{fields}", value)
        next_model = _field_model(model, segment) if model is not None else None
        if last:
            node[segment] = value
            return
        if segment not in node:
            node[segment] = {}
        node = node[segment]
        model = next_model


def _phase_position(phases: list[Any], segment: str | int, dotted: str) -> int:
    """The list position of the phase ``segment`` names: a phase name or its 1-based number."""
    names = [p.get("name") if isinstance(p, dict) else None for p in phases]
    listing = ", ".join(f"{i} {name}" for i, name in enumerate(names, start=1))
    if isinstance(segment, int):  # phases[i]: a 0-based list index, before phases counted from 1 here
        meant = names[segment] if 0 <= segment < len(names) else None
        hint = f" (phases[{segment}] would be phases.{meant} or phases.{segment + 1})" if meant else ""
        raise SpecError(
            f"--set {dotted}",
            f"address a phase by name or by its number counted from 1, as --phase does, not by [index]{hint}; "
            f"phases: {listing}",
        )
    if segment.isdigit():
        number = int(segment)
        if not 1 <= number <= len(phases):
            raise SpecError(f"--set {dotted}", f"no phase {number} (phases count from 1; phases: {listing})")
        return number - 1
    if segment in names:
        return names.index(segment)
    raise SpecError(f"--set {dotted}", f"no phase named {segment!r} (phases: {listing})")


def _field_model(model: type[BaseModel], name: str) -> type[BaseModel] | None:
    """The model of a nested field, looking through Optional, list and dict."""
    info = model.model_fields.get(name)
    if info is None:
        return None
    annotation = info.annotation
    for _ in range(3):
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            return annotation
        args = [a for a in getattr(annotation, "__args__", ()) if a is not type(None)]
        if not args:
            return None
        annotation = args[-1]
    return None


# ----------------------------------------------------------------------------
# runnable checks (need the environment, so they run after the typed checks)
# ----------------------------------------------------------------------------
def resolve_trainable(reference: str) -> Callable[[dict[str, Any]], Any]:
    """Import ``module.path:function``; raise SpecError if it cannot be."""
    module_name, _, attribute = reference.partition(":")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except SystemExit as exc:  # a script's `sys.exit()` at import time; it must not end raysweep
        raise SpecError(
            "trainable", f"importing module {module_name!r} called sys.exit({exc.code!r}); guard its script code with "
            "`if __name__ == \"__main__\":`", reference,
        ) from None
    except Exception as exc:  # any import failure is the user's to fix
        reason = " ".join(f"{type(exc).__name__}: {exc}".split())
        raise SpecError("trainable", f"cannot import module {module_name!r} ({reason})", reference) from None
    function = getattr(module, attribute, None)
    if not callable(function):
        raise SpecError("trainable", f"module {module_name!r} has no callable {attribute!r}", reference)
    return function


def check_runnable(experiment: Experiment) -> None:
    if experiment.trainable is not None:
        resolve_trainable(experiment.trainable)
    if experiment.command is not None:
        program = experiment.command[0]
        if "{" in program:
            raise SpecError("command[0]", "the program itself may not be a placeholder", program)
        if shutil.which(program) is None:
            raise SpecError("command[0]", "command not found (not on PATH and not an executable file)", program)
