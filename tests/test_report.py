"""The report (and the figures it draws) on the results of a real small sweep."""

from __future__ import annotations

import base64
import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from matplotlib.patches import Rectangle
from PIL import Image

from raysweep import figures, sweep
from raysweep.errors import UserError
from raysweep.narrowing import Box
from raysweep.report import write_report
from raysweep.spec import load_experiment
from tests.conftest import synthetic_experiment

STEMS = ("best_so_far", "objective_vs_cost", "parameters", "top_configs", "status_counts")


@pytest.fixture(scope="module")
def run_dir(ray_local, tmp_path_factory) -> Path:
    """Two phases (grid, random) of the synthetic trainable, some trials failing."""
    root = tmp_path_factory.mktemp("report")
    data = synthetic_experiment(
        name="report_sweep",
        budget=12,
        storage=str(root / "run"),
        parameters={
            "x": {"distribution": "uniform", "min": 0.0, "max": 1.0},
            "lr": {"distribution": "log_uniform", "min": 1e-5, "max": 1e-1},
            "fail": {"distribution": "choice", "values": ["no", "raise", "nan"]},
        },
        phases=[
            {"name": "explore", "searcher": "grid", "share": 0.5, "grid_resolution": 2, "max_trial_time": "30s"},
            {"name": "refine", "searcher": "random", "share": 0.5, "max_trial_time": "30s"},
        ],
    )
    path = root / "exp.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return sweep.run(load_experiment(path)).run_dir


@pytest.fixture
def trials(run_dir) -> pd.DataFrame:
    return pd.read_parquet(run_dir / "results" / "trials")


