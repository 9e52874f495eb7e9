"""The configs a grid or random phase runs, fixed before the phase starts.

A grid has ``resolution`` points per parameter in the parameter's own scale.
When the full grid holds more points than the phase has trials, a seeded,
space-filling subset runs; when it holds fewer, all of it runs and biased
random samples fill the rest. No design ever holds a duplicate, so a phase
never waits for trials that will not come: when the whole space has fewer
distinct configs than the phase's trials, the design is simply shorter.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from raysweep.space import Config, SearchSpace, config_key

#: Candidate subsets drawn when choosing a space-filling subset of a large grid.
_SUBSET_CANDIDATES = 32


@dataclass(frozen=True)
class Design:
    """The configs of one grid or random phase, and how they were chosen."""

    configs: tuple[Config, ...]
    full_grid_size: int | None  # None for a random design
    from_grid: int  # configs taken from the grid
    filled: int  # configs drawn from the biased distributions
    distinct_limit: int | None  # how many distinct configs the space has, if finite

    def describe(self, trials: int) -> str:
        if self.full_grid_size is None:
            text = f"{self.filled} biased random samples"
        elif self.full_grid_size > self.from_grid:
            text = f"grid of {self.full_grid_size} points; a space-filling subset of {self.from_grid}"
        else:
            text = f"full grid of {self.full_grid_size} points"
            if self.filled:
                text += f" + {self.filled} biased random samples"
        if len(self.configs) < trials:
            text += f"; the space has only {self.distinct_limit} distinct configs, so {len(self.configs)} of {trials} trials run"
        return text


def grid_axes(space: SearchSpace, resolution: int) -> list[list]:
    return [parameter.grid(resolution) for parameter in space]


def grid_design(space: SearchSpace, resolution: int, trials: int, seed: int) -> Design:
    rng = np.random.default_rng(seed)
    axes = grid_axes(space, resolution)
    full_size = math.prod(len(axis) for axis in axes)
    names = space.names
    if full_size > trials:
        indices = _space_filling_subset(axes, trials, rng)
        configs = [{name: axes[d][i] for d, (name, i) in enumerate(zip(names, row))} for row in indices]
        return Design(tuple(configs), full_size, len(configs), 0, space.distinct_configs())
    configs = [
        {name: axes[d][i] for d, (name, i) in enumerate(zip(names, row))}
        for row in np.ndindex(*(len(axis) for axis in axes))
    ]
    filled = _fill(space, configs, trials, rng)
    return Design(tuple(configs), full_size, full_size, filled, space.distinct_configs())


def random_design(space: SearchSpace, trials: int, seed: int) -> Design:
    rng = np.random.default_rng(seed)
    configs: list[Config] = []
    filled = _fill(space, configs, trials, rng)
    return Design(tuple(configs), None, 0, filled, space.distinct_configs())


def _fill(space: SearchSpace, configs: list[Config], trials: int, rng: np.random.Generator) -> int:
    """Append distinct biased samples until ``trials`` configs or the space runs out."""
    names = space.names
    seen = {config_key(c, names) for c in configs}
    limit = space.distinct_configs()
    target = trials if limit is None else min(trials, limit)
    added = 0
    misses = 0
    while len(configs) < target:
        batch = space.sample(rng, max(8, 2 * (target - len(configs))))
        progress = False
        for config in batch:
            key = config_key(config, names)
            if key in seen:
                continue
            seen.add(key)
            configs.append(config)
            added += 1
            progress = True
            if len(configs) >= target:
                break
        misses = 0 if progress else misses + 1
        if misses > 50:
            # A strongly biased law over a small discrete space may almost never
            # draw its last few configs: take them uniformly instead.
            added += _fill_uniformly(space, configs, seen, target, rng)
            break
    return added


def _fill_uniformly(space: SearchSpace, configs: list[Config], seen: set, target: int, rng) -> int:
    from itertools import product

    values = [parameter.discrete_values() for parameter in space]
    remaining = [dict(zip(space.names, combo)) for combo in product(*values)]
    rng.shuffle(remaining)
    added = 0
    for config in remaining:
        if len(configs) >= target:
            break
        key = config_key(config, space.names)
        if key not in seen:
            seen.add(key)
            configs.append(config)
            added += 1
    return added


def _space_filling_subset(axes: list[list], n: int, rng: np.random.Generator) -> list[tuple[int, ...]]:
    """``n`` distinct grid points, each axis's levels used as evenly as possible.

    Each candidate is a Latin-hypercube-like assignment of grid levels (per
    axis a shuffled, balanced list of level indices); of several seeded
    candidates the one with the largest minimum pairwise distance wins. It
    never enumerates the full grid, which may be astronomically large.
    """
    sizes = [len(axis) for axis in axes]
    scale = np.array([max(size - 1, 1) for size in sizes], dtype=float)
    best: list[tuple[int, ...]] | None = None
    best_score = -1.0
    for _ in range(_SUBSET_CANDIDATES):
        rows = _balanced_rows(sizes, n, rng)
        points = np.array(rows, dtype=float) / scale
        score = _min_distance(points)
        if score > best_score:
            best, best_score = rows, score
    assert best is not None
    return best


def _balanced_rows(sizes: list[int], n: int, rng: np.random.Generator) -> list[tuple[int, ...]]:
    columns = []
    for size in sizes:
        levels = np.tile(np.arange(size), n // size + 1)[:n]
        # Spread the leftover levels over the axis rather than always the first.
        if n % size:
            levels[-(n % size):] = np.sort(rng.choice(size, n % size, replace=False))
        columns.append(rng.permutation(levels))
    rows = [tuple(int(c[i]) for c in columns) for i in range(n)]
    seen: set[tuple[int, ...]] = set()
    unique: list[tuple[int, ...]] = []
    for row in rows:
        while row in seen:  # rare: re-draw a colliding point at random
            row = tuple(int(rng.integers(size)) for size in sizes)
        seen.add(row)
        unique.append(row)
    return unique


def _min_distance(points: np.ndarray) -> float:
    if len(points) < 2:
        return 0.0
    squared = (points**2).sum(1)
    distances = squared[:, None] + squared[None, :] - 2 * points @ points.T
    np.fill_diagonal(distances, np.inf)
    return float(distances.min())
