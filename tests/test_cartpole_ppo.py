"""Tests for the quickstart PPO trainable in ``experiments.cartpole_ppo``.

Budgets are tiny (a few rollouts) so the whole file stays within seconds; the
tests check the reporting contract raysweep relies on, not learning quality.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from experiments import cartpole_ppo
from experiments.cartpole_ppo import NUM_ENVS, ROLLOUT_STEPS, Rollout, compute_gae, train

REPO_ROOT = Path(__file__).resolve().parents[1]
BATCH = NUM_ENVS * ROLLOUT_STEPS
TINY_CONFIG: dict[str, Any] = {
    "learning_rate": 3e-3,
    "gae_lambda": 0.95,
    "ent_coef": 0.01,
    "num_minibatches": 2,
    "activation": "tanh",
    "total_timesteps": 3 * BATCH,
}


def _run_and_parse(
    config: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> list[dict[str, Any]]:
    """Run ``train`` outside Tune and parse what it printed, failing on any non-JSON line."""
    train(config)
    out = capsys.readouterr().out
    return [json.loads(line) for line in out.splitlines()]


def test_standalone_train_prints_json_reports(capsys: pytest.CaptureFixture[str]) -> None:
    """One report per update at this budget, each with the keys sweeps rank and plot by."""
    reports = _run_and_parse({**TINY_CONFIG, "some_unknown_key": "ignored"}, capsys)

    assert len(reports) == 3
    for report in reports:
        assert {
            "episode_return_mean",
            "episode_return_auc",
            "timesteps",
            "episodes",
        } <= report.keys()
        assert report["episode_return_mean"] > 0
    timesteps = [report["timesteps"] for report in reports]
    assert timesteps == sorted(set(timesteps))
    assert timesteps[-1] >= TINY_CONFIG["total_timesteps"]
    assert reports[-1]["episodes"] >= reports[0]["episodes"] > 0


def test_same_seed_reproduces_and_seed_matters(capsys: pytest.CaptureFixture[str]) -> None:
    """Re-running a config must reproduce it exactly, or phase comparisons would be noise."""
    config = {**TINY_CONFIG, "seed": 3, "activation": "relu", "num_minibatches": 4}
    first = _run_and_parse(config, capsys)
    second = _run_and_parse(config, capsys)
    other_seed = _run_and_parse({**config, "seed": 4}, capsys)

    assert first[-1]["episode_return_mean"] == second[-1]["episode_return_mean"]
    assert first == second
    assert [r["episode_return_mean"] for r in other_seed] != [
        r["episode_return_mean"] for r in first
    ]


def test_prints_when_ray_tune_is_imported_outside_a_trial(
    capsys: pytest.CaptureFixture[str], recwarn: pytest.WarningsRecorder
) -> None:
    """With ray.tune loaded but no trial session, reports must still go to stdout, silently."""
    pytest.importorskip("ray.tune")
    reports = _run_and_parse({**TINY_CONFIG, "total_timesteps": BATCH}, capsys)

    assert [report["timesteps"] for report in reports] == [BATCH]
    assert not [w for w in recwarn if "Tuner" in str(w.message)]


def test_cli_stdout_is_only_json_lines() -> None:
    """The external-command mode treats stdout as the report channel, so nothing else may leak."""
    args = {**TINY_CONFIG, "total_timesteps": 2 * BATCH}
    argv = [arg for key, value in args.items() for arg in (f"--{key}", str(value))]
    completed = subprocess.run(
        [sys.executable, "-m", "experiments.cartpole_ppo", *argv],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert completed.returncode == 0, completed.stderr
    lines = completed.stdout.splitlines()
    assert len(lines) == 2
    reports = [json.loads(line) for line in lines]
    assert all(isinstance(report, dict) for report in reports)
    assert [report["timesteps"] for report in reports] == [BATCH, 2 * BATCH]


def test_missing_required_key_is_rejected() -> None:
    config = dict(TINY_CONFIG)
    del config["gae_lambda"]
    with pytest.raises(KeyError, match="gae_lambda"):
        train(config)


def test_invalid_activation_is_rejected() -> None:
    with pytest.raises(ValueError, match="activation"):
        cartpole_ppo.PPOConfig.from_mapping({**TINY_CONFIG, "activation": "gelu"})


def test_gae_bootstraps_truncation_but_not_termination() -> None:
    """One env, episode ends after step 0; the next stored step is the no-op reset step."""
    gamma, lam = 0.9, 0.5
    # V(obs_0), V(final obs of the episode), V(obs after the reset step)
    values = np.array([[1.0], [2.0], [3.0]], dtype=np.float32)
    rollout = Rollout.empty(steps=2, num_envs=1, obs_dim=1)
    rollout.rewards[:] = [[1.0], [0.0]]
    rollout.done[0] = True

    rollout.terminated[0] = True
    terminated_adv = compute_gae(rollout, values, gamma, lam)
    assert terminated_adv[0, 0] == pytest.approx(1.0 - 1.0)

    rollout.terminated[0] = False  # time-limit truncation: bootstrap from the final obs
    truncated_adv = compute_gae(rollout, values, gamma, lam)
    assert truncated_adv[0, 0] == pytest.approx(1.0 + gamma * 2.0 - 1.0)