class _Tables(HTMLParser):
    """The text of every table of a page: a list of tables, each a list of rows."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append("".join(self._cell))
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def _plotted_y(figure) -> np.ndarray:
    """Every y value a figure draws as a line or a point."""
    values = []
    for ax in figure.axes:
        for line in ax.lines:
            values.append(np.asarray(line.get_ydata(), dtype=float))
        for collection in ax.collections:
            offsets = np.asarray(collection.get_offsets(), dtype=float)
            if offsets.size:
                values.append(offsets[:, 1])
    return np.concatenate(values) if values else np.array([])


# ----------------------------------------------------------------------------
def test_report_writes_valid_pngs_and_one_self_contained_page(run_dir, trials):
    page = write_report(run_dir)
    assert page == run_dir / "report" / "index.html"
    text = page.read_text()
    for stem in STEMS:
        png = run_dir / "report" / f"{stem}.png"
        data = png.read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n")
        with Image.open(png) as image:
            image.verify()
        with Image.open(png) as image:
            assert image.format == "PNG" and image.width >= 300 and image.height >= 150
        assert f"data:image/png;base64,{base64.b64encode(data).decode()}" in text  # the same image, embedded

    # self-contained: every src/href is an embedded image; nothing to fetch
    references = re.findall(r"""(?:src|href)\s*=\s*["']([^"']*)""", text, flags=re.I)
    assert len(references) == len(STEMS) and all(r.startswith("data:image/png;base64,") for r in references)
    without_images = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", text)
    for external in ("http:", "https:", "//", "<script", "<link", "<iframe", "@import", "url("):
        assert external not in without_images.lower()

    tables = _Tables()
    tables.feed(text)
    phases, top, counts, reasons = tables.tables
    assert [row[1] for row in phases[1:]] == ["explore", "refine"]
    usable = trials[trials["status"] != "failed"].sort_values("objective", ascending=False)
    header, *rows = top
    assert [row[header.index("trial_id")] for row in rows] == list(usable["trial_id"].head(10))
    assert "failed" not in {row[header.index("status")] for row in rows}
    header, *rows = counts
    by_phase = trials.assign(phase=trials["phase"].astype(int)).groupby(["phase", "status"]).size()
    for row in rows:
        phase = int(row[0].split()[1])  # "phase 1 explore"
        for status in ("completed", "failed"):
            assert int(row[header.index(status)]) == by_phase.get((phase, status), 0)

    header, *rows = reasons  # why trials failed: one row per distinct reason and phase
    assert header == ["phase", "trials", "error"]
    assert sum(int(row[1]) for row in rows) == int((trials["status"] == "failed").sum())

    again = write_report(run_dir)  # a report is replaced whole
    assert again == page and not list((run_dir / "report").glob(".*tmp"))


def test_failed_trials_are_never_plotted_as_objective_values(trials):
    poisoned = trials.copy()
    assert (poisoned["status"] == "failed").any()
    poisoned.loc[poisoned["status"] == "failed", "objective"] = 1e6  # a value a failed row must not show
    for figure in (
        figures.best_so_far(poisoned, "max"),
        figures.objective_vs_cost(poisoned, "max"),
        figures.parameters_vs_objective(poisoned, "max"),
    ):
        plotted = _plotted_y(figure)
        assert plotted.size and not np.any(plotted == 1e6)
    assert 1e6 not in set(figures.top_configs(poisoned, "max")["objective"])
    assert figures.pareto_front(poisoned, "max")["status"].ne("failed").all()


def test_cost_is_shown_in_the_unit_that_fits_gpu_units_only_when_gpus_were_used(run_dir, trials):
    label = figures.best_so_far(trials, "max").axes[0].get_xlabel()
    assert (trials["gpu_s"] == 0).all() and (trials["cost_s"] < 60).all()  # short synthetic trials
    assert label == "cumulative trial seconds (wall clock; no GPUs used)"
    assert "cost (s)" in figures.top_configs(trials, "max").columns
    with_gpus = trials.assign(cost_s=3600.0, gpu_s=2 * 3600.0)
    assert figures.best_so_far(with_gpus, "max").axes[0].get_xlabel() == "cumulative GPU-hours"
    ax = figures.objective_vs_cost(with_gpus, "max").axes[0]
    assert ax.get_xlabel() == "cost per trial, GPU-hours"
    assert "cost (GPU-h)" in figures.top_configs(with_gpus, "max").columns
    tables = _Tables()
    tables.feed(write_report(run_dir).read_text())
    phases = tables.tables[0]
    assert "cost (s)" in phases[0] and not any("GPU" in header for header in phases[0])


def test_narrowed_box_is_shaded_and_log_scale_parameters_get_a_log_axis(run_dir, tmp_path):
    narrowed = tmp_path / "narrowed"
    shutil.copytree(run_dir, narrowed, ignore=shutil.ignore_patterns("report"))
    box = Box(ranges={"x": (0.2, 0.6), "lr": (1e-4, 1e-2)}, choices={"fail": ("no",)}).to_dict()
    for phase, value in ((1, None), (2, json.dumps(box))):  # as the sink writes a narrowed phase 2
        part = narrowed / "results" / "trials" / f"phase={phase}" / "part-0.parquet"
        table = pq.read_table(part, partitioning=None)
        pq.write_table(table.append_column("narrow_box", pa.array([value] * table.num_rows, pa.string())), part)
    trials = pd.read_parquet(narrowed / "results" / "trials")

    assert figures.narrowed_boxes(trials) == {
        2: {"x": figures.Interval(0.2, 0.6), "lr": figures.Interval(1e-4, 1e-2), "fail": figures.Allowed(("no",))}
    }
    figure = figures.parameters_vs_objective(trials, "max", log_params=["lr"])
    panels = {ax.get_title(): ax for ax in figure.axes if ax.get_title()}
    assert panels["lr"].get_xscale() == "log" and panels["x"].get_xscale() == "linear"

    def spans(ax):
        return [
            (round(p.get_x(), 9), round(p.get_x() + p.get_width(), 9))
            for p in ax.patches
            if isinstance(p, Rectangle) and p.get_height() > 0
        ]

    assert spans(panels["x"]) == [(0.2, 0.6)]
    assert spans(panels["lr"]) == [(1e-4, 1e-2)]
    assert len(spans(panels["fail"])) == 1  # one category shaded
    # without declared scales, a positive parameter spanning four decades still gets a log axis
    guessed = figures.parameters_vs_objective(trials, "max")
    assert {ax.get_title(): ax.get_xscale() for ax in guessed.axes if ax.get_title()}["lr"] == "log"
    assert write_report(narrowed).is_file()


def test_box_shapes_are_read_defensively():
    expected = {"x": figures.Interval(0.2, 0.6), "act": figures.Allowed(("relu",))}
    assert figures.parse_box('{"ranges": {"x": [0.6, 0.2]}, "choices": {"act": ["relu"]}}') == expected
    assert figures.parse_box({"x": [0.2, 0.6], "act": ["relu"]}) == expected
    assert figures.parse_box({"box": {"x": {"lo": 0.2, "hi": 0.6}, "act": {"values": ["relu"]}}}) == expected
    assert figures.parse_box({"ranges": {"x": [1, 2]}, "choices": {"n": [16, 32]}})["n"] == figures.Allowed((16, 32))
    for unreadable in (None, float("nan"), "not json", "[1, 2]", {"x": None}):
        assert figures.parse_box(unreadable) == {}


def test_pareto_front_in_both_modes():
    frame = pd.DataFrame(
        {
            "phase": [1, 1, 1, 2, 2],
            "trial_id": list("abcde"),
            "status": ["completed", "completed", "failed", "time_budget", "completed"],
            "objective": [1.0, 3.0, None, 2.0, 0.5],
            "cost_s": [10.0, 30.0, 1.0, 20.0, 5.0],
            "gpu_s": [0.0] * 5,
        }
    )
    assert list(figures.pareto_front(frame, "max")["trial_id"]) == ["e", "a", "d", "b"]
    assert list(figures.pareto_front(frame, "min")["trial_id"]) == ["e"]
    with pytest.raises(ValueError, match=r"mode must be max or min, but got 'best'"):
        figures.pareto_front(frame, "best")


def test_no_results_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match=r"nowhere is not a directory; give the run directory of a sweep"):
        write_report(tmp_path / "nowhere")
    (tmp_path / "empty" / "results" / "trials").mkdir(parents=True)
    with pytest.raises(UserError, match=r"empty holds no results \(no results/trials/phase=\*/\*\.parquet\)"):
        write_report(tmp_path / "empty")


