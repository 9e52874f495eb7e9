"""Each trial's objective against its own cost, and the Pareto front of the two."""

from __future__ import annotations

import math

import pandas as pd
from matplotlib.figure import Figure

from raysweep.figures.drawing import (
    LOG_SPAN,
    cost_label,
    legend_patch,
    new_figure,
    notice,
    phase_color,
    scatter_by_status,
    status_handles,
)
from raysweep.figures.frame import check_mode, cost_axis, is_usable, normalized, phase_label


def pareto_front(trials: pd.DataFrame, mode: str) -> pd.DataFrame:
    """Usable trials no other trial beats on both cost and objective, cheapest first."""
    check_mode(mode)
    frame = normalized(trials)
    column, _ = cost_axis(frame)
    usable = frame[is_usable(frame)]
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
    frame = normalized(trials)
    column, unit = cost_axis(frame)
    figure = new_figure(8, 4.5)
    usable = frame[is_usable(frame)]
    if usable.empty:
        return notice(figure, "no trial with a usable objective yet")
    ax = figure.add_subplot()
    handles, statuses = [], set()
    for phase in sorted(usable["phase"].unique()):
        rows = usable[usable["phase"] == phase]
        statuses |= scatter_by_status(ax, rows[column] / unit.seconds, rows, color=phase_color(phase), alpha=0.7, s=26)
        handles.append(legend_patch(phase_color(phase), f"phase {phase_label(frame, phase)}"))
    front = pareto_front(frame, mode)
    (line,) = ax.step(front[column] / unit.seconds, front["objective"], where="post", color="black", linewidth=1.5,
                      label=f"Pareto front ({len(front)})")
    ax.scatter(front[column] / unit.seconds, front["objective"], facecolors="none", edgecolors="black", s=60,
               linewidths=1.2)
    costs = usable[column][usable[column] > 0]
    if len(costs) and costs.min() > 0 and costs.max() / costs.min() > LOG_SPAN:
        ax.set_xscale("log")
    ax.set_xlabel(f"cost per trial, {cost_label(unit)}")
    ax.set_ylabel(f"{metric} ({'higher' if mode == 'max' else 'lower'} is better)")
    ax.set_title("Objective against cost")
    ax.grid(alpha=0.3)
    ax.legend(handles=handles + [line] + status_handles(statuses), loc="best", fontsize=8)
    return figure
