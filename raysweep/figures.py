"""Figures of a sweep's results, drawn from the trials table alone.

Every function takes the trials DataFrame as ``pandas.read_parquet(run_dir /
"results/trials")`` returns it (``phase`` may arrive as a category) and
returns a matplotlib ``Figure`` (or, for the tables, a DataFrame too). The
figures are bare ``Figure`` objects on an Agg canvas: no pyplot state, no
global backend switch, so they work in scripts, reports and notebooks alike.

Failed trials are never plotted as objective values: they have no usable
objective (and cost is still counted where cost is the axis). Trials cut short
(``early_stopped`` by ASHA, ``time_budget``) keep their last value but get
their own markers, so a reader tells them from full runs. Costs are shown in
the unit that fits their magnitude (:mod:`raysweep.cost_units`).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, NullFormatter, NullLocator

from raysweep.cost_units import CostUnit, cost_unit
from raysweep.narrowing import Box, box_edges, describe_box_edges
from raysweep.outcomes import failure_counts
from raysweep.records import TrialStatus
from raysweep.space import LOG_DISTRIBUTIONS, Parameter, SearchSpace

__all__ = [
    "Allowed",
    "Interval",
    "all_figures",
    "best_so_far",
    "box_edge_counts",
    "box_edge_lines",
    "cell_text",
    "cost_axis",
    "fitted_tables",
    "failure_reasons",
    "log_scaled_parameters",
    "narrowed_boxes",
    "objective_vs_cost",
    "parameters_vs_objective",
    "parse_box",
    "pareto_front",
    "pow2_parameters",
    "status_bars",
    "status_counts",
    "top_configs",
    "top_configs_table",
    "wrap_name",
]

#: Bar colours of the statuses, in stacking order.
STATUS_COLORS: dict[str, str] = {
    TrialStatus.COMPLETED.value: "#2e7d32",
    TrialStatus.EARLY_STOPPED.value: "#f9a825",
    TrialStatus.TIME_BUDGET.value: "#6a1b9a",
    TrialStatus.FAILED.value: "#c62828",
}
#: Markers of the statuses a plotted (usable) trial can have, and their legend text.
STATUS_MARKERS: dict[str, str] = {
    TrialStatus.COMPLETED.value: "o",
    TrialStatus.EARLY_STOPPED.value: "v",
    TrialStatus.TIME_BUDGET.value: "X",
}
STATUS_LABELS: dict[str, str] = {
    TrialStatus.COMPLETED.value: "completed",
    TrialStatus.EARLY_STOPPED.value: "stopped early (ASHA)",
    TrialStatus.TIME_BUDGET.value: "stopped by the time budget",
}
#: A parameter spanning more than this ratio (all values positive) gets a log axis.
LOG_SPAN = 100.0
_PHASE_COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]


# ----------------------------------------------------------------------------
# reading the table
# ----------------------------------------------------------------------------
def _normalized(trials: pd.DataFrame) -> pd.DataFrame:
    """A copy with an int ``phase``, str ``status``, float ``objective`` and costs, in run order."""
    frame = trials.copy()
    if "phase" in frame:
        frame["phase"] = pd.to_numeric(frame["phase"].astype(str), errors="coerce").fillna(0).astype(int)
    else:
        frame["phase"] = 1
    if "phase_name" not in frame:
        frame["phase_name"] = ""
    frame["phase_name"] = frame["phase_name"].fillna("").astype(str)
    frame["status"] = frame["status"].astype(str) if "status" in frame else TrialStatus.COMPLETED.value
    for column in ("objective", "cost_s", "gpu_s"):
        frame[column] = pd.to_numeric(frame[column], errors="coerce") if column in frame else np.nan
    frame["cost_s"] = frame["cost_s"].fillna(0.0)
    frame["gpu_s"] = frame["gpu_s"].fillna(0.0)
    order = ["phase", "ended_at"] if "ended_at" in frame else ["phase"]
    return frame.sort_values(order, kind="stable").reset_index(drop=True)


def _usable(frame: pd.DataFrame) -> pd.Series:
    """Rows whose objective may be plotted: not failed, finite."""
    return (frame["status"] != TrialStatus.FAILED.value) & np.isfinite(frame["objective"].astype(float))


def _params(frame: pd.DataFrame) -> list[str]:
    return [c[len("param."):] for c in frame.columns if c.startswith("param.")]


def _phase_label(frame: pd.DataFrame, phase: int) -> str:
    names = frame.loc[frame["phase"] == phase, "phase_name"]
    name = next((n for n in names if n), "")
    return f"{phase} {name}".strip()


def _phase_color(phase: int) -> str:
    return _PHASE_COLORS[(phase - 1) % len(_PHASE_COLORS)]


def cost_axis(trials: pd.DataFrame, cumulative: bool = False) -> tuple[str, CostUnit]:
    """The cost column to plot and the unit that fits it.

    ``gpu_s`` (GPU-seconds, in GPU- units) when some trial held GPUs, else
    ``cost_s`` (wall seconds). The unit fits the largest value the axis
    shows: the total with ``cumulative``, else the costliest trial.
    """
    gpu = pd.to_numeric(trials["gpu_s"], errors="coerce").fillna(0) if "gpu_s" in trials else pd.Series(dtype=float)
    column = "gpu_s" if len(gpu) and (gpu > 0).any() else "cost_s"
    values = pd.to_numeric(trials[column], errors="coerce").fillna(0) if column in trials else pd.Series(dtype=float)
    largest = float(values.sum() if cumulative else values.max()) if len(values) else 0.0
    return column, cost_unit(largest, gpu=column == "gpu_s")


def _cost_label(unit: CostUnit) -> str:
    return unit.label + ("" if unit.gpu else " (wall clock; no GPUs used)")


def _better(mode: str):
    return np.fmax if mode == "max" else np.fmin


def _new_figure(width: float, height: float) -> Figure:
    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _empty(figure: Figure, text: str) -> Figure:
    ax = figure.add_subplot()
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=12, color="#555555")
    return figure


def _check_mode(mode: str) -> None:
    if mode not in ("max", "min"):
        raise ValueError(f"mode must be max or min, but got {mode!r}")


# ----------------------------------------------------------------------------
# best so far against cumulative cost
# ----------------------------------------------------------------------------
def best_so_far(trials: pd.DataFrame, mode: str, metric: str = "objective") -> Figure:
    """The sweep's best objective so far against its cumulative cost, one colour per phase.

    Trials are taken in phase order, then by end time. Every trial adds its
    cost (failed ones too); only usable trials can improve the best.
    """
    _check_mode(mode)
    frame = _normalized(trials)
    column, unit = cost_axis(frame, cumulative=True)
    figure = _new_figure(8, 4.5)
    if not _usable(frame).any():
        return _empty(figure, "no trial with a usable objective yet")
    ax = figure.add_subplot()
    frame["cum_cost"] = frame[column].cumsum() / unit.seconds
    values = frame["objective"].where(_usable(frame))
    frame["best"] = _better(mode).accumulate(values.to_numpy(dtype=float))
    previous: tuple[float, float] | None = None
    handles, statuses = [], set()
    for phase in sorted(frame["phase"].unique()):
        rows = frame[frame["phase"] == phase]
        color = _phase_color(phase)
        x = rows["cum_cost"].to_list()
        y = rows["best"].to_list()
        if previous is not None:  # join the phase's line onto the one before
            x, y = [previous[0], *x], [previous[1], *y]
        (line,) = ax.step(x, y, where="post", color=color, linewidth=2, label=f"phase {_phase_label(frame, phase)}")
        handles.append(line)
        usable = rows[_usable(rows)]
        statuses |= _scatter_by_status(ax, usable["cum_cost"], usable, color=color, alpha=0.5, s=18, linewidths=0)
        previous = (x[-1], y[-1])
        if phase != frame["phase"].max():
            ax.axvline(rows["cum_cost"].iloc[-1], color="#999999", linestyle=":", linewidth=1)
    ax.set_xlabel(f"cumulative {_cost_label(unit)}")
    ax.set_ylabel(f"{metric} ({mode}; line = best so far)")
    ax.set_title("Best so far against cost")
    ax.grid(alpha=0.3)
    ax.legend(handles=handles + _status_handles(statuses), loc="best", fontsize=8)
    return figure


def _scatter_by_status(ax, x: pd.Series, rows: pd.DataFrame, color: str, y: str = "objective", **style) -> set[str]:
    """Scatter ``rows`` at ``x`` with one marker per status; return the statuses drawn.

    Each status's points are one collection whose ``gid`` is ``status:<status>``.
    """
    drawn = set()
    for status, group in rows.groupby("status", sort=True):
        ax.scatter(x.loc[group.index].astype(float), group[y].astype(float), color=color,
                   marker=STATUS_MARKERS.get(status, "o"), gid=f"status:{status}", **style)
        drawn.add(str(status))
    return drawn


def _status_handles(statuses: set[str]) -> list[Line2D]:
    """Legend entries of the markers, when some trial drawn was cut short (else every point is a full run)."""
    if not statuses - {TrialStatus.COMPLETED.value}:
        return []
    return [
        Line2D([], [], linestyle="", marker=STATUS_MARKERS.get(status, "o"), color="#555555", markersize=6,
               label=STATUS_LABELS.get(status, status))
        for status in STATUS_MARKERS
        if status in statuses
    ]


# ----------------------------------------------------------------------------
# objective against cost, with the Pareto front
# ----------------------------------------------------------------------------
def pareto_front(trials: pd.DataFrame, mode: str) -> pd.DataFrame:
    """Usable trials no other trial beats on both cost and objective, cheapest first."""
    _check_mode(mode)
    frame = _normalized(trials)
    column, _ = cost_axis(frame)
    usable = frame[_usable(frame)]
    sign = 1.0 if mode == "max" else -1.0
    ordered = usable.assign(_gain=sign * usable["objective"]).sort_values([column, "_gain"], ascending=[True, False], kind="stable")
    keep, best = [], -math.inf
    for index, gain in zip(ordered.index, ordered["_gain"]):
        if gain > best:
            keep.append(index)
            best = gain
    return ordered.loc[keep].drop(columns="_gain")


def objective_vs_cost(trials: pd.DataFrame, mode: str, metric: str = "objective") -> Figure:
    """Each usable trial's objective against its own cost; the Pareto front joined.

    Trials cut short (ASHA, the time budget) get their own markers.
    """
    frame = _normalized(trials)
    column, unit = cost_axis(frame)
    figure = _new_figure(8, 4.5)
    usable = frame[_usable(frame)]
    if usable.empty:
        return _empty(figure, "no trial with a usable objective yet")
    ax = figure.add_subplot()
    handles, statuses = [], set()
    for phase in sorted(usable["phase"].unique()):
        rows = usable[usable["phase"] == phase]
        statuses |= _scatter_by_status(ax, rows[column] / unit.seconds, rows, color=_phase_color(phase), alpha=0.7, s=26)
        handles.append(_legend_patch(_phase_color(phase), f"phase {_phase_label(frame, phase)}"))
    front = pareto_front(frame, mode)
    (line,) = ax.step(front[column] / unit.seconds, front["objective"], where="post", color="black", linewidth=1.5,
                      label=f"Pareto front ({len(front)})")
    ax.scatter(front[column] / unit.seconds, front["objective"], facecolors="none", edgecolors="black", s=60,
               linewidths=1.2)
    costs = usable[column][usable[column] > 0]
    if len(costs) and costs.min() > 0 and costs.max() / costs.min() > LOG_SPAN:
        ax.set_xscale("log")
    ax.set_xlabel(f"cost per trial, {_cost_label(unit)}")
    ax.set_ylabel(f"{metric} ({'higher' if mode == 'max' else 'lower'} is better)")
    ax.set_title("Objective against cost")
    ax.grid(alpha=0.3)
    ax.legend(handles=handles + [line] + _status_handles(statuses), loc="best", fontsize=8)
    return figure


# ----------------------------------------------------------------------------
# each parameter against the objective, narrowed boxes shaded
# ----------------------------------------------------------------------------
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


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def _parse_side(value: Any) -> Interval | Allowed | None:
    if isinstance(value, Mapping):
        low = next((value[k] for k in _LOW_KEYS if k in value), None)
        high = next((value[k] for k in _HIGH_KEYS if k in value), None)
        if _is_number(low) and _is_number(high):
            return Interval(float(min(low, high)), float(max(low, high)))
        if isinstance(value.get("values"), (list, tuple)):
            return Allowed(tuple(value["values"]))
        return None
    if isinstance(value, (list, tuple)):
        if len(value) == 2 and all(_is_number(v) for v in value):
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
    """Each phase's narrowed box, from the ``narrow_box`` column (phases without one left out)."""
    if "narrow_box" not in trials:
        return {}
    frame = _normalized(trials)
    boxes: dict[int, dict[str, Interval | Allowed]] = {}
    for phase in sorted(frame["phase"].unique()):
        for value in frame.loc[frame["phase"] == phase, "narrow_box"]:
            box = parse_box(value)
            if box:
                boxes[int(phase)] = box
                break
    return boxes


