"""What a Bayesian phase's searcher did with each trial: how its config was chosen, and how it ended."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from raysweep.records import Observation
from raysweep.searchers.ax.settings import SEED_KEY
from raysweep.searchers.ax.state import observation_from_json, observation_to_json, restore_params
from raysweep.space import RawValue, SearchSpace


@dataclass
class Proposal:
    params: dict[str, RawValue]
    kind: str  # random | model | resample | random_fallback
    resampled_from: str | None = None


@dataclass
class TrialEntry:
    """What the searcher did with one Tune trial."""

    position: int  # 0-based order of suggestion within the phase
    ax_index: int
    kind: str
    params: dict[str, RawValue]
    seed: int
    resampled_from: str | None = None
    observation: Observation | None = None  # set when the trial ended
    box: dict[str, Any] | None = None  # the box its config was generated in (Box.to_dict)
    # when it was suggested and reported, on the searcher's event counter (a restore replays them in order)
    suggested_at: int = 0
    reported_at: int | None = None

    def trial_config(self) -> dict[str, Any]:
        return {**self.params, SEED_KEY: self.seed}

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["observation"] = None if self.observation is None else observation_to_json(self.observation)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any], space: SearchSpace) -> "TrialEntry":
        data = dict(data)
        observation = data.pop("observation")
        entry = cls(**data)
        entry.params = restore_params(entry.params, space)
        entry.observation = None if observation is None else observation_from_json(observation, space)
        return entry


def derived_seed(seed: int, position: int, stream: int) -> int:
    """A 31-bit seed for ``stream`` (trial seed, torch, Halton, MC samples) of one position."""
    return int(np.random.SeedSequence([seed & 0xFFFFFFFF, position, stream]).generate_state(1)[0] >> 1)
