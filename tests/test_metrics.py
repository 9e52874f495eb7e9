"""What a report may hold: the number rule and flattening as pure logic, then whole
sweeps on a real local Ray whose trainables report the way real training code does."""

from __future__ import annotations

import fractions
import io
import math
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from raysweep import metrics, sweep
from raysweep.spec import load_experiment
from tests.conftest import ROOT, assert_consistent_results

FEW_DIGITS = 10**400


# ----------------------------------------------------------------------------
# the number rule
# ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "number"),
    [
        (3, 3),
        (0.25, 0.25),
        (np.float32(0.5), 0.5),
        (np.float64(0.125), 0.125),
        (np.int64(7), 7),
        (np.uint8(200), 200),
        (np.array(2.5), 2.5),
        (np.array(4), 4),
        (fractions.Fraction(1, 4), 0.25),
        ("0.17", 0.17),
        (" 3 ", 3),
        ("1e-3", 0.001),
        (2**70, float(2**70)),  # an int beyond 64 bits that a float still holds
        (-(2**70), -float(2**70)),
    ],
)
def test_numbers_become_python_numbers_and_integers_stay_integers(value, number):
    result = metrics.to_number(value)
    assert result == number and type(result) is type(number)


def test_torch_scalars_are_numbers():
    torch = pytest.importorskip("torch")
    assert metrics.to_number(torch.tensor(0.5)) == 0.5
    assert metrics.to_number(torch.tensor(3)) == 3 and isinstance(metrics.to_number(torch.tensor(3)), int)
    assert metrics.to_number(torch.tensor(1.5, dtype=torch.bfloat16)) == 1.5
    with pytest.raises(metrics.NotANumber, match=r"^an array of shape \(2,\)"):
        metrics.to_number(torch.tensor([1.0, 2.0]))


@pytest.mark.parametrize(
    ("value", "why"),
    [
        (True, "a boolean"),
        (np.bool_(False), "a boolean"),
        (None, "None"),
        ({"a": 1.0}, "a dict"),
        ([1.0], "a list"),
        ("abc", "a string that is not a number"),
        ("", "a string that is not a number"),
        (FEW_DIGITS, "an integer too large for a float"),
        (np.array([1.0]), r"an array of shape \(1,\) \(report a scalar, e.g. with .item\(\)\)"),
        (object(), "an object"),
    ],
)
def test_anything_else_is_not_a_number_and_says_what_it_is(value, why):
    with pytest.raises(metrics.NotANumber, match=f"^{why}$"):
        metrics.to_number(value)


def test_nan_and_infinities_are_numbers_that_no_objective_takes():
    assert math.isnan(metrics.to_number(float("nan"))) and metrics.to_number("inf") == math.inf
    report = metrics.read({"score": float("nan"), "loss": float("inf")}, "score")
    assert report.objective is None and report.problem == "trial reported score=nan, which is not a finite number"
    assert report.values["loss"] == math.inf  # other values stay as reported


def test_nested_results_flatten_as_tune_flattens_them():
    from ray.tune.utils import flatten_dict

    result = {"env_runners": {"episode_return_mean": 1.5, "module": {"loss": 0.1}}, "step": 2, "empty": {}, "seq": [1, 2]}
    assert metrics.flatten(result) == flatten_dict(result)
    assert metrics.flatten(metrics.flatten(result)) == metrics.flatten(result)
    report = metrics.read(result, "env_runners/episode_return_mean")
    assert report.objective == 1.5 and report.problem is None
    assert report.values == {"env_runners/episode_return_mean": 1.5, "env_runners/module/loss": 0.1, "step": 2}


def test_a_report_is_read_the_same_nested_or_flattened():
    result = {"score": {"a": 1.0}, "training_iteration": 4, "time_total_s": 2.5, "config": {"x": 0.5}, "done": False}
    nested, flat = metrics.read(result, "score"), metrics.read(metrics.flatten(result), "score")
    assert nested == flat
    assert nested.problem == "trial reported score={'a': 1.0}, which is not a number (a dict)"
    assert (nested.iteration, nested.time_s, nested.names) == (4, 2.5, ("score/a",))  # Tune's keys are not the trainable's