def log_scaled_parameters(parameters: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Names of the parameters declared on a log scale, from ``state.json``'s ``parameters``."""
    return [name for name, spec in parameters.items() if spec.get("distribution") in LOG_DISTRIBUTIONS]


def pow2_parameters(parameters: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Names of the parameters declared ``pow2``, from ``state.json``'s ``parameters``: log2 axes ticked 64, 128, ..."""
    return [name for name, spec in parameters.items() if spec.get("distribution") == "pow2"]


def _log_scaled(values: pd.Series) -> bool:
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
) -> Figure:
    """One panel per parameter: raw value against objective, each phase's narrowed box shaded.

    ``log_params`` names parameters declared on a log scale; without it a
    parameter gets a log axis when its values are all positive and span more
    than ``LOG_SPAN``. ``pow2_params`` names ``pow2`` parameters, drawn on a
    log2 axis ticked at the powers of two; without it a parameter
    whose values are all powers of two (three or more of them) gets one. ``boxes`` (phase -> box)
    fills in phases whose rows carry no ``narrow_box``. Trials cut short
    (ASHA, the time budget) get their own markers.
    """
    _check_mode(mode)
    frame = _normalized(trials)
    names = _params(frame)
    if not names:
        return _empty(_new_figure(6, 3), "the trials table has no param.* columns")
    phase_boxes = {int(p): parse_box(b) for p, b in (boxes or {}).items()}
    phase_boxes.update(narrowed_boxes(frame))
    declared_log = None if log_params is None else set(log_params)
    declared_pow2 = None if pow2_params is None else set(pow2_params)
    columns = min(3, len(names))
    rows_count = math.ceil(len(names) / columns)
    figure = _new_figure(4.2 * columns, 3.4 * rows_count)
    usable = frame[_usable(frame)]
    axes = figure.subplots(rows_count, columns, squeeze=False)
    for ax in axes.flat[len(names):]:
        ax.axis("off")
    statuses: set[str] = set()
    for ax, name in zip(axes.flat, names):
        column = frame[f"param.{name}"]
        numeric = pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column)
        if numeric:
            statuses |= _numeric_panel(ax, name, frame, usable, phase_boxes, declared_log, declared_pow2)
        else:
            statuses |= _choice_panel(ax, name, frame, usable, phase_boxes)
        ax.set_title(name if len(name) <= 40 else name[:37] + "...", fontsize=10)
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
    handles = [
        _legend_patch(_phase_color(p), f"phase {_phase_label(frame, p)}") for p in sorted(frame["phase"].unique())
    ]
    if phase_boxes:
        handles.append(_legend_patch("#bbbbbb", "shaded: narrowed box", alpha=0.4))
    handles += _status_handles(statuses)
    figure.legend(handles=handles, loc="outside lower center", ncols=min(4, len(handles)), fontsize=8)
    figure.suptitle(f"Parameters against {metric} (failed trials left out)")
    return figure


