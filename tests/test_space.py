import math

import numpy as np
import pytest

from raysweep.space import Parameter, SearchSpace


def test_log_parameter_grid_is_evenly_spaced_in_log_scale():
    p = Parameter("lr", "log_uniform", min=1e-4, max=1e-2)
    assert p.grid(3) == [1e-4, 1e-3, 1e-2]


def test_logit_normal_spreads_evenly_in_log_one_minus_x():
    p = Parameter("gamma", "logit_normal", min=0.9, max=0.999)
    points = p.grid(3)
    assert points[0] == 0.9 and points[-1] == 0.999
    assert points[1] == pytest.approx(0.99)


@pytest.mark.parametrize(
    "parameter, raw",
    [
        (Parameter("a", "uniform", min=-1.0, max=3.0), 0.7),
        (Parameter("b", "log_uniform", min=1e-5, max=1.0), 3e-3),
        (Parameter("c", "logit_normal", min=0.8, max=0.999), 0.97),
    ],
)
def test_unit_round_trip_keeps_raw_value(parameter, raw):
    assert parameter.from_unit(parameter.to_unit(raw)) == pytest.approx(raw, rel=1e-9)


def test_int_and_pow2_values_are_legal():
    rng = np.random.default_rng(0)
    steps = Parameter("steps", "int_log_uniform", min=20_000, max=200_000)
    batch = Parameter("mb", "pow2", min=2, max=32)
    assert all(isinstance(v, int) and 20_000 <= v <= 200_000 for v in steps.sample(rng, 200))
    assert set(batch.sample(rng, 500)) == {2, 4, 8, 16, 32}
    assert batch.grid(5) == [2, 4, 8, 16, 32]


def test_mean_biases_samples_and_grid_toward_it():
    rng = np.random.default_rng(1)
    plain = Parameter("t", "log_uniform", min=1e8, max=5e9)
    biased = plain.with_bias(mean=5e8, scale=0.1)
    samples = np.log(biased.sample(rng, 2000))
    assert abs(np.median(samples) - math.log(5e8)) < 0.15
    assert all(1e8 <= v <= 5e9 for v in biased.sample(rng, 500))  # bounds never change
    grid = biased.grid(5)
    assert grid[0] > 1e8 and grid[-1] < 5e9 and min(grid, key=lambda v: abs(math.log(v / 5e8))) == grid[2]


def test_distinct_configs_counts_discrete_spaces_only():
    discrete = SearchSpace((Parameter("mb", "pow2", min=2, max=8), Parameter("act", "choice", values=("a", "b"))))
    assert discrete.distinct_configs() == 6
    mixed = SearchSpace((Parameter("x", "uniform", min=0, max=1),))
    assert mixed.distinct_configs() is None
