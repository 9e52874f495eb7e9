"""Every observation carries the fidelity it reached: the column, and how it is read from a trial's reports."""

from __future__ import annotations

import pandas as pd
import pytest

from raysweep import cli
from raysweep.errors import SpecError
from raysweep.fidelity import curve, curve_of_progress, reached
from raysweep.outcomes import OutcomeBook
from raysweep.records import ProgressRecord
from raysweep.sinks.parquet import ParquetSink
from raysweep.spec import experiment_from_dict, load_experiment
from tests.conftest import assert_consistent_results, synthetic_experiment


def rows(*metrics):
    return [ProgressRecord("t", i + 1, 0.5 * (i + 1), m) for i, m in enumerate(metrics)]


def test_the_fidelity_reached_is_the_last_value_of_its_attribute():
    progress = rows({"timesteps": 1000, "score": 1.0}, {"score": 2.0}, {"timesteps": 3000.0}, {"score": 4.0})
    assert reached(progress, "timesteps") == 3000.0  # reported only every other step
    assert reached(progress, "training_iteration") == 4.0
    assert reached(progress, "time_total_s") == 2.0
    assert reached(progress, "episodes") is None
    assert reached([], "timesteps", {"timesteps": 500}) == 500.0  # a trial with no progress rows
    assert reached(rows({"timesteps": float("nan")}), "timesteps") is None


def test_a_learning_curve_keeps_the_last_point_and_the_latest_at_halving_fidelities():
    points = [(float(i), 0.1 * i) for i in range(1, 101)]
    assert curve(points) == ((12.0, 1.2000000000000002), (25.0, 2.5), (50.0, 5.0), (100.0, 10.0))
    assert curve(points[:1]) == ((1.0, 0.1),)
    assert curve([]) == ()
    assert curve([(1.0, 0.1), (1.0, 0.2), (3.0, 0.3)]) == ((1.0, 0.2), (3.0, 0.3))  # one value per fidelity
    # evaluation every other report: only reports holding both the fidelity and the metric are points
    progress = rows({"timesteps": 1000, "score": 1.0}, {"timesteps": 2000}, {"timesteps": 3000, "score": 3.0},
                    {"timesteps": 4000, "score": 4.0}, {"timesteps": 5000})
    assert curve_of_progress(progress, "timesteps", "score") == ((1000.0, 1.0), (4000.0, 4.0))
    assert curve_of_progress(progress, "training_iteration", "score") == ((1.0, 1.0), (4.0, 4.0))
    assert curve_of_progress(rows({"score": float("nan")}), "training_iteration", "score") == ()


def test_a_metric_reported_apart_from_the_fidelity_counts_at_the_last_fidelity_stated():
    # step count and evaluation in separate reports: before, no report held both, so the trial had no
    # curve at all and its objective was placed at its final fidelity only by the model's fallback
    progress = rows({"score": 0.5}, {"timesteps": 1000}, {"score": 1.0}, {"timesteps": 2000}, {"score": 2.0},
                    {"timesteps": 4000}, {"score": 4.0}, {"timesteps": 4500})
    assert curve_of_progress(progress, "timesteps", "score") == ((1000.0, 1.0), (2000.0, 2.0), (4000.0, 4.0))
    book = OutcomeBook("", "score", "timesteps")
    for row in progress:
        book.read("t", {"training_iteration": row.iteration, "time_total_s": row.time_s, **row.metrics})
    assert book.curve("t") == ((1000.0, 1.0), (2000.0, 2.0), (4000.0, 4.0))
    assert book.reached("t") == 4500.0