def _legend_patch(color: str, label: str, alpha: float = 1.0):
    from matplotlib.patches import Patch

    return Patch(facecolor=color, alpha=alpha, label=label)


def _numeric_panel(ax, name, frame, usable, phase_boxes, declared_log, declared_pow2) -> set[str]:
    values = pd.to_numeric(frame[f"param.{name}"], errors="coerce").astype(float)
    log_axis = name in declared_log if declared_log is not None else _log_scaled(values)
    pow2_axis = name in declared_pow2 if declared_pow2 is not None else _powers_of_two(values)
    statuses: set[str] = set()
    for phase in sorted(usable["phase"].unique()):
        rows = usable[usable["phase"] == phase]
        statuses |= _scatter_by_status(ax, rows[f"param.{name}"], rows, color=_phase_color(phase), alpha=0.75, s=20)
    edges = []
    for phase, box in sorted(phase_boxes.items()):
        side = box.get(name)
        if isinstance(side, Interval):
            ax.axvspan(side.low, side.high, color=_phase_color(phase), alpha=0.12)
            edges += [side.low, side.high]
        elif isinstance(side, Allowed):
            for value in side.values:
                if _is_number(value):
                    ax.axvline(float(value), color=_phase_color(phase), alpha=0.3, linewidth=6)
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
    exponent = round(math.log2(value)) if value > 0 else 0
    if 0 <= exponent < 17:
        return str(2**exponent)  # 1 ... 65536 as plain numbers
    return f"$2^{{{exponent}}}$"