def test_a_report_without_the_metric_is_no_problem_and_null_means_absent():
    assert metrics.read({"loss": 0.5}, "score") == metrics.Report(metric="score", values={"loss": 0.5}, names=("loss",))
    assert not metrics.read({"score": None}, "score").has_metric


def test_a_metric_named_like_a_tune_key_is_taken_as_the_result_holds_it():
    report = metrics.read({"timesteps_total": 4000, "training_iteration": 3, "time_total_s": 1.0}, "timesteps_total")
    assert report.objective == 4000.0 and report.values == {"timesteps_total": 4000}
    assert metrics.read({"training_iteration": 3}, "training_iteration").objective == 3.0


def test_problems_name_the_metric_and_a_short_value():
    problem = metrics.read({"score": FEW_DIGITS}, "score").problem
    assert problem.startswith("trial reported score=1000") and problem.endswith(
        "..., which is not a number (an integer too large for a float)"
    )
    assert len(problem) < 200


def test_integers_no_float_holds_are_defused_before_tune_averages_them():
    result = {"a": FEW_DIGITS, "b": {"c": -FEW_DIGITS, "d": 2**70}, "e": 1}
    metrics.defuse_huge_integers(result)
    assert result == {"a": "<an integer of 401 digits>", "b": {"c": "<an integer of 401 digits>", "d": 2**70}, "e": 1}


# ----------------------------------------------------------------------------
# whole sweeps
# ----------------------------------------------------------------------------
def _experiment(write_experiment, name: str, trainable: str, parameters: dict, phases: list, **fields):
    data = {
        "name": name,
        "trainable": trainable,
        "metric": "score",
        "mode": "max",
        "parameters": parameters,
        "phases": phases,
        "wandb": {"mode": "disabled"},
    }
    data.update(fields)
    return load_experiment(write_experiment(data, name=f"{name}.yaml"))


def _read(run_dir: Path, kind: str) -> pd.DataFrame:
    return pd.read_parquet(run_dir / "results" / kind)


X = {"distribution": "uniform", "min": 0.0, "max": 1.0}


def test_a_nested_metric_is_found_by_its_flattened_name_in_every_phase(ray_local, write_experiment):
    """Case report-nested-metric: RLlib's layout, metric env_runners/episode_return_mean."""
    experiment = _experiment(
        write_experiment, "nested", "tests.trainables.reports:nested", {"x": X},
        [{"name": "explore", "searcher": "random", "trials": 3, "max_trial_time": "30s"},
         {"name": "exploit", "searcher": "ax", "trials": 3, "random_samples": 1, "max_trial_time": "30s"}],
        metric="env_runners/episode_return_mean",
    )
    result = sweep.run(experiment, stream=io.StringIO())
    trials = assert_consistent_results(result.run_dir, {1: 3, 2: 3})
    assert (trials["status"] == "completed").all()
    expected = [1.0 - (x - 0.3) ** 2 for x in trials["param.x"]]  # the value of the last report
    assert list(trials["objective"]) == pytest.approx(expected)
    assert list(trials["metric.env_runners/episode_return_mean"]) == pytest.approx(expected)
    assert (trials["metric.env_runners/episode_len_mean"] == 30.0).all() and (trials["metric.step"] == 3).all()
    assert result.best is not None and result.best.objective == pytest.approx(max(expected))
    progress = _read(result.run_dir, "progress")
    assert len(progress) == 18 and progress["metric.env_runners/episode_return_mean"].notna().all()


KINDS = ["numpy", "array0d", "torch", "string", "bool", "huge", "dict", "list", "array"]


