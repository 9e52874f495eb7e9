"""Figures of a sweep's results, drawn from the trials table alone.

Every function takes the trials DataFrame as ``pandas.read_parquet(run_dir /
"results/trials")`` returns it (``phase`` may arrive as a category) and
returns a matplotlib ``Figure`` (or, for the tables, a DataFrame too). The
figures are bare ``Figure`` objects on an Agg canvas: no pyplot state, no
global backend switch, so they work in scripts, reports and notebooks alike.

Failed trials are never plotted as objective values: they have no usable
objective (and cost is still counted where cost is the axis).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from raysweep.outcomes import failure_counts
from raysweep.records import TrialStatus
from raysweep.space import LOG_DISTRIBUTIONS

__all__ = [
    "Allowed",
    "Interval",
    "all_figures",
    "best_so_far",
    "cost_axis",
    "failure_reasons",
    "log_scaled_parameters",
    "narrowed_boxes",
    "objective_vs_cost",
    "parameters_vs_objective",
    "parse_box",
    "pareto_front",
    "status_bars",
    "status_counts",
    "top_configs",
    "top_configs_table",
]

#: Bar colours of the statuses, in stacking order.
STATUS_COLORS: dict[str, str] = {
    TrialStatus.COMPLETED.value: "#2e7d32",
    TrialStatus.EARLY_STOPPED.value: "#f9a825",
    TrialStatus.TIME_BUDGET.value: "#6a1b9a",
    TrialStatus.FAILED.value: "#c62828",
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


def cost_axis(trials: pd.DataFrame) -> tuple[str, str]:
    """The cost column to plot and its unit: GPU-hours, or trial hours when no GPU was used."""
    gpu = pd.to_numeric(trials["gpu_s"], errors="coerce").fillna(0) if "gpu_s" in trials else pd.Series(dtype=float)
    if len(gpu) and (gpu > 0).any():
        return "gpu_s", "GPU-hours"
    return "cost_s", "trial hours (wall clock; no GPUs used)"


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
    column, unit = cost_axis(frame)
    figure = _new_figure(8, 4.5)
    if not _usable(frame).any():
        return _empty(figure, "no trial with a usable objective yet")
    ax = figure.add_subplot()
    frame["cum_hours"] = frame[column].cumsum() / 3600.0
    values = frame["objective"].where(_usable(frame))
    frame["best"] = _better(mode).accumulate(values.to_numpy(dtype=float))
    previous: tuple[float, float] | None = None
    for phase in sorted(frame["phase"].unique()):
        rows = frame[frame["phase"] == phase]
        color = _phase_color(phase)
        x = rows["cum_hours"].to_list()
        y = rows["best"].to_list()
        if previous is not None:  # join the phase's line onto the one before
            x, y = [previous[0], *x], [previous[1], *y]
        ax.step(x, y, where="post", color=color, linewidth=2, label=f"phase {_phase_label(frame, phase)}")
        usable = rows[_usable(rows)]
        ax.scatter(usable["cum_hours"], usable["objective"], color=color, alpha=0.5, s=18, linewidths=0)
        previous = (x[-1], y[-1])
        if phase != frame["phase"].max():
            ax.axvline(rows["cum_hours"].iloc[-1], color="#999999", linestyle=":", linewidth=1)
    ax.set_xlabel(f"cumulative {unit}")
    ax.set_ylabel(f"{metric} ({mode}; line = best so far)")
    ax.set_title("Best so far against cost")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    return figure


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
    """Each usable trial's objective against its own cost; the Pareto front joined."""
    frame = _normalized(trials)
    column, unit = cost_axis(frame)
    figure = _new_figure(8, 4.5)
    usable = frame[_usable(frame)]
    if usable.empty:
        return _empty(figure, "no trial with a usable objective yet")
    ax = figure.add_subplot()
    for phase in sorted(usable["phase"].unique()):
        rows = usable[usable["phase"] == phase]
        ax.scatter(rows[column] / 3600.0, rows["objective"], color=_phase_color(phase), alpha=0.7, s=22,
                   label=f"phase {_phase_label(frame, phase)}")
    front = pareto_front(frame, mode)
    ax.step(front[column] / 3600.0, front["objective"], where="post", color="black", linewidth=1.5,
            label=f"Pareto front ({len(front)})")
    ax.scatter(front[column] / 3600.0, front["objective"], facecolors="none", edgecolors="black", s=60, linewidths=1.2)
    costs = usable[column][usable[column] > 0]
    if len(costs) and costs.min() > 0 and costs.max() / costs.min() > LOG_SPAN:
        ax.set_xscale("log")
    ax.set_xlabel(f"cost per trial, {unit}")
    ax.set_ylabel(f"{metric} ({'higher' if mode == 'max' else 'lower'} is better)")
    ax.set_title("Objective against cost")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
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


