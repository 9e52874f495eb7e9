"""Every problem of ``benchmarks.search_quality`` by name, in the order the report shows them."""

from __future__ import annotations

from benchmarks.search_quality_adapter import ProblemAdapter
from benchmarks.search_quality_fcnet import FCNET_PROBLEMS
from benchmarks.search_quality_ppo import CARTPOLE_PPO
from benchmarks.search_quality_problems import PROBLEMS

ALL_PROBLEMS: dict[str, ProblemAdapter] = {**PROBLEMS, CARTPOLE_PPO.name: CARTPOLE_PPO, **FCNET_PROBLEMS}