def test_one_number_rule_for_numpy_torch_strings_and_values_that_are_no_number(ray_local, write_experiment, capsys):
    """Case report-numpy-scalar, and every other kind of value a metric may arrive as."""
    experiment = _experiment(
        write_experiment, "typed", "tests.trainables.reports:typed",
        {"kind": {"distribution": "choice", "values": KINDS}, "x": X},
        [{"name": "explore", "searcher": "grid", "trials": len(KINDS), "grid_resolution": 2, "max_trial_time": "60s"}],
    )
    result = sweep.run(experiment, stream=io.StringIO())
    trials = assert_consistent_results(result.run_dir, {1: len(KINDS)}).set_index("param.kind")
    numbers = trials.loc[["numpy", "array0d", "torch", "string"]]
    assert (numbers["status"] == "completed").all()
    expected = [1.0 - (x - 0.3) ** 2 for x in numbers["param.x"]]
    assert list(numbers["objective"]) == pytest.approx(expected, rel=1e-6)  # float32 for numpy
    assert list(numbers["metric.score"]) == pytest.approx(expected, rel=1e-6)
    errors = trials["error"]
    assert (trials.loc[["bool", "huge", "dict", "list", "array"], "status"] == "failed").all()
    assert errors["bool"] == "trial reported score=True, which is not a number (a boolean)"
    assert errors["huge"].startswith("trial reported score=1000") and errors["huge"].endswith("(an integer too large for a float)")
    assert errors["dict"].startswith("trial reported score={'a': ") and errors["dict"].endswith("which is not a number (a dict)")
    assert errors["list"].endswith("which is not a number (a list)")
    assert "which is not a number (an array of shape (2,)" in errors["array"]
    assert trials.loc[["bool", "huge", "dict", "list", "array"], "objective"].isna().all()
    # a trial with a value that is no number stops at that report
    assert (trials.loc[["bool", "huge", "list", "array"], "iterations"] == 1).all()

    # integer metrics stay integers; values that are no number (a huge int, a flag) are left out
    columns = pq.read_schema(next((result.run_dir / "results" / "trials").rglob("*.parquet")))
    assert str(columns.field("metric.epoch").type) == "int64" and str(columns.field("metric.score").type) == "double"
    assert (numbers["metric.epoch"] == 3).all()
    assert not [c for c in trials.columns if "huge_count" in c or "flag" in c]
    progress = _read(result.run_dir, "progress")
    assert progress.groupby("trial_id").size().max() == 3 and str(progress["metric.epoch"].dtype) == "int64"

    # status names why trials failed, by reason
    from raysweep.cli import main

    capsys.readouterr()
    assert main(["status", str(result.run_dir)]) == 0
    out = capsys.readouterr().out
    shown = [line.strip().removeprefix("failed 1x: ") for line in out.splitlines() if line.strip().startswith("failed ")]
    assert len(shown) == 3  # the top three reasons; five tie at one trial each, so which three depends on the order they ended
    failed = [error for error in errors.dropna()]
    assert all(any(error.startswith(line) for error in failed) for line in shown), shown


def test_a_metric_reported_every_few_iterations_and_a_time_attr_never_reported(ray_local, write_experiment):
    """The objective is the metric's last reported value; ASHA and the Ax searcher skip reports
    without it; a time_attr the trainable never reports is said once per phase."""
    asha = {"type": "asha", "time_attr": "epoch", "grace_period": 1, "max_t": 10}
    experiment = _experiment(
        write_experiment, "sparse", "tests.trainables.reports:every_third", {"x": X},
        [{"name": "explore", "searcher": "random", "trials": 3, "max_trial_time": "60s", "early_stopping": asha},
         {"name": "exploit", "searcher": "ax", "trials": 2, "random_samples": 1, "max_trial_time": "60s",
          "early_stopping": {**asha, "time_attr": "training_iteration", "max_t": 7}}],
    )
    stream = io.StringIO()
    result = sweep.run(experiment, stream=stream)
    trials = assert_consistent_results(result.run_dir, {1: 3, 2: 2})
    assert set(trials["status"]) <= {"completed", "early_stopped"}
    phase1 = trials[trials["phase"] == 1]
    assert (phase1["status"] == "completed").all() and (phase1["iterations"] == 7).all()
    # reported at iterations 3 and 6; the last report (iteration 7) has no score
    assert list(phase1["objective"]) == pytest.approx([2 * (1.0 - (x - 0.3) ** 2) / 3 for x in phase1["param.x"]])
    assert list(phase1["metric.loss"]) == pytest.approx([1 / 7] * 3)
    progress = _read(result.run_dir, "progress")
    rows = progress[progress["trial_id"].isin(phase1["trial_id"])]
    assert len(rows) == 21 and rows["metric.score"].notna().sum() == 6
    assert trials[trials["phase"] == 2]["objective"].notna().all()  # Ax got its observations

    warnings = [line for line in stream.getvalue().splitlines() if "warning" in line]
    assert len(warnings) == 1, stream.getvalue()
    assert warnings[0].startswith("[explore] warning: early_stopping.time_attr 'epoch' has no number in the report of trial ")
    assert "which held: loss (and Tune's training_iteration, time_total_s)" in warnings[0]


