"""``command:`` argv templates: what a placeholder may say, checked once and filled per trial.

An argv item of a ``command`` trainable may hold placeholders:

* ``{name}``: the raw value of parameter ``name``; a float is written in full
  (``repr``: ``0.0003``, ``1e-07``), anything else with ``str``;
* ``{name:spec}``: the raw value formatted with Python's format spec
  (``{lr:.3e}``, ``{batch_size:05d}``), applied to the value itself;
* ``{seed}`` (the trial's seed, an int) and ``{trial_id}`` (Tune's trial id,
  a string) besides the parameters;
* ``{{`` and ``}}`` for literal braces.

Everything else is refused when the experiment is validated, so that a
command that passes ``validate`` fills the same way for every trial: empty or
positional fields (``{}``, ``{0}``), attribute or index access
(``{x.real}``, ``{x[0]}``), conversions (``{x!r}``), nested fields in a spec
(``{x:{y}}``), unbalanced braces, unknown names, and a spec that does not
apply to some value the parameter can take (``{activation:.3f}`` on a choice
of strings).
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

#: Names a template may use besides the parameters, with a sample value of each.
EXTRA_NAMES: dict[str, Any] = {"seed": 0, "trial_id": "f3a1b_00000"}


class PlaceholderError(ValueError):
    """A template breaks a rule; the message states the rule."""


@dataclass(frozen=True)
class Placeholder:
    name: str
    spec: str  # the format spec after ':', '' when none


def parse(template: str) -> list[str | Placeholder]:
    """A template as literal text and placeholders, in order; PlaceholderError if malformed."""
    try:
        pieces = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise PlaceholderError(f"unbalanced braces ({exc}; write {{{{ or }}}} for a literal brace)") from None
    out: list[str | Placeholder] = []
    for literal, field, spec, conversion in pieces:
        if literal:
            out.append(literal)
        if field is None:
            continue
        shown = "{" + field + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "") + "}"
        if not field or field.isdigit():
            raise PlaceholderError(f"placeholder {shown} must name a parameter, seed or trial_id")
        if not field.isidentifier():
            raise PlaceholderError(f"placeholder {shown}: attribute and index access are not supported; name a parameter")
        if conversion:
            raise PlaceholderError(f"placeholder {shown}: conversions (!r, !s, !a) are not supported; use a format spec")
        if "{" in (spec or ""):
            raise PlaceholderError(f"placeholder {shown}: nested placeholders in a format spec are not supported")
        out.append(Placeholder(field, spec or ""))
    return out


def check(template: str, samples: Mapping[str, Iterable[Any]]) -> None:
    """Refuse a template that would not fill for some trial.

    ``samples`` maps each parameter name to values it can take, one of each
    type at least (every value of a choice; ``min`` of a float parameter, an
    int for an integer one). Raises PlaceholderError naming the rule.
    """
    allowed = {name: list(values) for name, values in samples.items()}
    for name, value in EXTRA_NAMES.items():
        allowed.setdefault(name, [value])
    for piece in parse(template):
        if not isinstance(piece, Placeholder):
            continue
        if piece.name not in allowed:
            raise PlaceholderError(
                f"placeholder {{{piece.name}}} names no parameter (parameters, seed and trial_id can be used)"
            )
        for value in allowed[piece.name]:
            try:
                _format(value, piece.spec)
            except (ValueError, TypeError) as exc:
                raise PlaceholderError(
                    f"placeholder {{{piece.name}:{piece.spec}}} cannot format {piece.name}'s value {value!r} ({exc})"
                ) from None


def fill(template: str, values: Mapping[str, Any]) -> str:
    """The argv item for one trial; ``values`` holds every name the template uses (KeyError otherwise)."""
    return "".join(
        piece if isinstance(piece, str) else _format(values[piece.name], piece.spec) for piece in parse(template)
    )


def _format(value: Any, spec: str) -> str:
    if spec:
        return format(value, spec)
    if isinstance(value, float):
        return repr(float(value))  # every digit, and a NumPy float as a plain number
    return str(value)