def _choice_panel(ax, name, frame, usable, phase_boxes) -> set[str]:
    labels = sorted({str(v) for v in frame[f"param.{name}"].dropna()})
    position = {label: i for i, label in enumerate(labels)}
    jitter = np.random.default_rng(0)
    statuses: set[str] = set()
    for phase in sorted(usable["phase"].unique()):
        rows = usable[usable["phase"] == phase]
        x = np.array([position.get(str(v), np.nan) for v in rows[f"param.{name}"]], dtype=float)
        x = pd.Series(x + jitter.uniform(-0.15, 0.15, size=len(x)), index=rows.index)
        statuses |= _scatter_by_status(ax, x, rows, color=_phase_color(phase), alpha=0.75, s=20)
    for phase, box in sorted(phase_boxes.items()):
        side = box.get(name)
        if isinstance(side, Allowed):
            for value in side.values:
                if str(value) in position:
                    spot = position[str(value)]
                    ax.axvspan(spot - 0.4, spot + 0.4, color=_phase_color(phase), alpha=0.12)
    ax.set_xticks(range(len(labels)), labels, rotation=30 if len(labels) > 4 else 0)
    ax.set_xlim(-0.6, len(labels) - 0.4)
    return statuses


# ----------------------------------------------------------------------------
# top configs
# ----------------------------------------------------------------------------
def top_configs(trials: pd.DataFrame, mode: str, n: int = 10) -> pd.DataFrame:
    """The ``n`` best usable trials: rank, phase, trial id, status, objective, cost and parameters.

    The cost column is named by its unit, which fits the costliest of the rows
    shown (``cost (min)``, ``cost (GPU-h)``); values are in that unit.
    """
    _check_mode(mode)
    frame = _normalized(trials)
    column, _ = cost_axis(frame)
    usable = frame[_usable(frame)].sort_values("objective", ascending=(mode == "min"), kind="stable").head(n)
    unit = cost_unit(usable[column], gpu=column == "gpu_s")
    table = pd.DataFrame(
        {
            "rank": range(1, len(usable) + 1),
            "phase": [_phase_label(frame, p) for p in usable["phase"]],
            "trial_id": usable["trial_id"].astype(str).to_list() if "trial_id" in usable else [""] * len(usable),
            "status": usable["status"].to_list(),
            "objective": usable["objective"].to_list(),
            f"cost ({unit.short})": (usable[column] / unit.seconds).to_list(),
        }
    )
    for name in _params(frame):
        table[name] = usable[f"param.{name}"].to_list()
    return table