def test_trials_that_never_report_the_metric_fail_and_the_sweep_goes_on(ray_local, write_experiment):
    """Cases trial-never-reports (exp.yaml) and metric-never-reported-or-dict."""
    experiment = _experiment(
        write_experiment, "guard", "tests.trainables.reports:guard",
        {"batch": {"distribution": "choice", "values": [64, 256]},
         "buffer": {"distribution": "choice", "values": [128, 1024]}},
        [{"name": "explore", "searcher": "grid", "trials": 4, "max_trial_time": "30s"}],
    )
    result = sweep.run(experiment, stream=io.StringIO())
    trials = assert_consistent_results(result.run_dir, {1: 4})
    skipped = trials[trials["param.batch"] > trials["param.buffer"]]
    assert list(skipped["status"]) == ["failed"]
    assert list(skipped["error"]) == ["trial never reported the metric 'score' (it made no report)"]
    ran = trials[trials["param.batch"] <= trials["param.buffer"]]
    assert (ran["status"] == "completed").all()
    assert sorted(ran["objective"]) == pytest.approx(sorted(ran["param.buffer"] / ran["param.batch"]))

    experiment = _experiment(
        write_experiment, "rel", "tests.trainables.reports:metric_or_not",
        {"kind": {"distribution": "choice", "values": ["ok", "renamed", "dict"]}},
        [{"name": "explore", "searcher": "grid", "trials": 3, "max_trial_time": "30s"}],
        storage=str(Path(result.run_dir).parent / "rel"),
    )
    result = sweep.run(experiment, stream=io.StringIO())
    trials = assert_consistent_results(result.run_dir, {1: 3}).set_index("param.kind")
    assert list(trials["status"]) == ["completed" if kind == "ok" else "failed" for kind in trials.index]
    assert trials.loc["ok", "objective"] == 2.0
    assert trials.loc["renamed", "error"] == "trial never reported the metric 'score' (its reports held: other)"
    assert trials.loc["dict", "error"] == "trial reported score={'a': 1.0}, which is not a number (a dict)"


def test_a_command_that_prints_no_json_fails_and_numbers_in_strings_count(ray_local, write_experiment):
    """Case trial-never-reports (exp_command.yaml): Python reprs instead of JSON lines."""
    script = ROOT / "tests" / "trainables" / "report_command.py"
    data = {
        "name": "command_reports",
        "command": [sys.executable, str(script), "{style}", "{lr}"],
        "metric": "reward",
        "mode": "max",
        "parameters": {
            "style": {"distribution": "choice", "values": ["repr", "strings"]},
            "lr": {"distribution": "log_uniform", "min": 1e-4, "max": 1e-2},
        },
        "phases": [{"name": "explore", "searcher": "grid", "trials": 2, "grid_resolution": 2, "max_trial_time": "30s"}],
        "wandb": {"mode": "disabled"},
    }
    result = sweep.run(load_experiment(write_experiment(data)), stream=io.StringIO())
    trials = assert_consistent_results(result.run_dir, {1: 2}).set_index("param.style")
    assert trials.loc["repr", "status"] == "failed"
    assert trials.loc["repr", "error"].startswith("RuntimeError: command printed no JSON report on stdout")
    assert trials.loc["strings", "status"] == "completed"
    lr = trials.loc["strings", "param.lr"]
    assert trials.loc["strings", "objective"] == pytest.approx(2 * lr * 100, rel=1e-5)
    assert trials.loc["strings", "metric.step"] == 2


def test_a_metric_named_like_a_tune_key_is_used_as_reported(ray_local, write_experiment):
    experiment = _experiment(
        write_experiment, "tune_key", "tests.trainables.reports:tune_key", {"x": X},
        [{"name": "explore", "searcher": "random", "trials": 2, "max_trial_time": "30s"}],
        metric="timesteps_total",
    )
    result = sweep.run(experiment, stream=io.StringIO())
    trials = assert_consistent_results(result.run_dir, {1: 2})
    assert (trials["status"] == "completed").all()
    expected = [int(3000 * (1 + x)) for x in trials["param.x"]]
    assert list(trials["objective"]) == pytest.approx(expected)
    assert list(trials["metric.timesteps_total"]) == expected