def test_the_report_says_why_trials_failed_per_phase(run_dir, trials):
    reasons = figures.failure_reasons(trials)
    failed = trials[trials["status"] == "failed"]
    assert reasons["trials"].sum() == len(failed) and len(failed) > 0  # two reasons: raised, NaN
    assert set(reasons["error"]) == {"RuntimeError: synthetic failure", "trial reported score=nan, which is not a finite number"}
    assert list(reasons.columns) == ["phase", "trials", "error"] and reasons["phase"].str.startswith("phase ").all()
    page = write_report(run_dir).read_text()
    assert "<h2>Why trials failed</h2>" in page and "trial reported score=nan, which is not a finite number" in page
    assert figures.failure_reasons(trials[trials["status"] != "failed"]).empty


# ----------------------------------------------------------------------------
# a narrowed sweep over many long-named parameters, some trials cut short
# ----------------------------------------------------------------------------
LONG_PARAMETERS = {
    "x": {"distribution": "uniform", "min": 0.0, "max": 1.0},
    "lr": {"distribution": "log_uniform", "min": 1e-5, "max": 1e-1},
    "sleep": {"distribution": "choice", "values": [0.0, 3.0]},  # 4 reports x 3 s: past the 4 s budget
    "minibatch_size_per_gradient_step": {"distribution": "pow2", "min": 16, "max": 1024},
    "total_environment_timesteps": {"distribution": "int_log_uniform", "min": 20000, "max": 2000000},
    "value_function_loss_coefficient": {"distribution": "uniform", "min": 0.1, "max": 1.0},
    "entropy_bonus_coefficient_final": {"distribution": "log_uniform", "min": 1e-6, "max": 1e-2},
    "discount_factor_gamma": {"distribution": "logit_normal", "min": 0.9, "max": 0.9999},
    "generalized_advantage_lambda": {"distribution": "uniform", "min": 0.8, "max": 0.99},
    "policy_network_activation_function": {"distribution": "choice", "values": ["tanh", "relu", "leaky_relu"]},
}


@pytest.fixture(scope="module")
def narrowed_run_dir(ray_local, tmp_path_factory) -> Path:
    """Random phase (trials that sleep hit the time budget), then an Ax phase narrowed around the best."""
    root = tmp_path_factory.mktemp("narrowed")
    data = synthetic_experiment(
        name="narrowed_sweep",
        storage=str(root / "run"),
        parameters=LONG_PARAMETERS,
        phases=[
            {"name": "explore", "searcher": "random", "trials": 6, "max_trial_time": "4s"},
            {"name": "refine", "searcher": "ax", "trials": 4, "random_samples": 4, "max_trial_time": "4s",
             "narrow": {"top_fraction": 0.5, "min_top": 2, "std_multiplier": 0.5}},
        ],
    )
    data.pop("budget")
    path = root / "exp.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return sweep.run(load_experiment(path)).run_dir


