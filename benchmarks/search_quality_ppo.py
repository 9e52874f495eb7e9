"""The real problem of ``benchmarks.search_quality``: the quickstart's PPO on CartPole-v1.

    python -m benchmarks.search_quality --problem cartpole_ppo --seeds 3 --budget 20 \\
        --methods raysweep random ax_single

The trainable is ``experiments.cartpole_ppo:train``; the search space and the
objective are those of ``experiments/cartpole_ppo.yaml`` (learning rate, GAE
lambda, entropy coefficient, minibatches, activation, and ``total_timesteps``
from 10,000 to 60,000: the fidelity is a parameter, so a config's cost is part
of what is searched; the objective is the file's ``metric``,
``episode_return_auc``, the area under the learning curve: the mean of the
20-episode mean return over every update, at most 500). Nothing is simulated:
every trial trains PPO on this machine.

Cost is counted in environment steps (the ``timesteps`` metric a trial last
reported), not wall seconds, so that results do not depend on what else the
machine runs; wall seconds are kept in the events. ``--budget`` counts full
runs of ``FULL_STEPS`` = 60,000 steps (the top of the range), so ``--budget 20``
is 1.2 million environment steps, about 40 trials of the quickstart's mix.

Methods (the others of the benchmark are not run on PPO, for time):

``raysweep``
    the three phases of ``experiments/cartpole_ppo.yaml`` (grid, Ax with its
    timesteps bias and resampling, narrowed Ax), each sized from the cost left
    as for the simulated problems;
``random``
    one ``random`` phase over the same space;
``ax_single``
    one Ax phase over the same space (4 quasi-random starts, no bias).

Time budgets: the experiment file's per-trial budgets (1 minute, 1 minute,
90 s) are wall-clock guards that never bind on an idle 2-core machine (a
60,000-step trial takes 5-10 s); on a shared machine a starved trial would hit
them and be cut for reasons that have nothing to do with the search. Every
method here therefore runs with ``GUARD_TIME`` per trial instead, so every trial
runs its ``total_timesteps`` to the end whatever the load.

Value of a config: the observed objective is noisy (one seed) and the best of
many noisy runs is biased upwards, so the config a method recommends is
re-trained from scratch with ``EVAL_SEEDS`` fresh seeds (its own
``total_timesteps``) and scored by the mean of their final objective.
Normalised regret is ``(500 - that mean) / 500``: 0 would be the cap of 500
from the first update on (unreachable: a policy has to learn first), an
untrained policy (returns near 20) is about 0.96. Only recommended configs are
re-trained (every config that is the recommendation at some point of the
budget); their last reports are cached by config and seed in
``ppo_evals.json`` next to the events, so two methods picking the same grid
point share its evaluation.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import multiprocessing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parent.parent
EXPERIMENT_FILE = ROOT / "experiments" / "cartpole_ppo.yaml"
FULL_STEPS = 60_000  # one "full run" of the budget: the top of total_timesteps' range
RETURN_CAP = 500.0  # CartPole-v1's maximum episode return
EVAL_SEEDS = (1_000_001, 1_000_002)
PPO_METHODS = ("raysweep", "random", "ax_single")
GUARD_TIME = "15m"  # per-trial time budget of every phase (see the module docstring)
#: Expected environment steps of a trial, to size a phase before it runs: the grid's mean over its 5
#: log-spaced timesteps values (rounded up to whole 1024-step rollouts), then the biased means of the
#: experiment file's Ax phases; a single phase over the prior, ~ its mean.
STEPS_PER_TRIAL = {"grid": 30_000, "exploit": 35_000, "refine": 50_000, "prior": 25_000}


@dataclass(frozen=True)
class PPOProblem:
    name: str = "cartpole_ppo"
    cost_unit: str = "environment steps"
    full_cost: float = float(FULL_STEPS)
    default_budget: float = 20.0
    #: Normalised regret to reach: an area under the curve of 375, i.e. at 500 for roughly the last two thirds of
    #: training (chosen before the runs; 0.05 as on the simulated problems would need 500 almost from the start).
    target: float = 0.25
    methods: tuple[str, ...] = PPO_METHODS
    base: dict = field(default_factory=lambda: yaml.safe_load(EXPERIMENT_FILE.read_text()))

    @property
    def metric(self) -> str:
        return str(self.base["metric"])

    @property
    def names(self) -> list[str]:
        return list(self.base["parameters"])

    def experiment(self, name: str, seed: int, run_dir: Path, phases: list[dict]):
        from raysweep.spec import experiment_from_dict

        data = {k: v for k, v in self.base.items() if k not in ("budget", "phases")}
        data.update(name=name, storage=str(run_dir), seed=seed, phases=phases, wandb={"mode": "disabled"})
        return experiment_from_dict(data)

    def phases(self, method: str) -> tuple[list[dict], list[float]]:
        """The phases of a method (without trials) and the expected steps of one of their trials."""
        if method == "raysweep":
            phases = [{**{k: v for k, v in p.items() if k != "share"}, "max_trial_time": GUARD_TIME} for p in self.base["phases"]]
            return phases, [STEPS_PER_TRIAL["grid"], STEPS_PER_TRIAL["exploit"], STEPS_PER_TRIAL["refine"]]
        if method == "random":
            return [{"name": "random", "searcher": "random", "max_trial_time": GUARD_TIME}], [STEPS_PER_TRIAL["prior"]]
        if method == "ax_single":
            return [{"name": "bayes", "searcher": "ax", "random_samples": 4, "max_trial_time": GUARD_TIME}], [STEPS_PER_TRIAL["prior"]]
        raise ValueError(f"{method} is not run on {self.name}; choose from {', '.join(PPO_METHODS)}")

    def rows(self, run_dir: Path) -> pd.DataFrame:
        frame = pd.read_parquet(run_dir / "results" / "trials")
        steps = frame["metric.timesteps"].astype(float).fillna(0.0)
        return pd.DataFrame(
            {
                "phase": frame["phase"].astype(int),
                "status": frame["status"].astype(str),
                "fidelity": np.where(frame["status"].astype(str) == "completed", 1.0,
                                     steps / frame["param.total_timesteps"].astype(float)),
                "value": -frame["objective"].astype(float),  # minimised, as for the simulated problems
                "cost": steps,
                "wall_s": frame["cost_s"].astype(float),
                "ended": frame["ended_at"].map(lambda t: t.timestamp()).astype(float),
                "params": [json.dumps({n: _plain(r[f"param.{n}"]) for n in self.names}) for _, r in frame.iterrows()],
            }
        )

    def spent(self, run_dir: Path) -> float:
        path = run_dir / "results" / "trials"
        if not path.exists():
            return 0.0
        return float(pd.read_parquet(path, columns=["metric.timesteps"])["metric.timesteps"].fillna(0.0).sum())


def _plain(value: Any) -> Any:
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    return value


def run_method(problem: PPOProblem, method: str, seed: int, budget_cost: float, work: Path, log) -> pd.DataFrame:
    """Run one method's phases one at a time, each sized from the steps left (the last one generously:
    trials past the budget are not counted, a budget left unspent would be the method's loss)."""
    from raysweep import sweep

    shares = (0.3, 0.5, 0.2)
    phases, steps = problem.phases(method)
    run_dir = work / "run"
    planned: list[int] = []
    for k, phase in enumerate(phases):
        left = budget_cost - problem.spent(run_dir)
        last = k == len(phases) - 1
        if last:
            trials = math.ceil(left / steps[k]) if left > 0 else 0
        else:
            trials = round(min(shares[k] * budget_cost, left) / steps[k])
        if trials <= 0:
            break
        planned.append(trials)
        specs = [dict(p, trials=(planned[i] if i < len(planned) else 1)) for i, p in enumerate(phases)]
        sweep.run(problem.experiment(method, seed, run_dir, specs), phase=k + 1, stream=log)
    return problem.rows(run_dir)


