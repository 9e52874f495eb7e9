"""Quick mode's flags: --params syntax, --max-trial-time, --dry-run."""

import subprocess
import sys

import pytest

from raysweep.errors import SpecError
from raysweep.quick import parse_params, quick_experiment
from raysweep.spec import experiment_from_dict
from tests.conftest import ROOT


def test_params_take_ranges_log_ranges_choices_fixed_values_and_defaults():
    params = parse_params(
        "learning_rate:1e-4-1e-2:log, gae_lambda:0.8-0.99, activation:[tanh,relu], total_timesteps=50000, "
        "ent_coef, offset:-2--0.5, minibatches:2-32:pow2, width:[64, 128], steps:10-1000:int_log"
    )
    assert params == {
        "learning_rate": {"distribution": "log_uniform", "min": 1e-4, "max": 1e-2},
        "gae_lambda": {"distribution": "uniform", "min": 0.8, "max": 0.99},
        "activation": {"distribution": "choice", "values": ["tanh", "relu"]},
        "total_timesteps": {"distribution": "choice", "values": [50000]},
        "ent_coef": {"distribution": "uniform", "min": 0.0, "max": 0.05},
        "offset": {"distribution": "uniform", "min": -2.0, "max": -0.5},
        "minibatches": {"distribution": "pow2", "min": 2, "max": 32},
        "width": {"distribution": "choice", "values": [64, 128]},
        "steps": {"distribution": "int_log_uniform", "min": 10, "max": 1000},
    }


@pytest.mark.parametrize(
    "text, message",
    [
        ("x:1-", r"^--params x: a range reads LOW-HIGH with an optional :log, :int, :int_log, :pow2 or :logit, "
                 r"for example 0\.8-0\.99 or 1e-4-1e-2:log; got '1-'$"),
        ("x:1-2:cubic", r"^--params x: unknown distribution after the range \(use log, int, .*\); got 'cubic'$"),
        ("x:[a,b", r"^--params: a '\[' without its '\]'; got 'x:\[a,b'$"),
        ("x=", r"^--params: each item is name, name:LOW-HIGH\[:log\|int\|int_log\|pow2\|logit\], name:\[a,b,\.\.\.\] "
               r"or name=value; got 'x='$"),
        ("x:[]", r"^--params x: a choice reads name:\[a,b,\.\.\.\] with at least one plain value; got 'x:\[\]'$"),
        ("x:0-1,x:1-2", r"^--params x: parameter given twice; got 'x:1-2'$"),
        ("mystery", r"^--params mystery: no default range for this parameter; give one as mystery:LOW-HIGH"),
    ],
)
def test_params_refuse_what_they_cannot_read(text, message):
    with pytest.raises(SpecError, match=message):
        parse_params(text)


def test_quick_experiment_validates_like_a_file_and_takes_a_time_budget():
    data = quick_experiment(trainable="tests.trainables.synthetic:train", params="x:0-1,lr:1e-4-1e-2:log,act:[tanh,relu],steps=2",
                            budget=40, metric="score", mode="max", max_trial_time="90s")
    experiment = experiment_from_dict(data)
    assert [p.max_trial_time for p in experiment.phases] == [90.0, 90.0, 90.0]
    assert experiment.parameters["steps"].values == [2]
    with pytest.raises(SpecError, match=r"^phases\[0\]\.max_trial_time: unparseable duration"):
        experiment_from_dict(quick_experiment(trainable="tests.trainables.synthetic:train", params="x:0-1", budget=40,
                                              metric="score", mode="max", max_trial_time="soon"))


def test_dry_run_prints_the_plan_and_writes_nothing(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "raysweep", "run", "--trainable", "tests.trainables.synthetic:train",
         "--params", "x:0-1,lr:1e-4-1e-2:log,act:[tanh,relu],steps=2", "--budget", "40", "--metric", "score",
         "--mode", "max", "--max-trial-time", "90s", "--name", "dry", "--set", f"storage={tmp_path / 'run'}", "--dry-run"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "dry: max 'score', 40 trials in 3 phases" in proc.stdout
    assert "act: choice ['tanh', 'relu']" in proc.stdout and "lr: log_uniform [0.0001, 0.01]" in proc.stdout
    assert "per-trial time budget 1m30s" in proc.stdout
    assert proc.stdout.rstrip().endswith("dry run: nothing was run or written")
    assert not (tmp_path / "run").exists()


def test_a_fixed_value_reaches_every_trial_through_grid_and_bayesian_phases(ray_local, write_experiment):
    import pandas as pd

    from raysweep import sweep
    from raysweep.spec import load_experiment
    from tests.conftest import synthetic_experiment

    data = synthetic_experiment(
        budget=None,
        parameters=parse_params("x:0-1,act:[tanh,relu],steps=2"),
        phases=[
            {"name": "coarse", "searcher": "grid", "trials": 4, "grid_resolution": 2, "max_trial_time": "2m"},
            {"name": "refine", "searcher": "ax", "trials": 2, "random_samples": 0, "max_trial_time": "2m",
             "narrow": {"min_top": 2, "std_multiplier": 2.0}},
        ],
    )
    data.pop("budget")
    result = sweep.run(load_experiment(write_experiment(data)))
    frame = pd.read_parquet(result.run_dir / "results" / "trials")
    assert len(frame) == 6 and (frame["status"] == "completed").all(), frame[["status", "error"]].to_dict("records")
    assert (frame["param.steps"] == 2).all() and (frame["iterations"] == 2).all()