#: Characters a table may span before it is turned on its side: about a page's width at 8 pt.
TABLE_WIDTH_CHARS = 130
#: Column headers are wrapped into lines of at most this many characters.
HEADER_CHARS = 12
#: Row labels of a turned table are wrapped into lines of at most this many characters.
LABEL_CHARS = 26


def cell_text(value: Any) -> str:
    """A table cell: whole numbers under 1e6 as they are, other numbers to 4 significant digits."""
    if _is_number(value):
        value = float(value)
        if not math.isfinite(value):
            return ""
        if value == int(value) and abs(value) < 1e6:
            return str(int(value))
        return f"{value:.4g}"
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value)


def wrap_name(name: str, width: int = HEADER_CHARS) -> str:
    """``name`` in lines of at most ``width`` characters joined by newlines, broken after ``_ . / -`` where it can be."""
    lines, line = [], ""
    for piece in re.findall(r"[^_./-]*[_./-]?", str(name)):
        while len(piece) > width:  # a piece without separators longer than a line: cut it
            if line:
                lines.append(line)
                line = ""
            lines.append(piece[:width])
            piece = piece[width:]
        if len(line) + len(piece) > width:
            lines.append(line)
            line = ""
        line += piece
    if line:
        lines.append(line)
    return "\n".join(lines) or str(name)


