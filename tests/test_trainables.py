"""Command trainables on a real local Ray: every placeholder form validate accepts fills at run time."""

import os
import sys

import pandas as pd

from raysweep import sweep
from raysweep.spec import load_experiment
from raysweep.trainables import format_argv
from tests.conftest import ROOT, synthetic_experiment


def test_format_argv_fills_specs_seed_and_trial_id_outside_a_trial():
    argv = format_argv(["--lr={lr:.2e}", "{x}", "{seed:03d}", "{trial_id}"], {"lr": 0.00012, "x": 0.1, "seed": 7})
    assert argv == ["--lr=1.20e-04", "0.1", "007", "unknown"]


def test_format_specs_seed_and_trial_id_reach_the_command(ray_local, write_experiment):
    data = synthetic_experiment(
        budget=4,
        command=[sys.executable, str(ROOT / "tests" / "trainables" / "argv_check.py"), "{x:.3f}", "{seed}", "{trial_id}", "{act}"],
        parameters={
            "x": {"distribution": "uniform", "min": 0.0, "max": 1.0},
            "act": {"distribution": "choice", "values": ["tanh", "relu"]},
        },
        phases=[{"name": "explore", "searcher": "random", "share": 1.0, "max_trial_time": "2m"}],
    )
    data.pop("trainable")
    result = sweep.run(load_experiment(write_experiment(data)))
    frame = pd.read_parquet(os.path.join(result.run_dir, "results", "trials"))
    assert len(frame) == 4
    assert (frame["status"] == "completed").all(), frame[["status", "error"]].to_dict("records")
    assert (frame["objective"] == frame["param.x"].round(3)).all()
