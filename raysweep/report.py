"""A run directory's report: the figures as PNG files and one self-contained HTML page.

Reads only the run directory (``results/trials`` and ``state.json``) and
writes ``<run_dir>/report/``: one PNG per view of :mod:`raysweep.figures` and
``index.html``, which embeds those PNGs as base64 and needs nothing else
(no scripts, stylesheets or links outside the page). Every file is written to
a temporary name and renamed (on an object store: uploaded in one piece), so
each file of a report is replaced whole or not at all. The run directory may
be a cloud URI (:mod:`raysweep.storage`).
"""

from __future__ import annotations

import base64
import html
import io
import math
import os
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from raysweep import figures
from raysweep.cost_units import cost_unit
from raysweep.errors import UserError
from raysweep.narrowing import EDGE_TOLERANCE
from raysweep.state import SweepState, read_state
from raysweep.storage import StoragePath, arrow_location, as_path, write_bytes_atomically

__all__ = ["REPORT_DIR", "write_report"]

REPORT_DIR = "report"
PAGE = "index.html"
_DPI = 110
_CAPTIONS = {
    "best_so_far": "Best objective so far against cumulative cost, phase by phase.",
    "objective_vs_cost": "Each trial's objective against its cost; the black line is the Pareto front. "
    "Markers: circle completed, triangle stopped early by ASHA, cross stopped by the time budget.",
    "parameters": "Each parameter against the objective; shaded: the phase's narrowed box (where it moved: the first "
    "box shaded, the final one hatched). "
    "Markers: circle completed, triangle stopped early by ASHA, cross stopped by the time budget.",
    "top_configs": "The ten best configs (numbers to 4 significant digits).",
    "status_counts": "How the trials of each phase ended.",
}


def write_report(run_dir: "str | os.PathLike[str] | StoragePath") -> StoragePath:
    """Write the report of a run directory; return the path of its HTML page."""
    run_dir = as_path(run_dir)
    trials = read_trials(run_dir)
    state = read_state(run_dir)
    if state is None:
        raise UserError(
            f"{run_dir} has results but no state.json, so the sweep's metric and mode are unknown; "
            "report on the run directory the sweep wrote"
        )
    log_params = figures.log_scaled_parameters(state.parameters)
    pow2_params = figures.pow2_parameters(state.parameters)
    boxes = {phase.index: phase.box for phase in state.phases if phase.box}
    final = {phase.index: phase.final_box for phase in state.phases if phase.final_box}
    views = figures.all_figures(trials, state.mode, state.metric, log_params=log_params, boxes=boxes,
                                pow2_params=pow2_params, final=final)

    out = run_dir / REPORT_DIR
    out.mkdir(parents=True, exist_ok=True)
    images: dict[str, bytes] = {}
    for stem, figure in views.items():
        images[stem] = _png(figure)
        _write_bytes(out / f"{stem}.png", images[stem])
    page = out / PAGE
    _write_bytes(page, render_page(state, trials, images).encode("utf-8"))
    return page


def read_trials(run_dir: StoragePath) -> pd.DataFrame:
    """The committed trials of a run directory, or a UserError saying there are none."""
    trials_dir = run_dir / "results" / "trials"
    if not any(trials_dir.glob("phase=*/*.parquet")):
        what = "is not a directory" if not run_dir.is_dir() else "holds no results (no results/trials/phase=*/*.parquet)"
        raise UserError(
            f"{run_dir} {what}; give the run directory of a sweep with at least one finished phase "
            "(run one with: python -m raysweep run EXPERIMENT.yaml)"
        )
    frames = []
    # Phase by phase rather than as one dataset: a dataset takes its columns from one file,
    # and a phase written before a column existed (e.g. narrow_box) must not hide it.
    for path in sorted(trials_dir.glob("phase=*/*.parquet")):
        try:
            where, filesystem = arrow_location(path)
            frame = pq.read_table(where, partitioning=None, filesystem=filesystem).to_pandas()
            frame["phase"] = int(path.parent.name.split("=", 1)[1])
        except Exception as exc:  # a damaged file is the user's to look at, not a traceback
            raise UserError(f"cannot read {path} ({type(exc).__name__}: {exc})") from None
        frames.append(frame)
    trials = pd.concat(frames, ignore_index=True, sort=False)
    if trials.empty:
        raise UserError(f"{run_dir} holds no finished trials yet; report again once a phase has finished")
    return trials


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=_DPI)
    return buffer.getvalue()


def _write_bytes(path: StoragePath, data: bytes) -> None:
    write_bytes_atomically(path, data)