def _text_width(text: str) -> int:
    return max((len(line) for line in text.split("\n")), default=0)


def fitted_tables(table: pd.DataFrame, width: int = TABLE_WIDTH_CHARS) -> list[pd.DataFrame]:
    """``table`` as text in parts that each fit ``width`` characters across (a page).

    Cells go through :func:`cell_text`; headers are wrapped by :func:`wrap_name`
    (newlines inside). A part's width counts each column as its widest line
    plus 2. When the table is wider than ``width`` it is turned on its side:
    one row per column of ``table``, its name (wrapped at :data:`LABEL_CHARS`)
    in the first column headed ``""``, and one column per row, named by the first
    column's values (``rank 1``, ``rank 2``, ...), so many parameters make a
    taller table, not a wider one. A turned table still too wide is split into
    parts of consecutive columns, each with the labels. Returns one part or more.
    """
    cells = pd.DataFrame({column: [cell_text(v) for v in table[column]] for column in table.columns}, dtype=object)
    cells.columns = [wrap_name(column) for column in table.columns]
    if table.empty or _table_width(cells) <= width:
        return [cells]
    first = table.columns[0]
    labels = pd.Series([wrap_name(column, LABEL_CHARS) for column in table.columns[1:]], dtype=object)
    values = [pd.Series(cells.iloc[i, 1:].to_list(), dtype=object) for i in range(len(cells))]
    names = [f"{first} {cell}" for cell in cells.iloc[:, 0]]
    # The fewest parts of about equal size (5 + 5 reads better than 7 + 3) that each fit.
    for count in range(1, len(names) + 1):
        parts = [
            pd.DataFrame({"": labels, **{names[i]: values[i].to_numpy() for i in group}}, dtype=object)
            for group in np.array_split(np.arange(len(names)), count)
        ]
        if all(_table_width(part) <= width for part in parts):
            break
    return parts


def _table_width(cells: pd.DataFrame) -> int:
    return sum(max([_text_width(str(h)), *(_text_width(c) for c in cells[h])]) + 2 for h in cells.columns)


