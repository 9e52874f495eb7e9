"""Narrowed boxes as the views read them: their stored forms, each phase's first and final box, trials on
their edges, how the box moved.

A narrowed Bayesian phase's box may move while it runs (:mod:`raysweep.trust_region`): each trial's
``narrow_box`` is the box its config was generated in, ``state.json`` keeps the phase's first (``box``)
and final (``final_box``) box and how often it grew and shrank (``box_moves``).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Mapping

import pandas as pd

from raysweep.figures.frame import is_number, normalized, phase_label
from raysweep.narrowing import Box, box_edges_per_trial, describe_box_edges
from raysweep.space import Parameter, SearchSpace
from raysweep.trust_region import box_changes


@dataclass(frozen=True)
class Interval:
    """A numeric parameter's narrowed range, in raw values."""

    low: float
    high: float


@dataclass(frozen=True)
class Allowed:
    """A choice parameter's narrowed set of values."""

    values: tuple[Any, ...]


_LOW_KEYS = ("low", "lo", "min", "lower")
_HIGH_KEYS = ("high", "hi", "max", "upper")


def _parse_side(value: Any) -> Interval | Allowed | None:
    """One parameter's entry of a stored box; None when it is not readable."""
    if isinstance(value, Mapping):
        low = next((value[k] for k in _LOW_KEYS if k in value), None)
        high = next((value[k] for k in _HIGH_KEYS if k in value), None)
        if is_number(low) and is_number(high):
            return Interval(float(min(low, high)), float(max(low, high)))
        if isinstance(value.get("values"), (list, tuple)):
            return Allowed(tuple(value["values"]))
        return None
    if isinstance(value, (list, tuple)):
        if len(value) == 2 and all(is_number(v) for v in value):
            return Interval(float(min(value)), float(max(value)))
        return Allowed(tuple(value))
    if value is None:
        return None
    return Allowed((value,))


