"""Figures and tables of a sweep's results, drawn from the trials table alone.

Every view takes the trials DataFrame as ``pandas.read_parquet(run_dir /
"results/trials")`` returns it (``phase`` may arrive as a category) and returns
a matplotlib ``Figure`` on its own Agg canvas (no pyplot state, no backend
switch: scripts, reports and notebooks alike) or a DataFrame. Failed trials are
never plotted as objective values, though their cost counts; trials cut short
(ASHA, the time budget) get their own markers; costs are in the unit that fits
their magnitude (:mod:`raysweep.cost_units`). The modules, one concept each:

``frame``
    reading the table: normalised columns, usable rows, phase labels, the cost axis.
``drawing``
    what the views draw alike: the canvas, phase colours, status markers, legends.
``incumbent``
    the best objective so far against cumulative cost.
``pareto``
    each trial's objective against its cost, and the Pareto front.
``boxes``
    narrowed boxes: their stored forms, each phase's first and final box, trials on their edges, how
    the box moved.
``parameters``
    each parameter against the objective, on linear, log or power-of-two axes.
``tables``
    the top configs, and tables as text that fits a page.
``status``
    how trials ended per phase: counts, bars, failure reasons.

:func:`all_figures` gives the five figures the report writes and the notebook shows.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

import pandas as pd
from matplotlib.figure import Figure

from raysweep.figures.boxes import (
    Allowed,
    Interval,
    box_edge_counts,
    box_edge_lines,
    box_moves,
    final_boxes,
    narrowed_boxes,
    parse_box,
)
from raysweep.figures.frame import cost_axis
from raysweep.figures.incumbent import best_so_far
from raysweep.figures.parameters import log_scaled_parameters, parameters_vs_objective, pow2_parameters
from raysweep.figures.pareto import objective_vs_cost, pareto_front
from raysweep.figures.status import failure_reasons, status_bars, status_counts
from raysweep.figures.tables import (
    TABLE_WIDTH_CHARS,
    cell_text,
    fitted_tables,
    top_configs,
    top_configs_table,
    wrap_name,
)

__all__ = [
    "TABLE_WIDTH_CHARS",
    "Allowed",
    "Interval",
    "all_figures",
    "best_so_far",
    "box_edge_counts",
    "box_edge_lines",
    "box_moves",
    "cell_text",
    "cost_axis",
    "final_boxes",
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


def all_figures(
    trials: pd.DataFrame,
    mode: str,
    metric: str = "objective",
    log_params: Iterable[str] | None = None,
    boxes: Mapping[int, Mapping[str, Any]] | None = None,
    pow2_params: Iterable[str] | None = None,
    final: Mapping[int, Mapping[str, Any]] | None = None,
) -> dict[str, Figure]:
    """The five views, by file stem: the report writes them, the notebook shows them."""
    return {
        "best_so_far": best_so_far(trials, mode, metric),
        "objective_vs_cost": objective_vs_cost(trials, mode, metric),
        "parameters": parameters_vs_objective(trials, mode, metric, log_params=log_params, boxes=boxes,
                                              pow2_params=pow2_params, final=final),
        "top_configs": top_configs_table(trials, mode),
        "status_counts": status_bars(trials),
    }
