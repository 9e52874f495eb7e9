"""Which observations the GP is fit on once there are too many for an exact GP.

An exact GP costs O(n^3) to fit and O(n^2) per acquisition evaluation, so a
sweep of thousands of trials cannot fit on all of them within a second. Past
:data:`MAX_MODEL_ROWS` usable observations, the model is fit on a subset of
that size (the "subset of data" approximation, Rasmussen & Williams, *Gaussian
Processes for Machine Learning*, 2006, section 8.3.3), chosen for where the
phase searches, in the spirit of TuRBO's local models (Eriksson et al.,
"Scalable Global Optimization via Local Bayesian Optimization", NeurIPS 2019):

1. this phase's own finished trials, most recent first (a quarter of the rows);
2. the best observations by objective (a quarter);
3. the observations nearest the incumbent, those inside the phase's box first
   (a quarter);
4. the rest filled space-fillingly: greedy farthest-point selection among the
   remaining observations, in unit coordinates, so the model still sees every
   region the sweep has measured.

Every observation keeps its raw values; the subset only decides which of them
the GP sees. The choice is deterministic (ties go to the earlier observation).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

#: Usable observations above which the GP is fit on a subset of this size. At
#: this size a cold fit takes a few CPU seconds and a suggestion well under one
#: on two cores (README, Performance).
MAX_MODEL_ROWS = 200


@dataclass(frozen=True)
class Candidate:
    """One usable observation as the subset sees it.

    ``unit``: its config in unit coordinates, shape ``(d,)``; ``objective``:
    its value, larger is better (negate for ``min``); ``own``: finished in this
    phase; ``in_box``: inside the phase's box (True when there is none);
    ``order``: position in the history (larger is more recent).
    """

    key: int
    unit: np.ndarray
    objective: float
    own: bool
    in_box: bool
    order: int


def training_subset(candidates: Sequence[Candidate], limit: int = MAX_MODEL_ROWS) -> list[int]:
    """The keys of the observations to fit on: all of them up to ``limit``, else
    ``limit`` of them chosen as the module docstring says, in that order.

    Raises ValueError for a ``limit`` below 4 (one row per part).
    """
    if limit < 4:
        raise ValueError(f"limit must be at least 4 (one row for each part of the subset); got {limit!r}")
    if len(candidates) <= limit:
        return [c.key for c in candidates]
    quarter = limit // 4
    chosen: list[int] = []  # positions in candidates
    taken = np.zeros(len(candidates), dtype=bool)

    def take(order: Sequence[int], count: int) -> None:
        for position in order:
            if count <= 0:
                return
            if not taken[position]:
                taken[position] = True
                chosen.append(position)
                count -= 1

    positions = range(len(candidates))
    own = sorted((p for p in positions if candidates[p].own), key=lambda p: -candidates[p].order)
    take(own, quarter)
    best = sorted(positions, key=lambda p: (-candidates[p].objective, p))
    take(best, quarter)
    units = np.stack([c.unit for c in candidates])
    incumbent = units[best[0]]
    distance = np.linalg.norm(units - incumbent, axis=1)
    near = sorted(positions, key=lambda p: (not candidates[p].in_box, distance[p], p))
    take(near, quarter)
    _farthest_points(units, taken, chosen, limit - len(chosen))
    return [candidates[p].key for p in chosen]


def _farthest_points(units: np.ndarray, taken: np.ndarray, chosen: list[int], count: int) -> None:
    """Add ``count`` positions, each the one farthest from everything chosen so far."""
    if count <= 0:
        return
    nearest = np.full(len(units), np.inf)
    for position in chosen:
        nearest = np.minimum(nearest, np.linalg.norm(units - units[position], axis=1))
    nearest[taken] = -np.inf
    for _ in range(count):
        position = int(np.argmax(nearest))  # the first of equals: deterministic
        if nearest[position] == -np.inf:
            return
        taken[position] = True
        chosen.append(position)
        nearest = np.minimum(nearest, np.linalg.norm(units - units[position], axis=1))
        nearest[taken] = -np.inf