# -- re-training the recommended configs ---------------------------------------------------------
def _train_once(job: tuple[dict, int]) -> dict:
    """The last report of one fresh PPO run (in a pool worker, outside Ray)."""
    from experiments.cartpole_ppo import train

    config, seed = job
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):  # outside Tune, train() prints one JSON line per report
        train({**config, "seed": seed})
    lines = [line for line in buffer.getvalue().splitlines() if line.startswith("{")]
    return json.loads(lines[-1])


def incumbents(rows: pd.DataFrame, budget_cost: float) -> list[int]:
    """Positions (in end order) of every row that is the recommendation after some trial within the budget."""
    cum = rows["cost"].cumsum().to_numpy()
    full = (rows["fidelity"] >= 1 - 1e-9).to_numpy()
    value = rows["value"].to_numpy()
    picked = []
    for i in range(len(rows)):
        if cum[i] > budget_cost + 1e-6:
            break
        seen = np.arange(len(rows)) <= i
        pool = seen & full if (seen & full).any() else seen
        best = int(np.flatnonzero(pool)[np.argmin(value[pool])])
        if best not in picked:
            picked.append(best)
    return picked


def evaluate(problem: PPOProblem, rows: pd.DataFrame, budget_cost: float, cache_path: Path, log) -> pd.Series:
    """Normalised regret of every recommended config (NaN for the other rows)."""
    cache: dict[str, dict[str, dict]] = json.loads(cache_path.read_text()) if cache_path.exists() else {}
    picks = incumbents(rows, budget_cost)
    keys = {i: json.dumps(json.loads(rows["params"].iloc[i]), sort_keys=True) for i in picks}
    jobs = sorted({(keys[i], s) for i in picks for s in EVAL_SEEDS if str(s) not in cache.get(keys[i], {})})
    if jobs:
        print(f"re-training {len(jobs)} runs of {len(picks)} recommended configs", file=log, flush=True)
        with multiprocessing.get_context("spawn").Pool(2) as pool:
            returns = pool.map(_train_once, [(json.loads(k), s) for k, s in jobs], chunksize=1)
        for (key, s), value in zip(jobs, returns):
            cache.setdefault(key, {})[str(s)] = value
        tmp = cache_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(cache, indent=0))
        tmp.replace(cache_path)
    regret = pd.Series(np.nan, index=rows.index)
    for i in picks:
        mean = float(np.mean([cache[keys[i]][str(s)][problem.metric] for s in EVAL_SEEDS]))
        regret.iloc[i] = (RETURN_CAP - mean) / RETURN_CAP
    return regret


CARTPOLE_PPO = PPOProblem()