# ----------------------------------------------------------------------------
# the page
# ----------------------------------------------------------------------------
_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; padding: 0 1em; }
h1 { font-size: 1.5em; } h2 { font-size: 1.15em; margin-top: 2em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th { background: #f3f3f3; }
td.text, th.text { text-align: left; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 0.85em; color: #555; }
.muted { color: #666; }
.scroll { overflow-x: auto; }
"""


def render_page(state: SweepState, trials: pd.DataFrame, images: dict[str, bytes]) -> str:
    """The report as one HTML document; ``images`` maps figure stems to PNG bytes."""
    best = figures.top_configs(trials, state.mode, 1)
    top = figures.top_configs(trials, state.mode, 10)
    counts = figures.status_counts(trials)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>raysweep report: {_e(state.sweep)}</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>raysweep report: {_e(state.sweep)}</h1>",
        f"<p>{len(trials)} trials in {trials['phase'].nunique()} phase(s); objective: "
        f"<b>{_e(state.mode)} {_e(state.metric)}</b>.</p>",
    ]
    if not best.empty:
        row = best.iloc[0]
        names = [c[len("param."):] for c in trials.columns if c.startswith("param.")]
        params = ", ".join(f"{_e(name)}={_e(_fmt(row[name]))}" for name in names)
        parts.append(
            f"<p>Best: <b>{_e(_fmt(row['objective']))}</b> by trial {_e(row['trial_id'])} "
            f"(phase {_e(row['phase'])}, {_e(row['status'])}): {params}</p>"
        )
    else:
        parts.append('<p class="muted">No trial has a usable objective yet.</p>')
    parts += ["<h2>Phases</h2>", _phase_table(state)]
    parts.append("<h2>Top 10 configs</h2>")
    parts += [_table(part) for part in figures.fitted_tables(top)]
    parts += ["<h2>Trial status counts</h2>", _table(counts.reset_index())]
    reasons = figures.failure_reasons(trials)
    if not reasons.empty:
        parts += ["<h2>Why trials failed</h2>", _table(reasons)]
    parts.append("<h2>Figures</h2>")
    for stem, data in images.items():
        encoded = base64.b64encode(data).decode("ascii")
        caption = _CAPTIONS.get(stem, stem)
        parts.append(
            f'<figure><img alt="{_e(stem)}" src="data:image/png;base64,{encoded}">'
            f"<figcaption>{_e(caption)}</figcaption></figure>"
        )
        if stem == "parameters":
            parts += _box_edges(state, trials)
            parts += _box_moves(state, trials)
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _phase_table(state: SweepState) -> str:
    """One row per phase; costs in one unit that fits the costliest phase (GPU- units beside when GPUs were held)."""
    wall = cost_unit([phase.cost_s for phase in state.phases])
    gpu = cost_unit([phase.gpu_s for phase in state.phases], gpu=True)
    held_gpus = any(phase.gpu_s > 0 for phase in state.phases)
    rows = []
    for phase in state.phases:
        best = phase.best or {}
        row = {
            "phase": phase.index,
            "name": phase.name,
            "searcher": phase.searcher,
            "status": phase.status,
            "trials": f"{phase.trials_done}/{phase.trials_planned}",
            "best": best.get("objective"),
            f"cost ({wall.short})": wall.of(phase.cost_s),
        }
        if held_gpus:
            row[f"cost ({gpu.short})"] = gpu.of(phase.gpu_s)
        row["narrowed box"] = _box_text(phase.box)
        rows.append(row)
    return _table(pd.DataFrame(rows))


def _box_edges(state: SweepState, trials: pd.DataFrame) -> list[str]:
    """The table of trials on a free edge of their phase's box, under the parameters figure (nothing when no phase narrowed)."""
    boxes = {phase.index: phase.box for phase in state.phases if phase.box}
    counts = figures.box_edge_counts(trials, state.parameters, boxes)
    if counts.empty:
        return []
    return [
        f"<p>Trials on an edge of their phase's narrowed box (within {EDGE_TOLERANCE:.0%} of its width, in the "
        "parameter's own scale; edges at a declared bound left out). Many on one edge suggest the best values lie "
        "beyond it.</p>",
        _table(counts),
    ]


def _box_moves(state: SweepState, trials: pd.DataFrame) -> list[str]:
    """The table of how each narrowed phase's box moved (raysweep.trust_region), under the box edges."""
    phases = {p.index: {"box": p.box, "final_box": p.final_box, "box_moves": p.box_moves} for p in state.phases if p.box}
    moves = figures.box_moves(trials, state.parameters, phases)
    if moves.empty:
        return []
    return [
        "<p>How each narrowed box moved while its phase ran: it grows on a side where a trial near that edge "
        "beat the best inside the box, and shrinks around the best after repeated failures.</p>",
        _table(moves),
    ]


def _box_text(box: Any) -> str:
    parsed = figures.parse_box(box) if box else {}
    if not parsed:
        return ""
    sides = []
    for name, side in parsed.items():
        if isinstance(side, figures.Interval):
            sides.append(f"{name} in [{_fmt(side.low)}, {_fmt(side.high)}]")
        else:
            sides.append(f"{name} in {{{', '.join(_fmt(v) for v in side.values)}}}")
    return "; ".join(sides)


def _table(frame: pd.DataFrame) -> str:
    """An HTML table; newlines in headers and cells (wrapped names) become line breaks."""
    if frame.empty:
        return '<p class="muted">none</p>'
    columns = list(frame.columns)
    aligns = [_align(frame.iloc[:, i]) for i in range(len(columns))]
    header = "".join(f'<th class="{a}">{_lines(c)}</th>' for c, a in zip(columns, aligns))
    body = []
    for row in frame.itertuples(index=False):
        cells = "".join(f'<td class="{a}">{_lines(_fmt(v))}</td>' for a, v in zip(aligns, row))
        body.append(f"<tr>{cells}</tr>")
    return f'<div class="scroll"><table><thead><tr>{header}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'


def _lines(text: Any) -> str:
    return "<br>".join(_e(line) for line in str(text).split("\n"))


def _align(column: pd.Series) -> str:
    """``num`` (right-aligned) for numbers, and for text columns whose every cell spells one (a fitted table)."""
    if pd.api.types.is_bool_dtype(column):
        return "text"
    if pd.api.types.is_numeric_dtype(column):
        return "num"
    texts = [str(v) for v in column if v is not None and str(v) != ""]
    return "num" if texts and all(_spells_number(t) for t in texts) else "text"


def _spells_number(text: str) -> bool:
    try:
        float(text.replace(",", ""))
    except ValueError:
        return False
    return True


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, (int, float)) or hasattr(value, "item"):
        try:
            number = float(value)
        except (TypeError, ValueError):
            return str(value)
        if not math.isfinite(number):
            return ""
        if number == int(number) and abs(number) < 1e6:
            return str(int(number))
        return f"{number:.4g}"
    return str(value)


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)
