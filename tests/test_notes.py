"""The two design notes' workflows, end to end through raysweep's Ax searcher on a local Ray.

The experiment files are the ones users read (experiments/*.yaml); only the
trainable, the sizes and the storage are overridden with --set so the test is cheap.
"""

import json
import os

import pandas as pd
import pytest

from raysweep import sweep
from raysweep.narrowing import Box
from raysweep.spec import load_experiment
from tests.conftest import ROOT


def _overrides(tmp_path, *extra):
    return [
        "trainable=tests.trainables.synthetic:surrogate",
        "resources.gpu=0",
        "resources.cpu=1",
        f"storage={tmp_path / 'run'}",
        "wandb.mode=disabled",
        *extra,
    ]


def _trials(run_dir):
    frame = pd.read_parquet(os.path.join(run_dir, "results", "trials"))
    frame["phase"] = frame["phase"].astype(int)
    return frame


def test_phased_note_three_phases_on_one_space(ray_local, tmp_path):
    experiment = load_experiment(
        ROOT / "experiments" / "phased_note.yaml",
        _overrides(
            tmp_path,
            "phases.1.trials=8",
            "phases.2.trials=6",
            "phases.2.random_samples=2",
            "phases.2.resample_every=3",
            "phases.2.max_observations_to_load=8",
            "phases.3.trials=6",
            "phases.3.max_observations_to_load=14",
        ),
    )
    result = sweep.run(experiment)
    frame = _trials(result.run_dir)
    assert frame.groupby("phase").size().to_dict() == {1: 8, 2: 6, 3: 6}
    assert frame["trial_id"].is_unique and (frame["status"] == "completed").all()
    # every declared bound holds in every phase: no phase redefined the space
    assert frame["param.total_timesteps"].between(1e8, 5e9).all()
    # resampled trials re-run an earlier config with a new seed
    resampled = frame[frame["resampled_from"].notna()]
    assert len(resampled) >= 2
    for row in resampled.to_dict("records"):
        origin = frame[frame["trial_id"] == row["resampled_from"]].iloc[0]
        for name in experiment.space.names:
            assert origin[f"param.{name}"] == row[f"param.{name}"]
        assert origin["seed"] != row["seed"]
    # the best config is judged on the mean of its measurements, so a resampled winner is not a lucky single run
    param_columns = [f"param.{name}" for name in experiment.space.names]
    pooled = frame.groupby(param_columns, dropna=False)["objective"].agg(["mean", "size"])
    assert result.best is not None
    assert result.best.objective == pytest.approx(pooled["mean"].max())
    assert result.best.measurements == pooled.loc[pooled["mean"].idxmax(), "size"]


def test_multistage_guide_narrows_where_it_generates(ray_local, tmp_path):
    experiment = load_experiment(ROOT / "experiments" / "multistage_guide.yaml", _overrides(tmp_path, "budget=30"))
    result = sweep.run(experiment)
    frame = _trials(result.run_dir)
    assert frame.groupby("phase").size().to_dict() == {1: 9, 2: 15, 3: 6}
    state = json.loads((result.run_dir / "state.json").read_text())
    for index in (2, 3):
        box = Box.from_dict(state["phases"][index - 1]["box"])
        rows = frame[frame["phase"] == index]
        boxes = rows["narrow_box"].map(json.loads).map(Box.from_dict)
        assert boxes.eq(box).any()  # the phase starts in the narrowed box, which then follows the optimum
        for trial_box, row in zip(boxes, rows.to_dict("records")):
            config = {name: row[f"param.{name}"] for name in experiment.space.names}
            assert trial_box.contains(config), (index, config, trial_box)  # generated where its row says
            trial_box.check_within(experiment.space)  # never past a declared bound
    # ASHA in stage 2 may stop trials early; those keep their last value and never count as failed
    assert set(frame["status"]) <= {"completed", "early_stopped"}
