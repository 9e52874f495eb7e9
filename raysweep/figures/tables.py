"""The top configs as a table, and tables as text that fits a page (turned on their side, split)."""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from raysweep.cost_units import cost_unit
from raysweep.figures.drawing import new_figure, notice
from raysweep.figures.frame import check_mode, cost_axis, is_number, is_usable, normalized, param_names, phase_label


def top_configs(trials: pd.DataFrame, mode: str, n: int = 10) -> pd.DataFrame:
    """The ``n`` best usable trials: rank, phase, trial id, status, objective, cost, fidelity reached
    (when recorded) and parameters.

    The cost column is named by its unit, which fits the costliest of the rows
    shown (``cost (min)``, ``cost (GPU-h)``); values are in that unit.
    """
    check_mode(mode)
    frame = normalized(trials)
    column, _ = cost_axis(frame)
    usable = frame[is_usable(frame)].sort_values("objective", ascending=(mode == "min"), kind="stable").head(n)
    unit = cost_unit(usable[column], gpu=column == "gpu_s")
    table = pd.DataFrame(
        {
            "rank": range(1, len(usable) + 1),
            "phase": [phase_label(frame, p) for p in usable["phase"]],
            "trial_id": usable["trial_id"].astype(str).to_list() if "trial_id" in usable else [""] * len(usable),
            "status": usable["status"].to_list(),
            "objective": usable["objective"].to_list(),
            f"cost ({unit.short})": (usable[column] / unit.seconds).to_list(),
        }
    )
    if "fidelity" in usable and usable["fidelity"].notna().any():
        table["fidelity"] = usable["fidelity"].to_list()  # how far each run got: a cut-short run is not a full one
    for name in param_names(frame):
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
    if is_number(value):
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
    """Characters across ``text``'s widest line."""
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
    """Characters across a table of text cells: each column's widest line, header included, plus 2."""
    return sum(max([_text_width(str(h)), *(_text_width(c) for c in cells[h])]) + 2 for h in cells.columns)


def top_configs_table(trials: pd.DataFrame, mode: str, n: int = 10) -> Figure:
    """The top configs as a table figure that fits a page (see :func:`fitted_tables`)."""
    top = top_configs(trials, mode, n)
    if top.empty:
        return notice(new_figure(6, 1.5), "no trial with a usable objective yet")
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
    figure = new_figure(width_in, height_in)
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
