"""What the views draw alike: figures on an Agg canvas, phase colours, status markers, legends.

A trial cut short (``early_stopped`` by ASHA, ``time_budget``) keeps its last
value but gets its own marker, so a reader tells it from a full run.
"""

from __future__ import annotations

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from raysweep.cost_units import CostUnit
from raysweep.records import TrialStatus


#: Markers of the statuses a plotted (usable) trial can have.
STATUS_MARKERS: dict[str, str] = {
    TrialStatus.COMPLETED.value: "o",
    TrialStatus.EARLY_STOPPED.value: "v",
    TrialStatus.TIME_BUDGET.value: "X",
}
#: Legend text of each marker.
STATUS_LABELS: dict[str, str] = {
    TrialStatus.COMPLETED.value: "completed",
    TrialStatus.EARLY_STOPPED.value: "stopped early (ASHA)",
    TrialStatus.TIME_BUDGET.value: "stopped by the time budget",
}
#: A parameter spanning more than this ratio (all values positive) gets a log axis.
LOG_SPAN = 100.0
#: Colours of the phases, phase 1 first.
PHASE_COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]


def phase_color(phase: int) -> str:
    """The colour of phase ``phase`` (counted from 1; the colours repeat after eight phases)."""
    return PHASE_COLORS[(phase - 1) % len(PHASE_COLORS)]


def cost_label(unit: CostUnit) -> str:
    """An axis label of costs in ``unit``, saying so when they are wall-clock seconds, not GPU time."""
    return unit.label + ("" if unit.gpu else " (wall clock; no GPUs used)")


def new_figure(width: float, height: float) -> Figure:
    """A ``Figure`` of ``width`` x ``height`` inches on its own Agg canvas (no pyplot state)."""
    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def notice(figure: Figure, text: str) -> Figure:
    """``figure`` with ``text`` alone in grey in its middle: the view has nothing to draw."""
    ax = figure.add_subplot()
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=12, color="#555555")
    return figure


def scatter_by_status(ax, x: pd.Series, rows: pd.DataFrame, color: str, y: str = "objective", **style) -> set[str]:
    """Scatter ``rows`` at ``x`` with one marker per status; return the statuses drawn.

    Each status's points are one collection whose ``gid`` is ``status:<status>``.
    """
    drawn = set()
    for status, group in rows.groupby("status", sort=True):
        ax.scatter(x.loc[group.index].astype(float), group[y].astype(float), color=color,
                   marker=STATUS_MARKERS.get(status, "o"), gid=f"status:{status}", **style)
        drawn.add(str(status))
    return drawn


def status_handles(statuses: set[str]) -> list[Line2D]:
    """Legend entries of the markers, when some trial drawn was cut short (else every point is a full run)."""
    if not statuses - {TrialStatus.COMPLETED.value}:
        return []
    return [
        Line2D([], [], linestyle="", marker=STATUS_MARKERS.get(status, "o"), color="#555555", markersize=6,
               label=STATUS_LABELS.get(status, status))
        for status in STATUS_MARKERS
        if status in statuses
    ]


def legend_patch(color: str, label: str, alpha: float = 1.0) -> Patch:
    """A legend entry of a filled colour."""
    return Patch(facecolor=color, alpha=alpha, label=label)
