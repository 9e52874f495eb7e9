"""How trials ended, per phase: status counts, stacked status bars, the most frequent failure reasons."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from raysweep.figures.drawing import new_figure, notice
from raysweep.figures.frame import normalized, phase_label
from raysweep.outcomes import failure_counts
from raysweep.records import TrialStatus


#: Bar colours of the statuses, in stacking order.
STATUS_COLORS: dict[str, str] = {
    TrialStatus.COMPLETED.value: "#2e7d32",
    TrialStatus.EARLY_STOPPED.value: "#f9a825",
    TrialStatus.TIME_BUDGET.value: "#6a1b9a",
    TrialStatus.FAILED.value: "#c62828",
}


def status_counts(trials: pd.DataFrame) -> pd.DataFrame:
    """Trials per phase (rows) and status (columns, the known ones always present)."""
    frame = normalized(trials)
    counts = pd.crosstab(frame["phase"], frame["status"]) if len(frame) else pd.DataFrame()
    known = list(STATUS_COLORS)
    columns = known + sorted(c for c in counts.columns if c not in known)
    counts = counts.reindex(columns=columns, fill_value=0)
    counts.index = [f"phase {phase_label(frame, p)}" for p in counts.index]
    counts.index.name = "phase"
    counts.columns.name = None
    return counts.astype(int)


def failure_reasons(trials: pd.DataFrame, top: int = 3) -> pd.DataFrame:
    """Why trials failed: per phase, the ``top`` most frequent error texts and how many trials each ended.

    Columns ``phase``, ``trials``, ``error``; texts that differ only in their
    numbers count as one (:func:`raysweep.outcomes.failure_counts`).
    """
    frame = normalized(trials)
    rows = []
    if len(frame) and "error" in frame:
        failed = frame[frame["status"] == TrialStatus.FAILED.value]
        for phase, group in failed.groupby("phase", sort=True):
            for count, error in failure_counts(group["error"].tolist(), top):
                rows.append({"phase": f"phase {phase_label(frame, phase)}", "trials": count, "error": error})
    return pd.DataFrame(rows, columns=["phase", "trials", "error"])


def status_bars(trials: pd.DataFrame) -> Figure:
    """Trial statuses per phase as stacked bars."""
    counts = status_counts(trials)
    figure = new_figure(max(5, 1.4 * len(counts) + 3), 4)
    if counts.empty:
        return notice(figure, "no trials yet")
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
