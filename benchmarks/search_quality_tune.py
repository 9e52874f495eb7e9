"""The bare Ray Tune loop of ``benchmarks.search_quality``'s Tune-based baselines, shared by every problem.

Random search + ASHA, BOHB and screening then top-K all run here: one CPU per
trial, ``reuse_actors=True``, stopped as a whole once the cost the trials have
reported adds up to the budget. Each problem supplies its trainable, its Tune
space and the reported metric that holds a run's cumulative cost; each method its
search algorithm and scheduler.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Callable


def search(
    trainable: Callable[..., Any],
    space: dict[str, Any],
    *,
    metric: str,
    mode: str,
    search_alg: Any,
    scheduler: Any,
    num_samples: int,
    cost_key: str,
    budget: float,
    storage: Path,
    stop: dict | None = None,
) -> list[tuple[float, dict, dict, float]]:
    """Run the search; return, per trial, (when its last result came, that result, its config, its cost).

    A trial's cost is the ``cost_key`` of its last result, plus, when the trial was paused and
    restarted from scratch (HyperBand without checkpoints: ``cost_key`` falls back), the cost each
    earlier attempt had reached. ``budget`` (same unit; ``math.inf`` for none) stops every trial once
    the trials' costs add up to it. ``stop``: Tune's per-trial stop criterion (e.g. ``{"training_iteration": 1}``).
    """
    from ray import tune
    from ray.tune.stopper import Stopper

    last: dict[str, tuple[float, dict, dict]] = {}
    attempt: dict[str, float] = {}  # the current attempt's cost so far, per trial
    banked: dict[str, float] = {}  # the cost of a trial's earlier, restarted attempts

    def account(trial_id: str, result: dict) -> None:
        cost = float(result.get(cost_key) or 0.0)
        if cost < attempt.get(trial_id, 0.0):  # the trial started again from the beginning
            banked[trial_id] = banked.get(trial_id, 0.0) + attempt[trial_id]
        attempt[trial_id] = cost

    def total(trial_id: str) -> float:
        return banked.get(trial_id, 0.0) + attempt.get(trial_id, 0.0)

    class Record(tune.Callback):
        def on_trial_result(self, iteration, trials, trial, result, **info):
            last[trial.trial_id] = (time.time(), result, dict(trial.config))

    class CostBudget(Stopper):
        """Stops every trial once the trials' cumulative costs add up to the budget."""

        def __call__(self, trial_id: str, result: dict) -> bool:
            account(trial_id, result)
            return bool(stop) and any(float(result.get(k, 0.0)) >= v for k, v in stop.items())

        def stop_all(self) -> bool:
            return math.isfinite(budget) and sum(total(t) for t in attempt) >= budget

    tuner = tune.Tuner(
        tune.with_resources(trainable, {"cpu": 1}),
        param_space=space,
        tune_config=tune.TuneConfig(
            metric=metric,
            mode=mode,
            search_alg=search_alg,
            scheduler=scheduler,
            num_samples=num_samples,
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(name="tune", storage_path=str(storage), stop=CostBudget(), callbacks=[Record()], verbose=0),
    )
    tuner.fit()
    return [(ended, result, config, total(trial_id)) for trial_id, (ended, result, config) in last.items()]
