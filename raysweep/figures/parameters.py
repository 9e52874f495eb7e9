"""Each parameter against the objective, narrowed boxes shaded (a box that moved: its final box hatched),
on linear, log or power-of-two axes."""

from __future__ import annotations

import math
from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, NullFormatter, NullLocator

from raysweep.figures.boxes import Allowed, Interval, final_boxes, narrowed_boxes, parse_box
from raysweep.figures.drawing import (
    LOG_SPAN,
    legend_patch,
    new_figure,
    notice,
    phase_color,
    scatter_by_status,
    status_handles,
)
from raysweep.figures.frame import check_mode, is_number, is_usable, normalized, param_names, phase_label
from raysweep.space import LOG_DISTRIBUTIONS


def log_scaled_parameters(parameters: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Names of the parameters declared on a log scale, from ``state.json``'s ``parameters``."""
    return [name for name, spec in parameters.items() if spec.get("distribution") in LOG_DISTRIBUTIONS]


def pow2_parameters(parameters: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Names of the parameters declared ``pow2``, from ``state.json``'s ``parameters``: log2 axes ticked 64, 128, ..."""
    return [name for name, spec in parameters.items() if spec.get("distribution") == "pow2"]


def _log_scaled(values: pd.Series) -> bool:
    """Whether the finite values are all positive and span more than ``LOG_SPAN``."""
    values = values[np.isfinite(values)]
    return bool(len(values)) and values.min() > 0 and values.max() / values.min() > LOG_SPAN


def _powers_of_two(values: pd.Series) -> bool:
    """Whether every finite value is a power of two (2**k, k an integer) and at least three differ."""
    values = values[np.isfinite(values)]
    if len(values) == 0 or (values <= 0).any():
        return False
    exponents = np.log2(values.to_numpy(dtype=float))
    return bool(np.allclose(exponents, np.round(exponents), atol=1e-9)) and values.nunique() > 2


def parameters_vs_objective(
    trials: pd.DataFrame,
    mode: str,
    metric: str = "objective",
    log_params: Iterable[str] | None = None,
    boxes: Mapping[int, Mapping[str, Any]] | None = None,
    pow2_params: Iterable[str] | None = None,
    final: Mapping[int, Mapping[str, Any]] | None = None,
) -> Figure:
    """One panel per parameter: raw value against objective, each phase's first narrowed box shaded and,
    where the box moved during the phase (:mod:`raysweep.trust_region`), its final box hatched over it.

    ``log_params`` names parameters declared on a log scale; without it a
    parameter gets a log axis when its values are all positive and span more
    than ``LOG_SPAN``. ``pow2_params`` names ``pow2`` parameters, drawn on a
    log2 axis ticked at the powers of two; without it a parameter
    whose values are all powers of two (three or more of them) gets one. ``boxes`` (phase -> box)
    fills in phases whose rows carry no ``narrow_box``; ``final`` (phase -> box, ``state.json``'s
    ``final_box``) gives each phase's final box, else the box of its latest-started trial is. Trials cut short
    (ASHA, the time budget) get their own markers.
    """
    check_mode(mode)
    frame = normalized(trials)
    names = param_names(frame)
    if not names:
        return notice(new_figure(6, 3), "the trials table has no param.* columns")
    phase_boxes = {int(p): parse_box(b) for p, b in (boxes or {}).items()}
    phase_boxes.update(narrowed_boxes(frame))
    moved = _moved_ranges(phase_boxes, {**final_boxes(frame), **{int(p): parse_box(b) for p, b in (final or {}).items()}})
    declared_log = None if log_params is None else set(log_params)
    declared_pow2 = None if pow2_params is None else set(pow2_params)
    columns = min(3, len(names))
    rows_count = math.ceil(len(names) / columns)
    figure = new_figure(4.2 * columns, 3.4 * rows_count)
    usable = frame[is_usable(frame)]
    axes = figure.subplots(rows_count, columns, squeeze=False)
    for ax in axes.flat[len(names):]:
        ax.axis("off")
    statuses: set[str] = set()
    for ax, name in zip(axes.flat, names):
        column = frame[f"param.{name}"]
        numeric = pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column)
        if numeric:
            statuses |= _numeric_panel(ax, name, frame, usable, phase_boxes, declared_log, declared_pow2, moved)
        else:
            statuses |= _choice_panel(ax, name, frame, usable, phase_boxes)
        ax.set_title(name if len(name) <= 40 else name[:37] + "...", fontsize=10)
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
    handles = [
        legend_patch(phase_color(p), f"phase {phase_label(frame, p)}") for p in sorted(frame["phase"].unique())
    ]
    if phase_boxes:
        label = "shaded: first narrowed box" if moved else "shaded: narrowed box"
        handles.append(legend_patch("#bbbbbb", label, alpha=0.4))
    if moved:
        handles.append(Patch(facecolor="none", edgecolor="#777777", hatch="//", label="hatched: final box"))
    handles += status_handles(statuses)
    figure.legend(handles=handles, loc="outside lower center", ncols=min(4, len(handles)), fontsize=8)
    figure.suptitle(f"Parameters against {metric} (failed trials left out)")
    return figure


def _moved_ranges(first: Mapping[int, Mapping[str, Any]], final: Mapping[int, Mapping[str, Any]]) -> dict[int, dict[str, Interval]]:
    """Per phase, the numeric ranges whose final interval differs from the first one."""
    moved: dict[int, dict[str, Interval]] = {}
    for phase, box in final.items():
        for name, side in box.items():
            start = first.get(phase, {}).get(name)
            if isinstance(side, Interval) and isinstance(start, Interval) and side != start:
                moved.setdefault(phase, {})[name] = side
    return moved


def _numeric_panel(ax, name, frame, usable, phase_boxes, declared_log, declared_pow2, moved) -> set[str]:
    """Draw a numeric parameter's panel (linear, log or log2 axis); return the statuses drawn."""
    values = pd.to_numeric(frame[f"param.{name}"], errors="coerce").astype(float)
    log_axis = name in declared_log if declared_log is not None else _log_scaled(values)
    pow2_axis = name in declared_pow2 if declared_pow2 is not None else _powers_of_two(values)
    statuses: set[str] = set()
    for phase in sorted(usable["phase"].unique()):
        rows = usable[usable["phase"] == phase]
        statuses |= scatter_by_status(ax, rows[f"param.{name}"], rows, color=phase_color(phase), alpha=0.75, s=20)
    edges = []
    for phase, box in sorted(phase_boxes.items()):
        side = box.get(name)
        if isinstance(side, Interval):
            ax.axvspan(side.low, side.high, color=phase_color(phase), alpha=0.12)
            edges += [side.low, side.high]
        elif isinstance(side, Allowed):
            for value in side.values:
                if is_number(value):
                    ax.axvline(float(value), color=phase_color(phase), alpha=0.3, linewidth=6)
    for phase, ranges in sorted(moved.items()):
        if name in ranges:
            side = ranges[name]
            ax.axvspan(side.low, side.high, facecolor="none", edgecolor=phase_color(phase), hatch="//",
                       linewidth=0, alpha=0.6)
            edges += [side.low, side.high]
    finite = values[np.isfinite(values)]
    if (pow2_axis or log_axis) and len(finite) and (finite > 0).all():
        if pow2_axis:
            _pow2_axis(ax, [*finite, *(e for e in edges if e > 0)])
            return statuses
        ax.set_xscale("log")
        low, high = ax.get_xlim()  # what is shown: failed trials' values are not
        if low > 0 and high / low < LOG_SPAN:
            # Under two decades the default labels every minor tick (2x10^0, 3x10^0, ...), overlapping.
            ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 3.0, 5.0)))
            ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
            ax.xaxis.set_minor_formatter(NullFormatter())
    return statuses