def top_configs_table(trials: pd.DataFrame, mode: str, n: int = 10) -> Figure:
    """The top configs as a table figure that fits a page (see :func:`fitted_tables`)."""
    top = top_configs(trials, mode, n)
    if top.empty:
        return _empty(_new_figure(6, 1.5), "no trial with a usable objective yet")
    parts = fitted_tables(top)
    # Each part's height in text lines: its header and rows, each with some air.
    line_counts = [
        [max(str(h).count("\n") + 1 for h in part.columns)]
        + [max(cell.count("\n") + 1 for cell in row) for row in part.itertuples(index=False)]
        for part in parts
    ]
    heights = [sum(lines) + 0.7 * len(lines) for lines in line_counts]
    line_h, gap, title = 0.16, 0.25, 0.45  # inches: a line of 8 pt text, between parts, above them
    widths = [
        [max([_text_width(str(h)), *(_text_width(c) for c in part[h])]) + 2 for h in part.columns] for part in parts
    ]
    width_in = max(4.0, 0.3 + 0.068 * max(sum(w) for w in widths))
    height_in = title + line_h * sum(heights) + gap * len(parts)
    figure = _new_figure(width_in, height_in)
    figure.set_layout_engine("none")  # the tables are placed by hand, in inches
    top_in = height_in - title
    for part, lines, part_widths, part_height in zip(parts, line_counts, widths, heights):
        part_in = line_h * part_height
        ax = figure.add_axes((0.15 / width_in, (top_in - part_in) / height_in,
                              0.068 * sum(part_widths) / width_in, part_in / height_in))
        ax.axis("off")
        drawn = ax.table(cellText=part.to_numpy().tolist(), colLabels=list(part.columns), bbox=(0, 0, 1, 1),
                         cellLoc="center", colWidths=[w / sum(part_widths) for w in part_widths])
        drawn.auto_set_font_size(False)
        drawn.set_fontsize(8)
        for (row, column), cell in drawn.get_celld().items():
            cell.set_height((lines[row] + 0.7) / part_height)
            if row == 0:
                cell.set_facecolor("#f0f0f0")
            if column == 0 and part.columns[0] == "":
                cell.set_text_props(ha="left")
                cell.PAD = 0.03
        top_in -= part_in + gap
    figure.suptitle(f"Top {len(top)} configs ({mode} objective)", fontsize=11, y=1 - 0.12 / height_in, va="top")
    return figure


# ----------------------------------------------------------------------------
# trials on the edges of narrowed boxes
# ----------------------------------------------------------------------------
def box_edge_counts(
    trials: pd.DataFrame,
    parameters: Mapping[str, Mapping[str, Any]],
    boxes: Mapping[int, Mapping[str, Any]] | None = None,
) -> pd.DataFrame:
    """Per narrowed phase, how many of its trials sit on a free edge of its box (:func:`raysweep.narrowing.box_edges`).

    ``parameters`` is ``state.json``'s declared space; ``boxes`` (phase -> box,
    e.g. ``state.json``'s) fill in phases whose rows carry no ``narrow_box``.
    Columns ``phase``, ``parameter``, ``side`` (lower/upper), ``trials``
    (``7/10``: on the edge / the phase's trials); a narrowed phase with no trial
    on an edge has one row with ``parameter`` ``(none)``.
    """
    frame = _normalized(trials)
    space = _declared_space(parameters)
    phase_boxes = {int(p): parse_box(b) for p, b in (boxes or {}).items()}
    phase_boxes.update(narrowed_boxes(frame))
    rows = []
    for phase, parsed in sorted(phase_boxes.items()):
        box = _as_box(parsed, space)
        if box is None or not box.ranges:
            continue
        phase_rows = frame[frame["phase"] == phase]
        configs = [
            {name: row.get(f"param.{name}") for name in space.names} for row in phase_rows.to_dict("records")
        ]
        label = f"phase {_phase_label(frame, phase)}"
        edges = box_edges(space, box, configs)
        for edge in edges:
            rows.append({"phase": label, "parameter": edge.parameter, "side": edge.side,
                         "trials": f"{edge.trials}/{edge.total}"})
        if not edges:
            rows.append({"phase": label, "parameter": "(none)", "side": "", "trials": f"0/{len(configs)}"})
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


