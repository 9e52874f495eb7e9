"""What a trainable reported: flattening, the number rule, the objective.

Every report enters raysweep through :func:`read`, once per consumer, and
every consumer (the outcome book, the scheduler, the searcher, the Parquet
and W&B sinks) reads the same :class:`Report` of it.

Names. A report is flattened as Ray Tune flattens it: a dict inside a dict
becomes ``outer/inner`` (any depth, ``/`` between levels), so RLlib's
``{"env_runners": {"episode_return_mean": 5.0}}`` holds the metric
``env_runners/episode_return_mean``; lists are not flattened. Keys Ray Tune
adds to every result (:data:`TUNE_RESULT_KEYS`, and ``config/...``) are not
the trainable's metrics, except the sweep's own metric, which is always
taken as the result holds it.

The number rule (:func:`to_number`), for every reported value:

* ``int`` (Python or NumPy) stays an ``int`` while it fits in 64 bits; a larger
  one becomes a ``float``, and one too large for a float (``10**400``) is not a
  number;
* any other real number (Python, NumPy, ``fractions.Fraction``) becomes a
  ``float``;
* a 0-d array or tensor (``np.array(0.5)``, ``torch.tensor(0.5)``, a NumPy
  scalar) counts as the scalar it holds (``.item()``);
* a string that spells a number (``"0.17"``, ``"3"``, ``" 1e-3 "``), as a
  command prints it, is that number;
* everything else is not a number: booleans, ``None``, dicts, lists, arrays
  of any other shape, other strings and objects.

``None`` for a key means "not in this report" (a command's JSON ``null``). A
value that is not a number is left out of the ``metric.*`` columns; for the
sweep's metric it makes the trial ``failed``, with a reason naming the metric
and the value. NaN and infinities are numbers: they stay in ``metric.*``
columns, but for the sweep's metric they, too, fail the trial. A report
without the metric is fine (evaluation every N iterations); the trial's
objective is the last value it did report, and a trial that never reports it
fails with "trial never reported the metric".
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from typing import Any, Mapping

#: How Tune joins the keys of nested dicts in a flattened result.
DELIMITER = "/"

#: Keys Ray Tune adds to every result: not the trainable's metrics (unless one is
#: the sweep's metric). ``timesteps_total`` and ``episodes_total`` are absent on
#: purpose: Tune only derives them from the trainable's own ``*_this_iter`` counts.
TUNE_RESULT_KEYS = frozenset(
    {
        "time_this_iter_s",
        "time_total_s",
        "timestamp",
        "training_iteration",
        "done",
        "trial_id",
        "date",
        "pid",
        "hostname",
        "node_ip",
        "time_since_restore",
        "iterations_since_restore",
        "timesteps_since_restore",
        "experiment_tag",
        "config",
        "checkpoint_dir_name",
        "should_checkpoint",
        "__duplicate__",
    }
)

_INT64_MAX = 2**63 - 1
_SHOWN_CHARS = 80


class NotANumber(ValueError):
    """A reported value that the number rule refuses; the message says what it is."""


Number = int | float


def flatten(result: Mapping[str, Any]) -> dict[str, Any]:
    """``result`` with nested dicts as ``outer/inner`` keys, as Ray Tune flattens results.

    A result that is already flat comes back equal. An empty nested dict leaves
    no key, as in Tune.
    """
    flat: dict[str, Any] = {}
    for key, value in result.items():
        if isinstance(value, dict):
            for inner, inner_value in flatten(value).items():
                flat[f"{key}{DELIMITER}{inner}"] = inner_value
        else:
            flat[str(key)] = value
    return flat


def to_number(value: Any) -> Number:
    """The number ``value`` stands for under the number rule (module docstring).

    Returns an ``int`` for integers that fit in 64 bits, else a ``float``
    (possibly NaN or infinite). Raises :class:`NotANumber` saying what the
    value is instead.
    """
    if value is None:
        raise NotANumber("None")
    if isinstance(value, bool):
        raise NotANumber("a boolean")
    if isinstance(value, numbers.Integral):
        number = int(value)
        if -_INT64_MAX <= number <= _INT64_MAX:
            return number
        try:
            return float(number)
        except OverflowError:
            raise NotANumber("an integer too large for a float") from None
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, str):
        return _parse(value)
    shape = getattr(value, "shape", None)
    if shape is not None and hasattr(value, "item"):
        if tuple(shape) != ():
            raise NotANumber(f"an array of shape {tuple(shape)} (report a scalar, e.g. with .item())")
        try:
            item = value.item()
        except Exception:  # e.g. an object array's element; what it is goes in the message
            raise NotANumber(f"a 0-d {type(value).__name__} that holds no number") from None
        if isinstance(item, (bool, numbers.Real, str)):
            return to_number(item)
        raise NotANumber(f"a 0-d {type(value).__name__} holding {type(item).__name__}")
    name = type(value).__name__
    raise NotANumber(f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name}")


def _parse(text: str) -> Number:
    stripped = text.strip()
    try:
        return to_number(int(stripped))
    except ValueError:
        pass
    try:
        return float(stripped)
    except ValueError:
        raise NotANumber("a string that is not a number") from None


def defuse_huge_integers(result: dict[str, Any]) -> None:
    """Replace, in place, each integer of a (nested) result that no float can hold by a short text.

    Tune averages every numeric result value in floating point when it stores
    a trial's result; an integer such as ``10**400`` would raise there and end
    the sweep. Read the result (:func:`read`) before: to the number rule such
    an integer is not a number either way.
    """
    for key, value in result.items():
        if isinstance(value, dict):
            defuse_huge_integers(value)
        elif isinstance(value, int) and not isinstance(value, bool) and abs(value) > _INT64_MAX:
            try:
                float(value)
            except OverflowError:
                result[key] = f"<an integer of {len(str(abs(value)))} digits>"


def number_or_none(value: Any) -> Number | None:
    """``to_number(value)``, or None when the value is absent or not a number."""
    if value is None:
        return None
    try:
        return to_number(value)
    except NotANumber:
        return None


def shown(value: Any) -> str:
    """``repr(value)`` cut to a length that fits in one line of a message."""
    try:
        text = repr(value)
    except Exception:
        text = f"<{type(value).__name__}>"
    if len(text) > _SHOWN_CHARS:
        text = text[: _SHOWN_CHARS - 3] + "..."
    return text


@dataclass(frozen=True)
class Report:
    """One result of one trial, interpreted.

    ``values``: every number the trainable reported, by flattened name (ints
    stay ints, floats may be NaN); ``objective``: the sweep's metric in this
    report as a finite float, None when absent or unusable; ``problem``: why
    the metric's value in this report is unusable (None when it is fine or
    absent); ``iteration`` and ``time_s``: Tune's ``training_iteration`` and
    ``time_total_s`` (seconds); ``names``: the trainable's own keys, numbers
    or not.
    """

    metric: str
    values: dict[str, Number] = field(default_factory=dict)
    objective: float | None = None
    problem: str | None = None
    iteration: int = 0
    time_s: float = 0.0
    names: tuple[str, ...] = ()

    @property
    def has_metric(self) -> bool:
        """Whether this report holds the metric at all (usable or not)."""
        return self.objective is not None or self.problem is not None


def read(result: Mapping[str, Any] | None, metric: str) -> Report:
    """Interpret one result (nested as a trainable reported it, or flattened by Tune)."""
    flat = flatten(result or {})
    values: dict[str, Number] = {}
    names = []
    for name, value in flat.items():
        if name != metric and _is_tune_key(name):
            continue
        names.append(name)
        number = number_or_none(value)
        if number is not None:
            values[name] = number
    objective, problem = _judge(flat, metric)
    iteration = number_or_none(flat.get("training_iteration"))
    time_s = number_or_none(flat.get("time_total_s"))
    return Report(
        metric=metric,
        values=values,
        objective=objective,
        problem=problem,
        iteration=int(iteration) if iteration is not None and math.isfinite(iteration) else 0,
        time_s=float(time_s) if time_s is not None and math.isfinite(time_s) else 0.0,
        names=tuple(names),
    )


def _is_tune_key(name: str) -> bool:
    return name in TUNE_RESULT_KEYS or name.split(DELIMITER, 1)[0] == "config"


def _judge(flat: Mapping[str, Any], metric: str) -> tuple[float | None, str | None]:
    """The metric's finite value in a flattened result, or why it has none."""
    if metric in flat:
        value = flat[metric]
    else:
        # A dict where the metric should be was flattened into metric/... keys.
        prefix = metric + DELIMITER
        nested = {name[len(prefix):]: v for name, v in flat.items() if name.startswith(prefix)}
        if not nested:
            return None, None
        value = nested
    if value is None:
        return None, None
    try:
        number = to_number(value)
    except NotANumber as exc:
        return None, f"trial reported {metric}={shown(value)}, which is not a number ({exc})"
    if not math.isfinite(number):
        return None, f"trial reported {metric}={shown(value)}, which is not a finite number"
    return float(number), None
