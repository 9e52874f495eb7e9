"""The subset of observations a Bayesian phase's GP is fit on past MAX_MODEL_ROWS."""

from __future__ import annotations

import numpy as np
import pytest

from raysweep.searchers.ax.subset import MAX_MODEL_ROWS, Candidate, training_subset


def candidates(count: int, seed: int = 0, own: int = 0, in_box=lambda unit: True) -> list[Candidate]:
    rng = np.random.default_rng(seed)
    units = rng.random((count, 2))
    return [
        Candidate(key=100 + i, unit=u, objective=-float(np.sum((u - 0.3) ** 2)), own=i >= count - own,
                  in_box=bool(in_box(u)), order=i)
        for i, u in enumerate(units)
    ]


def test_everything_is_kept_up_to_the_limit():
    few = candidates(MAX_MODEL_ROWS)
    assert training_subset(few) == [c.key for c in few]


def test_past_the_limit_the_subset_holds_own_trials_the_best_the_incumbents_neighbours_and_a_spread():
    many = candidates(1000, own=30)
    keep = training_subset(many, limit=40)
    assert len(keep) == len(set(keep)) == 40
    by_key = {c.key: c for c in many}
    # a quarter: this phase's own trials, most recent first
    assert keep[:10] == [c.key for c in sorted(many, key=lambda c: -c.order) if c.own][:10]
    # the best observation overall is in
    best = max(many, key=lambda c: c.objective)
    assert best.key in keep
    # the space-filling quarter reaches far from the optimum at (0.3, 0.3)
    far = [by_key[k] for k in keep[30:]]
    assert max(np.linalg.norm(c.unit - 0.3) for c in far) > 0.7
    # deterministic
    assert training_subset(many, limit=40) == keep


def test_neighbours_inside_the_box_come_first():
    many = candidates(500, in_box=lambda u: u[0] > 0.8)
    keep = training_subset(many, limit=40)
    neighbours = keep[10:20]  # no own trials here: best 10, then 10 neighbours
    assert all({c.key: c for c in many}[k].in_box for k in neighbours)


def test_a_tiny_limit_is_refused():
    with pytest.raises(ValueError, match=r"^limit must be at least 4 \(one row for each part of the subset\); got 3$"):
        training_subset(candidates(10), limit=3)
