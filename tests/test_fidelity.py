"""Every observation carries the fidelity it reached: the column, and how it is read from a trial's reports."""

from __future__ import annotations

import pandas as pd
import pytest

from raysweep import cli
from raysweep.errors import SpecError
from raysweep.fidelity import reached
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
    capsys.readouterr()
    assert cli.main(["status", str(run_dir)]) == 0
    assert "fidelity (timesteps) reached: min " in capsys.readouterr().out