def _as_box(parsed: Mapping[str, Interval | Allowed], space: SearchSpace) -> Box | None:
    ranges = {n: (s.low, s.high) for n, s in parsed.items() if isinstance(s, Interval) and n in space.names}
    try:
        return Box(ranges=ranges)
    except ValueError:
        return None


# ----------------------------------------------------------------------------
# status counts
# ----------------------------------------------------------------------------
def status_counts(trials: pd.DataFrame) -> pd.DataFrame:
    """Trials per phase (rows) and status (columns, the known ones always present)."""
    frame = _normalized(trials)
    counts = pd.crosstab(frame["phase"], frame["status"]) if len(frame) else pd.DataFrame()
    known = list(STATUS_COLORS)
    columns = known + sorted(c for c in counts.columns if c not in known)
    counts = counts.reindex(columns=columns, fill_value=0)
    counts.index = [f"phase {_phase_label(frame, p)}" for p in counts.index]
    counts.index.name = "phase"
    counts.columns.name = None
    return counts.astype(int)


def failure_reasons(trials: pd.DataFrame, top: int = 3) -> pd.DataFrame:
    """Why trials failed: per phase, the ``top`` most frequent error texts and how many trials each ended.

    Columns ``phase``, ``trials``, ``error``; texts that differ only in their
    numbers count as one (:func:`raysweep.outcomes.failure_counts`).
    """
    frame = _normalized(trials)
    rows = []
    if len(frame) and "error" in frame:
        failed = frame[frame["status"] == TrialStatus.FAILED.value]
        for phase, group in failed.groupby("phase", sort=True):
            for count, error in failure_counts(group["error"].tolist(), top):
                rows.append({"phase": f"phase {_phase_label(frame, phase)}", "trials": count, "error": error})
    return pd.DataFrame(rows, columns=["phase", "trials", "error"])


def status_bars(trials: pd.DataFrame) -> Figure:
    """Trial statuses per phase as stacked bars."""
    counts = status_counts(trials)
    figure = _new_figure(max(5, 1.4 * len(counts) + 3), 4)
    if counts.empty:
        return _empty(figure, "no trials yet")
    ax = figure.add_subplot()
    bottom = np.zeros(len(counts))
    positions = np.arange(len(counts))
    for status in counts.columns:
        heights = counts[status].to_numpy()
        if not heights.any():
            continue
        ax.bar(positions, heights, bottom=bottom, color=STATUS_COLORS.get(status, "#9e9e9e"), label=status, width=0.6)
        bottom += heights
    ax.set_xticks(positions, list(counts.index))
    ax.set_ylabel("trials")
    ax.set_title("Trial status per phase")
    figure.legend(loc="outside right upper", fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return figure


# ----------------------------------------------------------------------------
def all_figures(
    trials: pd.DataFrame,
    mode: str,
    metric: str = "objective",
    log_params: Iterable[str] | None = None,
    boxes: Mapping[int, Mapping[str, Any]] | None = None,
    pow2_params: Iterable[str] | None = None,
) -> dict[str, Figure]:
    """The five views, by file stem: the report writes them, the notebook shows them."""
    return {
        "best_so_far": best_so_far(trials, mode, metric),
        "objective_vs_cost": objective_vs_cost(trials, mode, metric),
        "parameters": parameters_vs_objective(trials, mode, metric, log_params=log_params, boxes=boxes,
                                              pow2_params=pow2_params),
        "top_configs": top_configs_table(trials, mode),
        "status_counts": status_bars(trials),
    }
