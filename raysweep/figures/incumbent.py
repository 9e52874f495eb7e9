"""The incumbent: the sweep's best objective so far against its cumulative cost."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from raysweep.figures.drawing import cost_label, new_figure, notice, phase_color, scatter_by_status, status_handles
from raysweep.figures.frame import check_mode, cost_axis, is_usable, normalized, phase_label


def _better(mode: str) -> np.ufunc:
    """The ufunc that keeps the better of two objectives (NaN loses), for ``accumulate``."""
    return np.fmax if mode == "max" else np.fmin


def best_so_far(trials: pd.DataFrame, mode: str, metric: str = "objective") -> Figure:
    """The sweep's best objective so far against its cumulative cost, one colour per phase.

    Trials are taken in phase order, then by end time. Every trial adds its
    cost (failed ones too); only usable trials can improve the best.
    """
    check_mode(mode)
    frame = normalized(trials)
    column, unit = cost_axis(frame, cumulative=True)
    figure = new_figure(8, 4.5)
    if not is_usable(frame).any():
        return notice(figure, "no trial with a usable objective yet")
    ax = figure.add_subplot()
    frame["cum_cost"] = frame[column].cumsum() / unit.seconds
    values = frame["objective"].where(is_usable(frame))
    frame["best"] = _better(mode).accumulate(values.to_numpy(dtype=float))
    previous: tuple[float, float] | None = None
    handles, statuses = [], set()
    for phase in sorted(frame["phase"].unique()):
        rows = frame[frame["phase"] == phase]
        color = phase_color(phase)
        x = rows["cum_cost"].to_list()
        y = rows["best"].to_list()
        if previous is not None:  # join the phase's line onto the one before
            x, y = [previous[0], *x], [previous[1], *y]
        (line,) = ax.step(x, y, where="post", color=color, linewidth=2, label=f"phase {phase_label(frame, phase)}")
        handles.append(line)
        usable = rows[is_usable(rows)]
        statuses |= scatter_by_status(ax, usable["cum_cost"], usable, color=color, alpha=0.5, s=18, linewidths=0)
        previous = (x[-1], y[-1])
        if phase != frame["phase"].max():
            ax.axvline(rows["cum_cost"].iloc[-1], color="#999999", linestyle=":", linewidth=1)
    ax.set_xlabel(f"cumulative {cost_label(unit)}")
    ax.set_ylabel(f"{metric} ({mode}; line = best so far)")
    ax.set_title("Best so far against cost")
    ax.grid(alpha=0.3)
    ax.legend(handles=handles + status_handles(statuses), loc="best", fontsize=8)
    return figure
