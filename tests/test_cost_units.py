"""Which unit a cost is shown in, and how it is written."""

import math

import pytest

from raysweep.cost_units import HOURS_FROM_S, MINUTES_FROM_S, cost_unit, format_cost, format_number


@pytest.mark.parametrize(
    "seconds, gpu, name, short",
    [
        (0.0, False, "seconds", "s"),
        (2.0, False, "seconds", "s"),
        (MINUTES_FROM_S - 0.01, False, "seconds", "s"),
        (MINUTES_FROM_S, False, "minutes", "min"),
        (HOURS_FROM_S - 0.01, False, "minutes", "min"),
        (HOURS_FROM_S, False, "hours", "h"),
        (1e7, False, "hours", "h"),
        (2.0, True, "GPU-seconds", "GPU-s"),
        (600.0, True, "GPU-minutes", "GPU-min"),
        (36000.0, True, "GPU-hours", "GPU-h"),
    ],
)
def test_the_unit_follows_the_magnitude(seconds, gpu, name, short):
    unit = cost_unit(seconds, gpu)
    assert (unit.name, unit.short, unit.gpu) == (name, short, gpu)


def test_many_values_take_the_unit_of_the_largest_finite_one():
    assert cost_unit([1.0, 30.0, 5000.0]).name == "minutes"
    assert cost_unit([1.0, float("nan"), float("inf"), None]).name == "seconds"
    assert cost_unit([]).name == "seconds"
    assert cost_unit([10.0, 9000.0], gpu=True).label == "GPU-hours"
    assert cost_unit([10.0]).label == "trial seconds"


def test_costs_are_written_in_their_unit_to_three_digits():
    assert format_cost(2.0) == "2 s"
    assert format_cost(0.5) == "0.5 s"
    assert format_cost(150.0) == "2.5 min"
    assert format_cost(5400.0) == "90 min"
    assert format_cost(4 * 3600 + 1234) == "4.34 h"
    assert format_cost(3600 * 1234.4, gpu=True) == "1,234 GPU-h"
    assert cost_unit([5000.0]).format(90.0) == "1.5 min"  # one unit for a column, even for its small values
    assert format_number(0.000012345) == "1.2e-05" and format_number(0) == "0" and format_number(12.345) == "12.3"
    assert format_number(math.nan) == "nan"