def _log_scaled(values: pd.Series) -> bool:
    values = values[np.isfinite(values)]
    return bool(len(values)) and values.min() > 0 and values.max() / values.min() > LOG_SPAN


def parameters_vs_objective(
    trials: pd.DataFrame,
    mode: str,
    metric: str = "objective",
    log_params: Iterable[str] | None = None,
    boxes: Mapping[int, Mapping[str, Any]] | None = None,
) -> Figure:
    """One panel per parameter: raw value against objective, each phase's narrowed box shaded.

    ``log_params`` names parameters declared on a log scale; without it a
    parameter gets a log axis when its values are all positive and span more
    than ``LOG_SPAN``. ``boxes`` (phase -> box) fills in phases whose rows
    carry no ``narrow_box``.
    """
    _check_mode(mode)
    frame = _normalized(trials)
    names = _params(frame)
    if not names:
        return _empty(_new_figure(6, 3), "the trials table has no param.* columns")
    phase_boxes = {int(p): parse_box(b) for p, b in (boxes or {}).items()}
    phase_boxes.update(narrowed_boxes(frame))
    declared_log = None if log_params is None else set(log_params)
    columns = min(3, len(names))
    rows_count = math.ceil(len(names) / columns)
    figure = _new_figure(4.2 * columns, 3.4 * rows_count)
    usable = frame[_usable(frame)]
    axes = figure.subplots(rows_count, columns, squeeze=False)
    for ax in axes.flat[len(names):]:
        ax.axis("off")
    for ax, name in zip(axes.flat, names):
        column = frame[f"param.{name}"]
        numeric = pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column)
        if numeric:
            _numeric_panel(ax, name, frame, usable, phase_boxes, declared_log)
        else:
            _choice_panel(ax, name, frame, usable, phase_boxes)
        ax.set_title(name)
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
    handles = [
        _legend_patch(_phase_color(p), f"phase {_phase_label(frame, p)}") for p in sorted(frame["phase"].unique())
    ]
    if phase_boxes:
        handles.append(_legend_patch("#bbbbbb", "shaded: narrowed box", alpha=0.4))
    figure.legend(handles=handles, loc="outside lower center", ncols=min(4, len(handles)), fontsize=8)
    figure.suptitle(f"Parameters against {metric} (failed trials left out)")
    return figure


def _legend_patch(color: str, label: str, alpha: float = 1.0):
    from matplotlib.patches import Patch

    return Patch(facecolor=color, alpha=alpha, label=label)


def _numeric_panel(ax, name, frame, usable, phase_boxes, declared_log) -> None:
    values = pd.to_numeric(frame[f"param.{name}"], errors="coerce").astype(float)
    log_axis = name in declared_log if declared_log is not None else _log_scaled(values)
    for phase in sorted(usable["phase"].unique()):
        rows = usable[usable["phase"] == phase]
        ax.scatter(rows[f"param.{name}"].astype(float), rows["objective"], color=_phase_color(phase), alpha=0.75, s=18)
    for phase, box in sorted(phase_boxes.items()):
        side = box.get(name)
        if isinstance(side, Interval):
            ax.axvspan(side.low, side.high, color=_phase_color(phase), alpha=0.12)
        elif isinstance(side, Allowed):
            for value in side.values:
                if _is_number(value):
                    ax.axvline(float(value), color=_phase_color(phase), alpha=0.3, linewidth=6)
    if log_axis and (values[np.isfinite(values)] > 0).all():
        ax.set_xscale("log")
        finite = values[np.isfinite(values)]
        if len(finite) and finite.max() / finite.min() < LOG_SPAN:
            # Under two decades the default labels every minor tick (2x10^0, 3x10^0, ...), overlapping.
            ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 3.0, 5.0)))
            ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
            ax.xaxis.set_minor_formatter(NullFormatter())


