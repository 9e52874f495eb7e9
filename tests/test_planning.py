"""Trials per phase: shares of the budget, and budgets too small for the phases."""

from __future__ import annotations

import pytest

from raysweep import planning
from raysweep.errors import SpecError
from raysweep.quick import quick_experiment
from raysweep.spec import experiment_from_dict
from tests.conftest import synthetic_experiment


def three_phases(budget: int):
    return experiment_from_dict(
        synthetic_experiment(
            budget=budget,
            phases=[
                {"name": "explore", "searcher": "random", "share": 0.3},
                {"name": "exploit", "searcher": "ax", "share": 0.5},
                {"name": "refine", "searcher": "ax", "share": 0.2, "narrow": {"std_multiplier": 1.0}},
            ],
        )
    )


def test_shares_add_up_to_the_budget():
    for budget in range(3, 40):
        counts = planning.phase_trials(three_phases(budget))
        assert sum(counts) == budget and min(counts) >= 1


def test_a_phase_whose_share_rounds_to_zero_is_refused_with_the_smallest_budget():
    assert planning.smallest_budget(three_phases(10)) == 3
    with pytest.raises(
        SpecError,
        match=r"^budget: phases\[2\] \(refine\) gets 0 trials from its share 0\.2; every phase needs at least one, "
        r"so the smallest budget for these phases is 3; got 2$",
    ):
        planning.plan(three_phases(2))


def test_fixed_trials_count_before_shares():
    experiment = experiment_from_dict(
        synthetic_experiment(
            budget=5,
            phases=[
                {"name": "explore", "searcher": "random", "trials": 4},
                {"name": "a", "searcher": "random", "share": 0.5},
                {"name": "b", "searcher": "random", "share": 0.5},
            ],
        )
    )
    assert planning.smallest_budget(experiment) == 6
    with pytest.raises(SpecError, match=r"smallest budget for these phases is 6; got 5$"):
        planning.plan(experiment)


@pytest.mark.parametrize("budget", [3, 4, 5, 10, 14, 15])
def test_quick_mode_plans_every_budget_from_three(budget):
    data = quick_experiment(trainable="tests.trainables.synthetic:train", params="x:0-1", budget=budget, metric="score", mode="max")
    plans = planning.plan(experiment_from_dict(data))
    assert sum(p.trials for p in plans) == budget and all(p.trials >= 1 for p in plans)


@pytest.mark.parametrize("budget", [1, 2])
def test_quick_mode_refuses_a_budget_under_three(budget):
    data = quick_experiment(trainable="tests.trainables.synthetic:train", params="x:0-1", budget=budget, metric="score", mode="max")
    with pytest.raises(SpecError, match=rf"smallest budget for these phases is 3; got {budget}$"):
        planning.plan(experiment_from_dict(data))