def test_report_of_a_narrowed_sweep_with_many_long_parameter_names(narrowed_run_dir, capsys):
    from raysweep import cli
    from raysweep.narrowing import Box, box_edges_per_trial, describe_box_edges
    from raysweep.space import Parameter, SearchSpace
    from raysweep.state import read_state
    from raysweep.trust_region import describe_box_moves

    trials = pd.read_parquet(narrowed_run_dir / "results" / "trials")
    trials["phase"] = trials["phase"].astype(int)
    state = read_state(narrowed_run_dir)
    refine = trials[trials["phase"] == 2]
    # each trial's row holds the box it was generated in (the box may move during the phase)
    boxes = [Box.from_dict(json.loads(text)) for text in refine["narrow_box"]]
    assert Box.from_dict(state.phase(2).box) in boxes

    # trials on their box's edges: a pow2 parameter's ends are legal values, so the count can be checked exactly
    name = "minibatch_size_per_gradient_step"
    expected = {"lower": 0, "upper": 0}
    for box, value in zip(boxes, refine[f"param.{name}"]):
        lo, hi = box.ranges[name]
        expected["lower"] += int(value == lo and lo != 16)
        expected["upper"] += int(value == hi and hi != 1024)
    space = SearchSpace(tuple(Parameter(n, s["distribution"], min=s.get("min"), max=s.get("max"),
                                        values=tuple(s.get("values", ()))) for n, s in LONG_PARAMETERS.items()))
    configs = [{n: row[f"param.{n}"] for n in LONG_PARAMETERS} for _, row in refine.iterrows()]
    edges = box_edges_per_trial(space, list(zip(boxes, configs)))
    assert {e.side: e.trials for e in edges if e.parameter == name} == {k: v for k, v in expected.items() if v}
    line = describe_box_edges(edges, len(refine))
    moved = describe_box_moves(Box.from_dict(state.phase(2).box), Box.from_dict(state.phase(2).final_box),
                               state.phase(2).box_moves)

    assert cli.main(["status", str(narrowed_run_dir)]) == 0
    out = capsys.readouterr().out.splitlines()
    phase_lines = [text for text in out if text.startswith("  phase ")]
    assert re.search(r"cost \d[\d.]* s \[completed \d, time_budget \d\]$", phase_lines[0]), phase_lines[0]
    assert out.count(f"      {line}") == 1  # one line for the one narrowed phase
    assert sum(text.strip().startswith("box edges:") for text in out) == 1
    assert out.count(f"      {moved}") == 1  # how the box moved, once

    page = write_report(narrowed_run_dir).read_text()
    tables = _Tables()
    tables.feed(page)
    top_parts = [t for t in tables.tables if t[0] and t[0][0] == "" and t[0][1].startswith("rank ")]
    assert [t[0][1:] for t in top_parts] == [[f"rank {i}" for i in range(1, 6)], [f"rank {i}" for i in range(6, 11)]]
    labels = [row[0] for row in top_parts[0][1:]]
    assert "minibatch_size_per_\ngradient_step" not in labels and "minibatch_size_per_gradient_step" in labels
    edge_table = next(t for t in tables.tables if t[0] == ["phase", "parameter", "side", "trials"])
    assert [f"{r[1]} {r[2]} {r[3]}" for r in edge_table[1:]] == (
        [f"{e.parameter} {e.side} {e.trials}/{e.total}" for e in edges] or ["(none)  0/4"]
    )
    assert page.index("<h2>Figures</h2>") < page.index('alt="parameters"') < page.index("narrowed box (within 1%")
    moves_table = next(t for t in tables.tables if t[0][:4] == ["phase", "parameter", "first box", "final box"])
    assert moves_table[0][4:] == ["growths", "shrinks"] and len(moves_table) >= 2
    assert {row[4:] == [str(state.phase(2).box_moves["growths"]), str(state.phase(2).box_moves["shrinks"])]
            for row in moves_table[1:]} == {True}

    # the figures: time-budget trials marked, the pow2 axis ticked at powers of two
    stopped = int((trials["status"] == "time_budget").sum())
    assert stopped >= 1  # sleep=3.0 is drawn in phase 1 (seeded), and runs past the budget
    views = figures.all_figures(trials, "max", "score", log_params=figures.log_scaled_parameters(state.parameters),
                                boxes={2: state.phase(2).box}, pow2_params=figures.pow2_parameters(state.parameters))
    for stem in ("objective_vs_cost", "parameters"):
        marked = sum(len(c.get_offsets()) for ax in views[stem].axes for c in ax.collections
                     if c.get_gid() == "status:time_budget")
        assert marked == stopped * (1 if stem == "objective_vs_cost" else len(LONG_PARAMETERS))
    panel = next(ax for ax in views["parameters"].axes if ax.get_title() == name)
    views["parameters"].canvas.draw()
    shown = [label.get_text() for label in panel.get_xticklabels()
             if min(panel.get_xlim()) <= label.get_position()[0] <= max(panel.get_xlim())]
    assert shown and all(text.isdigit() and (int(text) & (int(text) - 1)) == 0 for text in shown)
