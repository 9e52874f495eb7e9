"""Shared fixtures: one real local Ray for the whole session, experiment files in tmp dirs."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("WANDB_MODE", "offline")


@pytest.fixture(scope="session")
def ray_local():
    """A real local Ray with two CPUs, started once."""
    import ray

    from raysweep.sweep import connect

    os.chdir(ROOT)  # trainables resolve from the repository root, as for users
    connect(address=None, num_cpus=2, verbose=False)
    yield ray
    ray.shutdown()


@pytest.fixture
def write_experiment(tmp_path):
    """Write an experiment dict to YAML with storage under tmp_path; returns the file path."""

    def write(data: dict, name: str = "exp.yaml") -> Path:
        data = dict(data)
        data.setdefault("storage", str(tmp_path / "run"))
        path = tmp_path / name
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path

    return write


def synthetic_experiment(**overrides) -> dict:
    """A small experiment on the synthetic trainable."""
    data = {
        "name": "synthetic",
        "trainable": "tests.trainables.synthetic:train",
        "metric": "score",
        "mode": "max",
        "budget": 8,
        "parameters": {
            "x": {"distribution": "uniform", "min": 0.0, "max": 1.0},
            "lr": {"distribution": "log_uniform", "min": 1e-4, "max": 1e-2},
            "act": {"distribution": "choice", "values": ["tanh", "relu"]},
        },
        "phases": [
            {"name": "explore", "searcher": "grid", "share": 1.0, "grid_resolution": 3, "max_trial_time": "30s"},
        ],
    }
    data["wandb"] = {"mode": "disabled"}  # W&B has tests of its own
    data.update(overrides)
    return data