def parse_box(value: Any) -> dict[str, Interval | Allowed]:
    """A narrowed box from its stored form (a JSON string or a mapping); {} if unreadable.

    Read shapes: narrowing's ``{"ranges": {"<param>": [lo, hi]}, "choices":
    {"<param>": [values...]}}``; a flat ``{"<param>": [lo, hi] | [values...]}``
    (two numbers read as a range); ``{"lo": .., "hi": ..}`` style entries; and
    any of these wrapped as ``{"box": {...}}``. Unreadable entries are left out.
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return {}
    if isinstance(value, (bytes, str)):
        try:
            value = json.loads(value)
        except ValueError:
            return {}
    if not isinstance(value, Mapping):
        return {}
    if all(isinstance(side, (Interval, Allowed)) for side in value.values()):
        return dict(value)
    if set(value) == {"box"} and isinstance(value["box"], Mapping):
        value = value["box"]
    if value and set(value) <= {"ranges", "choices"} and all(isinstance(v, Mapping) for v in value.values()):
        box: dict[str, Interval | Allowed] = {}
        for name, interval in (value.get("ranges") or {}).items():
            parsed = _parse_side(interval)
            if isinstance(parsed, Interval):
                box[str(name)] = parsed
        for name, allowed in (value.get("choices") or {}).items():
            if isinstance(allowed, (list, tuple)):
                box[str(name)] = Allowed(tuple(allowed))
        return box
    box = {}
    for name, side in value.items():
        parsed = _parse_side(side)
        if parsed is not None:
            box[str(name)] = parsed
    return box


def narrowed_boxes(trials: pd.DataFrame) -> dict[int, dict[str, Interval | Allowed]]:
    """Each phase's first narrowed box, from the ``narrow_box`` column (phases without one left out).

    The box of the phase's first trial to end: a box moves only when a trial
    ends, so that trial was generated in the phase's first box.
    """
    return _boxes_of(trials, last=False)


def final_boxes(trials: pd.DataFrame) -> dict[int, dict[str, Interval | Allowed]]:
    """Each narrowed phase's last box in the ``narrow_box`` column: the box its latest-started trial was
    generated in (``state.json``'s ``final_box`` is the box after that trial ended, when known)."""
    return _boxes_of(trials, last=True)


def _boxes_of(trials: pd.DataFrame, *, last: bool) -> dict[int, dict[str, Interval | Allowed]]:
    if "narrow_box" not in trials:
        return {}
    frame = normalized(trials)
    if last and "started_at" in frame:
        frame = frame.sort_values(["phase", "started_at"], kind="stable")
    boxes: dict[int, dict[str, Interval | Allowed]] = {}
    for phase in sorted(frame["phase"].unique()):
        values = list(frame.loc[frame["phase"] == phase, "narrow_box"])
        for value in reversed(values) if last else values:
            box = parse_box(value)
            if box:
                boxes[int(phase)] = box
                break
    return boxes


def box_edge_counts(
    trials: pd.DataFrame,
    parameters: Mapping[str, Mapping[str, Any]],
    boxes: Mapping[int, Mapping[str, Any]] | None = None,
) -> pd.DataFrame:
    """Per narrowed phase, how many of its trials sit on a free edge of the box they were generated in
    (:func:`raysweep.narrowing.box_edges_per_trial`).

    ``parameters`` is ``state.json``'s declared space; ``boxes`` (phase -> box,
    e.g. ``state.json``'s) fill in trials whose rows carry no ``narrow_box``.
    Columns ``phase``, ``parameter``, ``side`` (lower/upper), ``trials``
    (``7/10``: on the edge / the phase's trials); a narrowed phase with no trial
    on an edge has one row with ``parameter`` ``(none)``.
    """
    frame = normalized(trials)
    space = _declared_space(parameters)
    phase_boxes = {int(p): parse_box(b) for p, b in (boxes or {}).items()}
    phase_boxes.update(narrowed_boxes(frame))
    rows = []
    for phase, parsed in sorted(phase_boxes.items()):
        box = _as_box(parsed, space)
        if box is None or not box.ranges:
            continue
        phase_rows = frame[frame["phase"] == phase]
        boxed = [
            (_stored_box(row.get("narrow_box"), space) or box,
             {name: row.get(f"param.{name}") for name in space.names})
            for row in phase_rows.to_dict("records")
        ]
        label = f"phase {phase_label(frame, phase)}"
        edges = box_edges_per_trial(space, boxed)
        for edge in edges:
            rows.append({"phase": label, "parameter": edge.parameter, "side": edge.side,
                         "trials": f"{edge.trials}/{edge.total}"})
        if not edges:
            rows.append({"phase": label, "parameter": "(none)", "side": "", "trials": f"0/{len(boxed)}"})
    return pd.DataFrame(rows, columns=["phase", "parameter", "side", "trials"])


def box_edge_lines(
    trials: pd.DataFrame,
    parameters: Mapping[str, Mapping[str, Any]],
    boxes: Mapping[int, Mapping[str, Any]] | None = None,
) -> list[str]:
    """:func:`box_edge_counts` as one sentence per narrowed phase: ``phase 3 refine: box edges: lr upper 7/10``."""
    counts = box_edge_counts(trials, parameters, boxes)
    lines = []
    for phase, group in counts.groupby("phase", sort=False):
        edges = [f"{r.parameter} {r.side} {r.trials}" for r in group.itertuples() if r.parameter != "(none)"]
        total = group["trials"].iloc[0].split("/")[1]
        text = "box edges: " + ", ".join(edges) if edges else describe_box_edges([], int(total))
        lines.append(f"{phase}: {text}")
    return lines


def box_moves(
    trials: pd.DataFrame,
    parameters: Mapping[str, Mapping[str, Any]],
    phases: Mapping[int, Mapping[str, Any]],
) -> pd.DataFrame:
    """Per narrowed phase, how its box moved: the first and final interval of each parameter whose range changed.

    ``phases`` maps a phase to its ``state.json`` entries ``box`` (first),
    ``final_box`` and ``box_moves`` (``{"growths": n, "shrinks": m}``); a phase
    without ``final_box`` (still running, or recorded before boxes moved) takes
    the box of its latest-started trial from the rows. Columns ``phase``,
    ``parameter``, ``first box``, ``final box``, ``growths``, ``shrinks`` (blank
    when not known); a phase whose box did not move has one row with
    ``parameter`` ``(none)``.
    """
    frame = normalized(trials)
    space = _declared_space(parameters)
    from_rows = final_boxes(frame)
    rows = []
    for phase, entries in sorted(phases.items()):
        first = _stored_box(entries.get("box"), space)
        final = _stored_box(entries.get("final_box"), space) or _stored_box(from_rows.get(int(phase)), space)
        if first is None or final is None or not first.ranges:
            continue
        moves = entries.get("box_moves") or {}
        counts = {"growths": moves.get("growths", ""), "shrinks": moves.get("shrinks", "")}
        label = f"phase {phase_label(frame, phase)}" if (frame["phase"] == phase).any() else f"phase {phase}"
        changes = box_changes(first, final)
        for name, (a, b), (c, d) in changes:
            rows.append({"phase": label, "parameter": name, "first box": f"[{a:.4g}, {b:.4g}]",
                         "final box": f"[{c:.4g}, {d:.4g}]", **counts})
        if not changes:
            rows.append({"phase": label, "parameter": "(none)", "first box": "", "final box": "", **counts})
    return pd.DataFrame(rows, columns=["phase", "parameter", "first box", "final box", "growths", "shrinks"])


def _declared_space(parameters: Mapping[str, Mapping[str, Any]]) -> SearchSpace:
    """The numeric and choice parameters of ``state.json``'s ``parameters`` (entries that are not readable left out)."""
    declared = []
    for name, spec in parameters.items():
        try:
            declared.append(Parameter(str(name), spec["distribution"], min=spec.get("min"), max=spec.get("max"),
                                      values=tuple(spec.get("values") or ())))
        except (KeyError, TypeError, AttributeError):
            continue
    return SearchSpace(tuple(declared))


def _stored_box(value: Any, space: SearchSpace) -> Box | None:
    """The numeric ranges of a stored box (:func:`parse_box`'s shapes) as narrowing's ``Box``; None when it holds none."""
    parsed = parse_box(value)
    return _as_box(parsed, space) if parsed else None


def _as_box(parsed: Mapping[str, Interval | Allowed], space: SearchSpace) -> Box | None:
    """The numeric ranges of ``parsed`` over declared parameters as narrowing's ``Box``; None if it refuses them."""
    ranges = {n: (s.low, s.high) for n, s in parsed.items() if isinstance(s, Interval) and n in space.names}
    try:
        return Box(ranges=ranges)
    except ValueError:
        return None
