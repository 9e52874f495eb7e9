"""The figures and tables of raysweep.figures on trials tables built by hand (real matplotlib, no Ray)."""

from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from raysweep import figures

LONG_NAMES = [
    "learning_rate_schedule_initial_value", "generalized_advantage_lambda", "entropy_coefficient_final",
    "value_function_loss_coefficient", "clip_range_for_policy_updates", "minibatch_size_per_gradient_step",
    "total_environment_timesteps", "max_gradient_norm", "target_kl_divergence_threshold", "activation_function",
]


def _trials(statuses, cost_s=2.0, gpu_s=0.0, **params) -> pd.DataFrame:
    n = len(statuses)
    frame = pd.DataFrame(
        {
            "phase": [1 + (i >= n // 2) for i in range(n)],
            "phase_name": ["explore" if i < n // 2 else "refine" for i in range(n)],
            "trial_id": [f"t{i:02d}" for i in range(n)],
            "status": statuses,
            "objective": np.linspace(1.0, 2.0, n),
            "cost_s": cost_s,
            "gpu_s": gpu_s,
            "ended_at": np.arange(n, dtype=float),
        }
    )
    for name, values in params.items():
        frame[f"param.{name}"] = values
    return frame


def _points_by_status(figure) -> dict[str, int]:
    """How many points each status's collections draw, from their ``status:<s>`` gids."""
    counts: dict[str, int] = {}
    for ax in figure.axes:
        for collection in ax.collections:
            gid = collection.get_gid() or ""
            if gid.startswith("status:"):
                status = gid.split(":", 1)[1]
                counts[status] = counts.get(status, 0) + len(collection.get_offsets())
    return counts


def _legend_texts(figure) -> list[str]:
    legends = [*figure.legends, *(ax.get_legend() for ax in figure.axes if ax.get_legend())]
    return [text.get_text() for legend in legends for text in legend.get_texts()]


# ----------------------------------------------------------------------------
# cost units
# ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "cost_s, gpu, cumulative, per_trial, column",
    [
        (2.0, 0, "trial seconds (wall clock; no GPUs used)", "trial seconds (wall clock; no GPUs used)", "cost (s)"),
        (600.0, 0, "trial minutes (wall clock; no GPUs used)", "trial minutes (wall clock; no GPUs used)", "cost (min)"),
        (1800.0, 0, "trial hours (wall clock; no GPUs used)", "trial minutes (wall clock; no GPUs used)", "cost (min)"),
        (3 * 3600.0, 0, "trial hours (wall clock; no GPUs used)", "trial hours (wall clock; no GPUs used)", "cost (h)"),
        (2.0, 2, "GPU-seconds", "GPU-seconds", "cost (GPU-s)"),
        (3 * 3600.0, 4, "GPU-hours", "GPU-hours", "cost (GPU-h)"),
    ],
)
def test_every_view_shows_cost_in_the_unit_that_fits(cost_s, gpu, cumulative, per_trial, column):
    trials = _trials(["completed"] * 6, cost_s=cost_s, gpu_s=cost_s * gpu, x=np.linspace(0, 1, 6))
    best = figures.best_so_far(trials, "max").axes[0]
    assert best.get_xlabel() == f"cumulative {cumulative}"
    unit = figures.cost_axis(trials, cumulative=True)[1]
    total = 6 * cost_s * (gpu or 1) / unit.seconds
    assert max(max(line.get_xdata()) for line in best.lines) == pytest.approx(total)  # plotted in that unit
    assert figures.objective_vs_cost(trials, "max").axes[0].get_xlabel() == f"cost per trial, {per_trial}"
    top = figures.top_configs(trials, "max")
    assert column in top.columns
    assert top[column].iloc[0] == pytest.approx(cost_s * (gpu or 1) / figures.cost_axis(trials)[1].seconds)


# ----------------------------------------------------------------------------
# trials cut short
# ----------------------------------------------------------------------------
STATUSES = ["completed", "early_stopped", "time_budget", "failed", "completed", "time_budget", "early_stopped", "completed"]


def test_trials_stopped_by_asha_or_the_time_budget_get_their_own_markers_and_legend_entries():
    trials = _trials(STATUSES, x=np.linspace(0, 1, 8), act=["tanh", "relu"] * 4)
    expected = {"completed": 3, "early_stopped": 2, "time_budget": 2}  # failed trials are not plotted
    for figure in (figures.objective_vs_cost(trials, "max"), figures.best_so_far(trials, "max")):
        assert _points_by_status(figure) == expected
        assert {"completed", "stopped early (ASHA)", "stopped by the time budget"} <= set(_legend_texts(figure))
    panels = figures.parameters_vs_objective(trials, "max")
    assert _points_by_status(panels) == {status: 2 * count for status, count in expected.items()}  # x and act
    assert {"stopped early (ASHA)", "stopped by the time budget"} <= set(_legend_texts(panels))
    markers = {}
    for collection in panels.axes[0].collections:
        path = collection.get_paths()[0]
        markers[collection.get_gid()] = path.vertices.round(6).tobytes()
    assert len(set(markers.values())) == 3  # three different marker shapes

    full_runs = _trials(["completed"] * 4, x=np.linspace(0, 1, 4))
    texts = _legend_texts(figures.objective_vs_cost(full_runs, "max"))
    assert not {"completed", "stopped early (ASHA)", "stopped by the time budget"} & set(texts)  # nothing to tell apart


# ----------------------------------------------------------------------------
# pow2 axes
# ----------------------------------------------------------------------------
def _x_ticks(ax) -> tuple[list[float], list[str]]:
    ax.figure.canvas.draw()
    low, high = sorted(ax.get_xlim())
    ticks = [t for t in ax.get_xticks() if low <= t <= high]
    labels = [label.get_text() for label in ax.get_xticklabels() if low <= label.get_position()[0] <= high]
    return ticks, labels


def test_pow2_parameters_get_a_log2_axis_ticked_at_powers_of_two():
    trials = _trials(["completed"] * 6, batch_size=[64, 128, 256, 256, 512, 1024], lr=[1e-4, 1e-3, 1e-2] * 2)
    for kwargs in ({"pow2_params": ["batch_size"], "log_params": ["batch_size", "lr"]}, {}):  # declared, or guessed
        figure = figures.parameters_vs_objective(trials, "max", **kwargs)
        panels = {ax.get_title(): ax for ax in figure.axes if ax.get_title()}
        ticks, labels = _x_ticks(panels["batch_size"])
        assert panels["batch_size"].get_xscale() == "log"
        assert ticks == [64, 128, 256, 512, 1024] and labels == ["64", "128", "256", "512", "1024"]
        if kwargs:  # a log parameter that is not pow2 keeps base 10
            assert panels["lr"].get_xscale() == "log" and panels["lr"].xaxis.get_transform().base == 10

    wide = _trials(["completed"] * 4, tokens=[2, 2**6, 2**12, 2**20])
    ticks, labels = _x_ticks(figures.parameters_vs_objective(wide, "max", pow2_params=["tokens"]).axes[0])
    assert len(ticks) <= 7 and all(np.log2(t) % 1 == 0 for t in ticks)
    assert labels[0] == "2" and labels[-1] in ("$2^{17}$", "$2^{18}$", "$2^{19}$", "$2^{20}$")
    assert figures.pow2_parameters({"b": {"distribution": "pow2"}, "lr": {"distribution": "log_uniform"}}) == ["b"]


# ----------------------------------------------------------------------------
# the top-10 table
# ----------------------------------------------------------------------------
def _long_named_trials() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    params = {name: rng.uniform(0, 1, 12) * 10.0 ** (3 - i) / 7 for i, name in enumerate(LONG_NAMES[:-1])}
    params["minibatch_size_per_gradient_step"] = 2 ** rng.integers(4, 11, 12)
    params["activation_function"] = rng.choice(["tanh", "relu", "leaky_relu"], 12)
    trials = _trials(["completed"] * 12, **params)
    trials["trial_id"] = [f"a0733_{i:05d}" for i in range(12)]  # Tune's length of id
    return trials


def test_a_table_that_fits_keeps_its_shape_with_headers_wrapped_and_numbers_rounded():
    trials = _trials(["completed"] * 3, learning_rate=[1.234567e-4, 0.1, 3.0], n=[1, 2, 1234567])
    parts = figures.fitted_tables(figures.top_configs(trials, "max"))
    assert len(parts) == 1
    table = parts[0]
    assert list(table.columns) == ["rank", "phase", "trial_id", "status", "objective", "cost (s)", "learning_\nrate", "n"]
    assert list(table["learning_\nrate"]) == ["3", "0.1", "0.0001235"] and list(table["n"]) == ["1.235e+06", "2", "1"]
    assert figures.wrap_name("clip_range_for_policy_updates") == "clip_range_\nfor_policy_\nupdates"
    assert figures.wrap_name("averyveryverylongname") == "averyveryver\nylongname"
    assert figures.cell_text(0.123456789) == "0.1235" and figures.cell_text(None) == "" and figures.cell_text("relu") == "relu"


def test_the_top_ten_of_many_long_named_parameters_is_turned_and_split_to_fit_the_page():
    top = figures.top_configs(_long_named_trials(), "max")
    parts = figures.fitted_tables(top)
    assert len(parts) == 2  # 10 ranks do not fit across next to long labels: 5 + 5
    for part in parts:
        assert sum(max(len(line) for text in [h, *part[h]] for line in str(text).split("\n")) + 2 for h in part.columns) \
            <= figures.TABLE_WIDTH_CHARS
        assert part.columns[0] == "" and len(part) == len(top.columns) - 1
    assert list(parts[0].columns[1:]) == [f"rank {i}" for i in range(1, 6)]
    assert list(parts[1].columns[1:]) == [f"rank {i}" for i in range(6, 11)]
    labels = list(parts[0][""])
    assert labels[:5] == ["phase", "trial_id", "status", "objective", "cost (s)"]
    assert "learning_rate_schedule_\ninitial_value" in labels and "activation_function" in labels
    values = parts[0].set_index("")["rank 1"]
    best = top.iloc[0]
    assert values["entropy_coefficient_final"] == f"{best['entropy_coefficient_final']:.4g}"

    # the rendered figure: about a page wide, tall enough for every row
    figure = figures.top_configs_table(_long_named_trials(), "max")
    width, height = figure.get_size_inches()
    assert width <= 11 and height > 8
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    with Image.open(io.BytesIO(buffer.getvalue())) as image:
        assert image.width <= 11 * 110
    tables = [artist for ax in figure.axes for artist in ax.tables]
    assert len(tables) == 2
    for table in tables:  # every cell lies inside the figure
        figure.canvas.draw()
        renderer = figure.canvas.get_renderer()
        box = table.get_window_extent(renderer)
        assert box.x0 >= 0 and box.y0 >= 0 and box.x1 <= width * figure.dpi + 1 and box.y1 <= height * figure.dpi + 1


# ----------------------------------------------------------------------------
# box edges
# ----------------------------------------------------------------------------
def test_box_edge_counts_per_narrowed_phase():
    parameters = {
        "x": {"distribution": "uniform", "min": 0.0, "max": 1.0},
        "b": {"distribution": "pow2", "min": 16, "max": 1024},
        "act": {"distribution": "choice", "values": ["tanh", "relu"]},
    }
    box = {"ranges": {"x": [0.2, 0.6], "b": [64, 1024]}, "choices": {"act": ["relu"]}}
    trials = _trials(["completed"] * 8, x=[0.1, 0.3, 0.5, 0.7, 0.6, 0.599, 0.2, 0.4], b=[16, 32, 64, 128, 64, 1024, 256, 1024],
                     act=["relu"] * 8)
    trials["narrow_box"] = [None] * 4 + [json.dumps(box)] * 4  # phase 2 narrowed, as the sink writes it
    counts = figures.box_edge_counts(trials, parameters)
    # phase 2 (x 0.6, 0.599, 0.2, 0.4; b 64, 1024, 256, 1024): 1024 is the declared bound, not an edge
    assert counts.to_dict("records") == [
        {"phase": "phase 2 refine", "parameter": "x", "side": "lower", "trials": "1/4"},
        {"phase": "phase 2 refine", "parameter": "x", "side": "upper", "trials": "2/4"},
        {"phase": "phase 2 refine", "parameter": "b", "side": "lower", "trials": "1/4"},
    ]
    assert figures.box_edge_lines(trials, parameters) == [
        "phase 2 refine: box edges: x lower 1/4, x upper 2/4, b lower 1/4"
    ]
    # a box known only from state.json (rows without narrow_box) counts the same
    assert figures.box_edge_counts(trials.drop(columns="narrow_box"), parameters, {2: box}).equals(counts)
    inside = {"ranges": {"x": [0.0, 0.9]}}
    assert figures.box_edge_lines(trials.drop(columns="narrow_box"), parameters, {1: inside}) == [
        "phase 1 explore: box edges: no trial on an edge (of 4)"
    ]
    assert figures.box_edge_counts(trials.drop(columns="narrow_box"), parameters).empty


# ----------------------------------------------------------------------------
# a box that moved during its phase (raysweep.trust_region)
# ----------------------------------------------------------------------------
def _moving_box_trials():
    parameters = {"x": {"distribution": "uniform", "min": 0.0, "max": 1.0},
                  "lr": {"distribution": "log_uniform", "min": 1e-4, "max": 1e-2}}
    first = {"ranges": {"x": [0.2, 0.3], "lr": [1e-4, 1e-2]}, "choices": {}}
    grown = {"ranges": {"x": [0.2, 0.45], "lr": [1e-4, 1e-2]}, "choices": {}}
    trials = _trials(["completed"] * 6, x=[0.1, 0.5, 0.9, 0.3, 0.3, 0.45], lr=[1e-3] * 6)
    trials["started_at"] = trials["ended_at"]
    # phase 2's trials, as the recorder writes them: each with the box it was generated in
    trials["narrow_box"] = [None] * 3 + [json.dumps(first), json.dumps(grown), json.dumps(grown)]
    return parameters, first, grown, trials


def test_box_edges_are_counted_against_each_trial_s_own_box():
    parameters, _, _, trials = _moving_box_trials()
    # 0.3 is the first box's upper edge but inside the grown one; 0.45 is the grown box's upper edge
    assert figures.box_edge_lines(trials, parameters) == ["phase 2 refine: box edges: x upper 2/3"]


def test_how_each_box_moved_as_a_table():
    parameters, first, grown, trials = _moving_box_trials()
    phases = {2: {"box": first, "final_box": grown, "box_moves": {"growths": 2, "shrinks": 0}}}
    assert figures.box_moves(trials, parameters, phases).to_dict("records") == [
        {"phase": "phase 2 refine", "parameter": "x", "first box": "[0.2, 0.3]", "final box": "[0.2, 0.45]",
         "growths": 2, "shrinks": 0}
    ]
    # without final_box (a running phase) the latest-started trial's box stands in, counts unknown
    running = figures.box_moves(trials, parameters, {2: {"box": first}}).to_dict("records")
    assert running == [{"phase": "phase 2 refine", "parameter": "x", "first box": "[0.2, 0.3]",
                        "final box": "[0.2, 0.45]", "growths": "", "shrinks": ""}]
    still = figures.box_moves(trials, parameters, {2: {"box": first, "final_box": first, "box_moves": {"growths": 0,
                                                                                                       "shrinks": 0}}})
    assert still["parameter"].tolist() == ["(none)"]
    assert figures.box_moves(trials, parameters, {}).empty


def test_the_parameters_figure_hatches_the_final_box_over_the_first():
    from matplotlib.patches import Rectangle

    parameters, first, grown, trials = _moving_box_trials()
    figure = figures.parameters_vs_objective(trials, "max", log_params=["lr"], final={2: grown})
    panel = next(ax for ax in figure.axes if ax.get_title() == "x")
    spans = [(round(p.get_x(), 9), round(p.get_x() + p.get_width(), 9), bool(p.get_hatch()))
             for p in panel.patches if isinstance(p, Rectangle) and p.get_height() > 0]
    assert spans == [(0.2, 0.3, False), (0.2, 0.45, True)]
    assert "hatched: final box" in _legend_texts(figure) and "shaded: first narrowed box" in _legend_texts(figure)
    lr_panel = next(ax for ax in figure.axes if ax.get_title() == "lr")
    assert not any(p.get_hatch() for p in lr_panel.patches)  # lr's range did not move


def test_a_null_choice_value_has_its_own_column_in_the_parameter_panel():
    frame = pd.DataFrame({"phase": [1, 1, 1, 2], "status": ["completed"] * 4, "objective": [1.0, 2.0, 3.0, 4.0],
                          "cost_s": [1.0] * 4, "trial_id": list("abcd"), "param.max_grad_norm": ["0.5", None, "1.0", None]})
    ax = figures.parameters_vs_objective(frame, "max").axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0.5", "1.0", "null"]
    assert sum(len(points.get_offsets()) for points in ax.collections) == 4  # every trial drawn, the nulls too
