"""The ``tune_random_asha`` baseline of ``benchmarks.search_quality``: bare Ray Tune, shared by every problem.

Random search (``BasicVariantGenerator``) with an ASHA scheduler, ``reuse_actors=True``,
one CPU per trial, stopped as a whole once the cost the trials have reported adds up
to the budget. Each problem supplies its trainable, its Tune space, its scheduler and
the reported metric that holds a trial's cumulative cost.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable


def random_asha(
    trainable: Callable[..., Any],
    space: dict[str, Any],
    *,
    metric: str,
    mode: str,
    seed: int,
    scheduler: Any,
    num_samples: int,
    cost_key: str,
    budget: float,
    storage: Path,
) -> list[tuple[float, dict, dict]]:
    """Run the search; return, per trial, (when its last result came, that result, its config)."""
    from ray import tune
    from ray.tune.search.basic_variant import BasicVariantGenerator
    from ray.tune.stopper import Stopper

    last: dict[str, tuple[float, dict, dict]] = {}

    class Record(tune.Callback):
        def on_trial_result(self, iteration, trials, trial, result, **info):
            last[trial.trial_id] = (time.time(), result, dict(trial.config))

    class CostBudget(Stopper):
        """Stops every trial once the trials' cumulative costs add up to the budget."""

        def __init__(self) -> None:
            self.cost: dict[str, float] = {}

        def __call__(self, trial_id: str, result: dict) -> bool:
            self.cost[trial_id] = float(result.get(cost_key) or 0.0)
            return False

        def stop_all(self) -> bool:
            return sum(self.cost.values()) >= budget

    tuner = tune.Tuner(
        tune.with_resources(trainable, {"cpu": 1}),
        param_space=space,
        tune_config=tune.TuneConfig(
            metric=metric,
            mode=mode,
            search_alg=BasicVariantGenerator(random_state=seed),
            scheduler=scheduler,
            num_samples=num_samples,
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(name="tune", storage_path=str(storage), stop=CostBudget(), callbacks=[Record()], verbose=0),
    )
    tuner.fit()
    return list(last.values())