def _choice_panel(ax, name, frame, usable, phase_boxes) -> None:
    labels = sorted({str(v) for v in frame[f"param.{name}"].dropna()})
    position = {label: i for i, label in enumerate(labels)}
    jitter = np.random.default_rng(0)
    for phase in sorted(usable["phase"].unique()):
        rows = usable[usable["phase"] == phase]
        x = np.array([position.get(str(v), np.nan) for v in rows[f"param.{name}"]], dtype=float)
        x = x + jitter.uniform(-0.15, 0.15, size=len(x))
        ax.scatter(x, rows["objective"], color=_phase_color(phase), alpha=0.75, s=18)
    for phase, box in sorted(phase_boxes.items()):
        side = box.get(name)
        if isinstance(side, Allowed):
            for value in side.values:
                if str(value) in position:
                    spot = position[str(value)]
                    ax.axvspan(spot - 0.4, spot + 0.4, color=_phase_color(phase), alpha=0.12)
    ax.set_xticks(range(len(labels)), labels, rotation=30 if len(labels) > 4 else 0)
    ax.set_xlim(-0.6, len(labels) - 0.4)


# ----------------------------------------------------------------------------
# top configs
# ----------------------------------------------------------------------------
def top_configs(trials: pd.DataFrame, mode: str, n: int = 10) -> pd.DataFrame:
    """The ``n`` best usable trials: rank, phase, trial id, status, objective, cost and parameters."""
    _check_mode(mode)
    frame = _normalized(trials)
    column, unit = cost_axis(frame)
    usable = frame[_usable(frame)].sort_values("objective", ascending=(mode == "min"), kind="stable").head(n)
    table = pd.DataFrame(
        {
            "rank": range(1, len(usable) + 1),
            "phase": [_phase_label(frame, p) for p in usable["phase"]],
            "trial_id": usable["trial_id"].astype(str).to_list() if "trial_id" in usable else [""] * len(usable),
            "status": usable["status"].to_list(),
            "objective": usable["objective"].to_list(),
            "GPU-hours" if column == "gpu_s" else "trial hours": (usable[column] / 3600.0).to_list(),
        }
    )
    for name in _params(frame):
        table[name] = usable[f"param.{name}"].to_list()
    return table


def _cell(value: Any) -> str:
    if _is_number(value):
        value = float(value)
        if not math.isfinite(value):
            return ""
        if value == int(value) and abs(value) < 1e6:
            return str(int(value))
        return f"{value:.4g}"
    return "" if value is None else str(value)


def top_configs_table(trials: pd.DataFrame, mode: str, n: int = 10) -> Figure:
    """The top configs as a table figure."""
    table = top_configs(trials, mode, n)
    cells = [[_cell(v) for v in row] for row in table.itertuples(index=False)]
    # Width from the longest text per column, at about 0.07 inch per character of 8 pt text.
    widths = [max([len(str(label)), *(len(row[i]) for row in cells)]) for i, label in enumerate(table.columns)]
    figure = _new_figure(min(0.6 + sum(0.07 * w + 0.2 for w in widths), 20), 0.9 + 0.3 * max(len(table), 1))
    if table.empty:
        return _empty(figure, "no trial with a usable objective yet")
    ax = figure.add_subplot()
    ax.axis("off")
    drawn = ax.table(cellText=cells, colLabels=list(table.columns), loc="upper center", cellLoc="center")
    drawn.auto_set_font_size(False)
    drawn.set_fontsize(8)
    drawn.auto_set_column_width(list(range(len(table.columns))))
    ax.set_title(f"Top {len(table)} configs ({mode} objective)")
    return figure


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
) -> dict[str, Figure]:
    """The five views, by file stem: the report writes them, the notebook shows them."""
    return {
        "best_so_far": best_so_far(trials, mode, metric),
        "objective_vs_cost": objective_vs_cost(trials, mode, metric),
        "parameters": parameters_vs_objective(trials, mode, metric, log_params=log_params, boxes=boxes),
        "top_configs": top_configs_table(trials, mode),
        "status_counts": status_bars(trials),
    }
