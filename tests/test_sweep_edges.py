"""Sweeps at the edges, end to end on a real local Ray: an earlier phase whose
trials all failed, quick mode at the smallest budgets, choices of mixed types."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from raysweep import cli
from raysweep.sinks.parquet import ParquetSink
from raysweep.spec import load_experiment
from raysweep.state import read_state
from tests.conftest import assert_consistent_results, synthetic_experiment


def test_a_narrowed_phase_after_a_phase_that_all_failed_runs_unnarrowed_and_says_so(ray_local, write_experiment, capsys):
    path = write_experiment(
        synthetic_experiment(
            trainable="tests.trainables.edges:flaky",
            metric="ret",
            parameters={"x": {"distribution": "uniform", "min": 0.0, "max": 1.0}},
            budget=None,
            phases=[
                {"name": "explore", "searcher": "random", "trials": 3, "max_trial_time": "30s"},
                {"name": "refine", "searcher": "ax", "trials": 2, "random_samples": 1, "max_trial_time": "30s",
                 "narrow": {"top_fraction": 0.5, "min_top": 2, "std_multiplier": 1.0}},
            ],
        )
    )
    assert cli.main(["run", str(path)]) == 0
    out = capsys.readouterr().out
    note = (
        "not narrowed: 0 usable of 3 earlier trials (3 failed or without a value), fewer than the 2 a box needs; "
        "candidates come from the declared bounds"
    )
    assert out.count(note) == 1 and "SWEEP COMPLETE" in out
    run_dir = path.parent / "run"
    trials = assert_consistent_results(run_dir, {1: 3, 2: 2})
    assert (trials["status"] == "failed").all()
    state = read_state(run_dir)
    assert state.phase(2).narrow_note == note and state.phase(2).box is None
    assert cli.main(["status", str(run_dir)]) == 0
    assert note in capsys.readouterr().out


@pytest.mark.parametrize("budget", [3, 7])
def test_quick_mode_runs_every_phase_at_small_budgets(ray_local, tmp_path, capsys, budget):
    storage = tmp_path / "quick"
    argv = ["run", "--trainable", "tests.trainables.synthetic:train", "--params", "x:0-1", "--budget", str(budget),
            "--metric", "score", "--mode", "max", "--set", f"storage={storage}", "--set", "wandb.mode=disabled"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "SWEEP COMPLETE" in out and "narrowed around all" in out
    state = read_state(storage)
    planned = {p.index: p.trials_planned for p in state.phases}
    assert sum(planned.values()) == budget
    assert_consistent_results(storage, planned)
    # The last phase always has at least two earlier results to narrow around (at budget 3 fewer than min_top=5).
    assert state.phase(3).box is not None
    assert (state.phase(3).narrow_note or "").startswith("narrowed around all") == (budget == 3)
    if budget == 7:  # phase 2 fit a GP and left its hyperparameters for phase 3 to start from
        assert json.loads((storage / "model" / "phase2-gp.json").read_text())["tensors"]


def test_quick_mode_refuses_a_budget_too_small_before_writing_anything(tmp_path, capsys):
    storage = tmp_path / "quick"
    argv = ["run", "--trainable", "tests.trainables.synthetic:train", "--params", "x:0-1", "--budget", "2",
            "--metric", "score", "--mode", "max", "--set", f"storage={storage}"]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "raysweep: error: budget: phases[2] (finetune) gets 0 trials from its share 0.2; every phase needs at least "
        "one, so the smallest budget for these phases is 3; got 2"
    ]
    assert not storage.exists()


def test_a_choice_of_null_beside_numbers_runs_through_every_phase_with_raw_values(ray_local, write_experiment):
    path = write_experiment(
        synthetic_experiment(
            trainable="tests.trainables.edges:clipped",
            parameters={
                "lr": {"distribution": "log_uniform", "min": 1e-4, "max": 1e-2},
                "max_grad_norm": {"distribution": "choice", "values": [None, 0.5, 1.0]},
            },
            budget=None,
            phases=[
                {"name": "explore", "searcher": "grid", "trials": 4, "grid_resolution": 2, "max_trial_time": "30s"},
                {"name": "exploit", "searcher": "ax", "trials": 3, "random_samples": 1, "max_trial_time": "30s"},
            ],
        )
    )
    assert cli.main(["run", str(path)]) == 0
    trials = assert_consistent_results(path.parent / "run", {1: 4, 2: 3})
    assert (trials["status"] == "completed").all()  # the trainable raises unless it got None or a float
    # A column of mixed types holds each value's text; reading observations gives the raw values back.
    assert {None if pd.isna(v) else v for v in trials["param.max_grad_norm"]} <= {None, "0.5", "1.0"}
    sink = ParquetSink(path.parent / "run", load_experiment(path).space)
    assert {repr(o.params["max_grad_norm"]) for o in sink.read_observations()} <= {"None", "0.5", "1.0"}
    assert json.loads((path.parent / "run" / "state.json").read_text())["phases"][1]["status"] == "done"


def test_a_later_phase_on_a_new_run_directory_is_refused_before_anything_is_written(write_experiment, capsys):
    path = write_experiment(synthetic_experiment(budget=None, phases=[
        {"name": "explore", "searcher": "random", "trials": 2},
        {"name": "exploit", "searcher": "ax", "trials": 2},
    ]))
    assert cli.main(["run", str(path), "--phase", "2"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"raysweep: error: phase 2 (exploit) needs the results of phase 1 (explore), which is not done; "
        f"run first: python -m raysweep run {path} --phase 1"
    ]
    assert not (path.parent / "run").exists()


def test_a_narrowed_phase_ranks_runs_cut_short_at_the_target_fidelity_and_records_its_box(ray_local, write_experiment):
    from raysweep.fidelity import experiment_scale
    from raysweep.narrowing import Box, phase_box
    from raysweep.target_ranking import target_values

    narrow = {"top_fraction": 0.5, "min_top": 2, "std_multiplier": 1.0}
    path = write_experiment(
        synthetic_experiment(
            trainable="tests.trainables.edges:paced",  # score = x * step; 8 steps, `pause` seconds apart
            parameters={
                "x": {"distribution": "uniform", "min": 0.1, "max": 1.0},
                "pause": {"distribution": "choice", "values": [0.0, 1.5]},
            },
            fidelity={"attr": "timesteps"},
            model="multi_fidelity",
            budget=None,
            phases=[
                # the two slow configs cannot finish 8 steps of 1.5 s in 5 s: cut short by the time budget
                {"name": "explore", "searcher": "grid", "trials": 4, "grid_resolution": 2, "max_trial_time": "5s"},
                {"name": "refine", "searcher": "ax", "trials": 2, "random_samples": 1, "max_trial_time": "5s",
                 "narrow": narrow},
            ],
        )
    )
    assert cli.main(["run", str(path)]) == 0
    run_dir = path.parent / "run"
    trials = assert_consistent_results(run_dir, {1: 4, 2: 2})
    first = trials[trials["phase"] == 1]
    assert sorted(first["status"]) == ["completed", "completed", "time_budget", "time_budget"]
    experiment = load_experiment(path)
    earlier = ParquetSink(run_dir, experiment.space).read_observations([1])
    scale = experiment_scale(experiment, earlier)
    assert scale is not None and scale.full == 8000
    values = target_values(earlier, experiment.space, "max", scale)
    # the phase's box is the one ranked at the target fidelity, the cut runs among the candidates
    expected, note = phase_box(experiment.space, earlier, "max", values=values, **narrow)
    state = read_state(run_dir)
    assert note is None and state.phase(2).box == expected.to_dict()
    boxes = {json.dumps(box, sort_keys=True) for box in trials.loc[trials["phase"] == 2, "narrow_box"].map(json.loads)}
    assert len(boxes) >= 1 and all(Box.from_dict(json.loads(box)) for box in boxes)
    cut = [o for o in earlier if o.status.value == "time_budget"]
    assert all(values[o.trial_id] != o.objective for o in cut)  # predicted for a full run, not their partial value
    # the slow x = 1.0 config, cut short, is among the top two; ranked raw, only completed runs were
    assert state.phase(2).box["choices"]["pause"] == [0.0, 1.5]
    assert phase_box(experiment.space, earlier, "max", **narrow)[0].choices["pause"] == (0.0,)
    # the phase's searcher, built again from the run directory: model: single_fidelity keeps the raw ranking
    from raysweep import planning
    from raysweep.searchers.ax import make_ax_searcher

    sink = ParquetSink(run_dir, experiment.space)
    for model, pause in (("multi_fidelity", [0.0, 1.5]), ("single_fidelity", [0.0])):
        variant = experiment.model_copy(update={"model": model})
        _, extra = make_ax_searcher(variant, planning.plan(variant)[1], sink, "test-target-ranking")
        assert extra["box"]["choices"]["pause"] == pause, model