#: At most this many labelled ticks on a power-of-two axis (every k-th power beyond).
_POW2_TICKS = 7


def _pow2_axis(ax, values: Iterable[float]) -> None:
    """A log2 axis ticked at the powers of two the values span (16, 32, 64, ...), not at 10^x."""
    values = [float(v) for v in values]
    low = math.floor(math.log2(min(values)) + 1e-9)
    high = math.ceil(math.log2(max(values)) - 1e-9)
    step = max(1, math.ceil((high - low + 1) / _POW2_TICKS))
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_locator(FixedLocator([2.0**k for k in range(low, high + 1, step)]))
    ax.xaxis.set_major_formatter(FuncFormatter(_pow2_label))
    ax.xaxis.set_minor_locator(NullLocator())
    margin = 0.35 * max(1, step)  # half a tick's width of air on each side, in exponents
    ax.set_xlim(2.0 ** (low - margin), 2.0 ** (high + margin))


def _pow2_label(value: float, _position=None) -> str:
    """A power-of-two tick's label: the plain number up to 65536, ``2^k`` beyond or below."""
    exponent = round(math.log2(value)) if value > 0 else 0
    if 0 <= exponent < 17:
        return str(2**exponent)  # 1 ... 65536 as plain numbers
    return f"$2^{{{exponent}}}$"


def _choice_panel(ax, name, frame, usable, phase_boxes) -> set[str]:
    """Draw a choice parameter's panel (one jittered column per value); return the statuses drawn."""
    labels = sorted({_choice_label(v) for v in frame[f"param.{name}"]})
    position = {label: i for i, label in enumerate(labels)}
    jitter = np.random.default_rng(0)
    statuses: set[str] = set()
    for phase in sorted(usable["phase"].unique()):
        rows = usable[usable["phase"] == phase]
        x = np.array([position.get(_choice_label(v), np.nan) for v in rows[f"param.{name}"]], dtype=float)
        x = pd.Series(x + jitter.uniform(-0.15, 0.15, size=len(x)), index=rows.index)
        statuses |= scatter_by_status(ax, x, rows, color=phase_color(phase), alpha=0.75, s=20)
    for phase, box in sorted(phase_boxes.items()):
        side = box.get(name)
        if isinstance(side, Allowed):
            for value in side.values:
                if _choice_label(value) in position:
                    spot = position[_choice_label(value)]
                    ax.axvspan(spot - 0.4, spot + 0.4, color=phase_color(phase), alpha=0.12)
    ax.set_xticks(range(len(labels)), labels, rotation=30 if len(labels) > 4 else 0)
    ax.set_xlim(-0.6, len(labels) - 0.4)
    return statuses


def _choice_label(value: Any) -> str:
    """A choice value as its column's tick label; a null (``None``, read back as NaN) is ``null``."""
    if value is None or (isinstance(value, float) and value != value):
        return "null"
    return str(value)
