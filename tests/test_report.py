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


def test_cost_axis_is_gpu_hours_only_when_gpus_were_used(trials):
    label = figures.best_so_far(trials, "max").axes[0].get_xlabel()
    assert (trials["gpu_s"] == 0).all() and label == "cumulative trial hours (wall clock; no GPUs used)"
    with_gpus = trials.assign(gpu_s=trials["cost_s"] * 2)
    assert figures.best_so_far(with_gpus, "max").axes[0].get_xlabel() == "cumulative GPU-hours"
    ax = figures.objective_vs_cost(with_gpus, "max").axes[0]
    assert ax.get_xlabel() == "cost per trial, GPU-hours"
    assert "GPU-hours" in figures.top_configs(with_gpus, "max").columns


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