def test_the_fidelity_attribute_is_checked_like_every_field():
    with pytest.raises(SpecError, match=r"^fidelity\.attr: "):
        experiment_from_dict(synthetic_experiment(fidelity={"attr": " "}))
    with pytest.raises(SpecError, match=r"^fidelity\.max: "):
        experiment_from_dict(synthetic_experiment(fidelity={"max": -1}))
    with pytest.raises(SpecError, match=r"^fidelity\.budget: "):
        experiment_from_dict(synthetic_experiment(fidelity={"budget": 10}))  # unknown keys are refused
    with pytest.raises(SpecError, match=r"^fidelity\.parameter: "):
        experiment_from_dict(synthetic_experiment(fidelity={"parameter": "nope", "attr": "steps"}))
    with pytest.raises(SpecError, match=r"^fidelity\.attr: "):
        experiment_from_dict(synthetic_experiment(fidelity={"parameter": "lr"}))  # attr must be given with it
    with pytest.raises(SpecError, match=r"^model: "):
        experiment_from_dict(synthetic_experiment(model="gp"))
    assert experiment_from_dict(synthetic_experiment(fidelity={"max": 10})).fidelity.max == 10


def test_completed_time_budget_and_asha_stopped_trials_carry_the_fidelity_they_reached(ray_local, write_experiment, capsys):
    path = write_experiment(synthetic_experiment(
        trainable="tests.trainables.edges:paced",
        budget=None,
        fidelity={"attr": "timesteps"},
        parameters={
            "x": {"distribution": "uniform", "min": 0.1, "max": 1.0},
            "pause": {"distribution": "choice", "values": [0.0, 1.5]},
        },
        phases=[{"name": "explore", "searcher": "grid", "trials": 8, "grid_resolution": 4, "max_trial_time": "4s",
                 "max_concurrent": 2,
                 "early_stopping": {"type": "asha", "time_attr": "timesteps", "grace_period": 2000, "max_t": 8000,
                                    "reduction_factor": 2}}],
    ))
    assert cli.main(["run", str(path)]) == 0
    run_dir = path.parent / "run"
    trials = assert_consistent_results(run_dir, {1: 8})
    progress = pd.read_parquet(run_dir / "results" / "progress")
    last = progress.sort_values("iteration").groupby("trial_id")["metric.timesteps"].last()
    assert (trials.set_index("trial_id")["fidelity"] == last.loc[trials["trial_id"]]).all()
    by_status = trials.groupby("status")["fidelity"]
    assert (trials.loc[trials["status"] == "completed", "fidelity"] == 8000).all()
    assert (trials.loc[trials["status"] == "time_budget", "fidelity"] < 8000).all()
    assert "time_budget" in by_status.groups  # the slow configs cannot finish 8 steps of 1.5 s in 4 s
    assert (trials.loc[trials["status"] == "early_stopped", "fidelity"] < 8000).all()
    # observations read back carry it too
    observations = ParquetSink(run_dir, load_experiment(path).space).read_observations()
    assert sorted(o.fidelity for o in observations) == sorted(trials["fidelity"])
    # each usable trial keeps points of its learning curve, the last where its objective was measured
    for row in trials.itertuples():
        rows = progress[progress["trial_id"] == row.trial_id].sort_values("iteration")
        points = [(float(t), float(v)) for t, v in zip(rows["metric.timesteps"], rows["metric.score"])]
        assert list(zip(row.curve_fidelity, row.curve_objective)) == list(curve(points)), row.trial_id
        assert row.curve_fidelity[-1] == row.fidelity and row.curve_objective[-1] == row.objective
    assert {o.trial_id: o.curve for o in observations} == {
        row.trial_id: tuple(zip(row.curve_fidelity, row.curve_objective)) for row in trials.itertuples()
    }
    capsys.readouterr()
    assert cli.main(["status", str(run_dir)]) == 0
    assert "fidelity (timesteps) reached: min " in capsys.readouterr().out


def test_a_pow2_length_parameter_gives_a_scale_that_places_lengths_at_powers_of_two():
    from raysweep.fidelity import experiment_scale

    parameters = {"x": {"distribution": "uniform", "min": 0.0, "max": 1.0},
                  "steps": {"distribution": "pow2", "min": 1024, "max": 65536},
                  "width": {"distribution": "int_uniform", "min": 16, "max": 256}}
    pow2 = experiment_from_dict(synthetic_experiment(parameters=parameters, fidelity={"parameter": "steps", "attr": "t"}))
    assert experiment_scale(pow2, []).power_of_two
    ints = experiment_from_dict(synthetic_experiment(parameters=parameters, fidelity={"parameter": "width", "attr": "t"}))
    assert not experiment_scale(ints, []).power_of_two
