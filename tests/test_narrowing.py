import json
import math

import pytest

from raysweep.narrowing import (
    Box,
    BoxEdge,
    box_edges,
    box_edges_per_trial,
    describe_box_edges,
    narrow,
    phase_box,
    top_observations,
)
from raysweep.records import Observation, TrialStatus
from raysweep.space import Parameter, SearchSpace


def obs(i, objective, status=TrialStatus.COMPLETED, **params):
    return Observation(
        trial_id=f"t{i}", phase=1, params=params, status=status, objective=objective, cost_s=1.0, gpu_s=0.0, iterations=1
    )


def observations(name, values, objectives=None, **fixed):
    objectives = objectives or [10.0 - i for i in range(len(values))]
    return [obs(i, o, **{name: v}, **fixed) for i, (v, o) in enumerate(zip(values, objectives))]


def test_log_parameter_narrows_around_the_geometric_mean():
    space = SearchSpace((Parameter("lr", "log_uniform", min=1e-6, max=1.0),))
    box = narrow(space, observations("lr", [1e-4, 1e-3, 1e-2]), "max", min_top=3, top_fraction=1.0, std_multiplier=1.0)
    lo, hi = box.ranges["lr"]
    # mean of ln(lr) is ln(1e-3), sample std is ln(10): one std each way is a decade
    assert lo == pytest.approx(1e-4, rel=1e-9) and hi == pytest.approx(1e-2, rel=1e-9)
    half = narrow(space, observations("lr", [1e-4, 1e-3, 1e-2]), "max", min_top=3, top_fraction=1.0, std_multiplier=0.5)
    assert half.ranges["lr"] == pytest.approx((1e-3 / math.sqrt(10), 1e-3 * math.sqrt(10)), rel=1e-9)


def test_logit_normal_parameter_narrows_in_log_one_minus_x():
    space = SearchSpace((Parameter("gamma", "logit_normal", min=0.8, max=0.9999),))
    box = narrow(space, observations("gamma", [0.9, 0.99, 0.999]), "max", min_top=3, top_fraction=1.0, std_multiplier=0.5)
    lo, hi = box.ranges["gamma"]
    # log(1 - gamma) has mean log(0.01) and std log(10); the ends map back through 1 - exp(.)
    assert lo == pytest.approx(1 - 0.01 * math.sqrt(10), rel=1e-9)
    assert hi == pytest.approx(1 - 0.01 / math.sqrt(10), rel=1e-9)
    assert lo < hi


def test_box_is_clipped_to_the_declared_bounds():
    space = SearchSpace((Parameter("x", "uniform", min=0.0, max=1.0),))
    box = narrow(space, observations("x", [0.7, 0.95, 1.0]), "max", min_top=3, top_fraction=1.0, std_multiplier=3.0)
    lo, hi = box.ranges["x"]
    assert hi == 1.0 and 0.0 <= lo < 0.7


def test_integer_ends_round_outward_and_keep_the_mean():
    space = SearchSpace((Parameter("layers", "int_uniform", min=1, max=10),))
    values = [3, 4, 6]  # mean 4.33, std 1.53: [2.81, 5.86] before rounding
    box = narrow(space, observations("layers", values), "max", min_top=3, top_fraction=1.0, std_multiplier=1.0)
    assert box.ranges["layers"] == (2, 6)
    assert all(isinstance(v, int) for v in box.ranges["layers"])


def test_pow2_ends_are_powers_of_two_rounded_outward():
    space = SearchSpace((Parameter("batch", "pow2", min=16, max=4096),))
    box = narrow(space, observations("batch", [64, 128, 256]), "max", min_top=3, top_fraction=1.0, std_multiplier=0.5)
    assert box.ranges["batch"] == (64, 256)  # [90.5, 181] widened to the enclosing powers


def test_min_width_keeps_a_box_from_collapsing():
    space = SearchSpace((Parameter("lr", "log_uniform", min=1e-5, max=1e-1), Parameter("x", "uniform", min=0.0, max=1.0)))
    same = [obs(i, 1.0, lr=1e-3, x=1.0) for i in range(5)]
    box = narrow(space, same, "max", std_multiplier=2.0, min_width=0.1)
    lo, hi = box.ranges["lr"]
    # 10% of four decades, centred on 1e-3 in log scale
    assert math.log10(hi) - math.log10(lo) == pytest.approx(0.4, rel=1e-9)
    assert math.log10(lo) + math.log10(hi) == pytest.approx(-6.0, rel=1e-9)
    # at a bound the minimum-width interval shifts inside instead of shrinking
    assert box.ranges["x"] == pytest.approx((0.9, 1.0))


def test_choice_keeps_the_values_seen_among_the_top_configs():
    space = SearchSpace((Parameter("act", "choice", values=("relu", "tanh", "gelu", "silu")),))
    top = [obs(i, 10.0 - i, act=a) for i, a in enumerate(["gelu", "relu", "gelu", "relu", "gelu", "tanh", "silu"])]
    box = narrow(space, top, "max", min_top=5, top_fraction=0.1, std_multiplier=1.0)
    assert box.choices["act"] == ("relu", "gelu")  # declared order; tanh and silu were not in the top 5


def test_failed_observations_never_count():
    space = SearchSpace((Parameter("x", "uniform", min=0.0, max=10.0),))
    good = [obs(i, 1.0 + i * 0.01, x=2.0 + 0.1 * i) for i in range(5)]
    failed = [
        obs(10, 99.0, status=TrialStatus.FAILED, x=9.0),
        obs(11, float("nan"), x=9.5),
        obs(12, None, x=9.9),
    ]
    box = narrow(space, good + failed, "max", min_top=5, std_multiplier=1.0)
    assert box.ranges["x"][1] < 3.0


def test_too_few_usable_points_is_a_clear_error():
    space = SearchSpace((Parameter("x", "uniform", min=0.0, max=1.0),))
    few = [obs(0, 1.0, x=0.1), obs(1, 2.0, x=0.2), obs(2, 3.0, status=TrialStatus.FAILED, x=0.3)]
    with pytest.raises(ValueError, match=r"at least min_top=5 usable observations .*got 2 of 3 \(1 failed"):
        narrow(space, few, "max", std_multiplier=1.0)


def test_completed_observations_are_preferred_over_partial_ones():
    completed = [obs(i, 1.0 + i, x=0.1) for i in range(5)]
    stopped = [obs(10, 50.0, status=TrialStatus.EARLY_STOPPED, x=0.9)]
    top = top_observations(completed + stopped, "max", min_top=5)
    assert all(o.status is TrialStatus.COMPLETED for o in top)
    # with fewer than min_top completed trials, early-stopped and time-budget ones join the ranking
    partial = [obs(20 + i, 5.0 + i, status=TrialStatus.TIME_BUDGET, x=0.5) for i in range(3)]
    top = top_observations(completed[:2] + partial + stopped, "max", min_top=5)
    assert len(top) == 5 and top[0].trial_id == "t10"


def test_min_mode_takes_the_lowest_objectives():
    space = SearchSpace((Parameter("x", "uniform", min=0.0, max=1.0),))
    points = [obs(i, float(i), x=0.1 * i) for i in range(10)]
    box = narrow(space, points, "min", min_top=3, top_fraction=0.1, std_multiplier=1.0, min_width=0.01)
    assert box.ranges["x"] == pytest.approx((0.0, 0.2))


def test_bad_arguments_name_the_rule_and_the_value():
    space = SearchSpace((Parameter("x", "uniform", min=0.0, max=1.0),))
    points = [obs(i, float(i), x=0.1 * i) for i in range(6)]
    with pytest.raises(ValueError, match=r"mode must be 'max' or 'min'; got 'maximize'"):
        narrow(space, points, "maximize", std_multiplier=1.0)
    with pytest.raises(ValueError, match=r"std_multiplier must be a finite number >= 0; got -1"):
        narrow(space, points, "max", std_multiplier=-1)
    with pytest.raises(ValueError, match=r"min_width must lie in \(0, 1\].*got 0"):
        narrow(space, points, "max", std_multiplier=1.0, min_width=0)
    with pytest.raises(ValueError, match=r"top_fraction must lie in \(0, 1\]; got 1.5"):
        narrow(space, points, "max", std_multiplier=1.0, top_fraction=1.5)


def test_box_round_trips_through_json_and_checks_membership():
    space = SearchSpace(
        (
            Parameter("lr", "log_uniform", min=1e-5, max=1e-1),
            Parameter("steps", "int_log_uniform", min=100, max=10_000),
            Parameter("act", "choice", values=("relu", "tanh", "gelu")),
        )
    )
    box = Box(ranges={"lr": (1e-4, 1e-3), "steps": (200, 5000)}, choices={"act": ("relu", "gelu")})
    again = Box.from_dict(json.loads(json.dumps(box.to_dict())))
    assert again == box
    assert isinstance(again.ranges["steps"][0], int)
    box.check_within(space)
    assert box.contains({"lr": 5e-4, "steps": 300, "act": "gelu"})
    assert not box.contains({"lr": 5e-3, "steps": 300, "act": "gelu"})
    assert not box.contains({"lr": 5e-4, "steps": 300, "act": "tanh"})
    assert not box.contains({"steps": 300, "act": "gelu"})  # a restricted parameter is missing
    assert box.describe() == "lr [0.0001, 0.001], steps [200, 5000], act {relu, gelu}"


def test_box_rejects_malformed_input():
    with pytest.raises(ValueError, match=r"box range of 'x' must have lo <= hi; got \(2.0, 1.0\)"):
        Box(ranges={"x": (2.0, 1.0)})
    with pytest.raises(ValueError, match=r"a box holds only 'ranges' and 'choices'; got unknown keys \['bounds'\]"):
        Box.from_dict({"bounds": {}})
    space = SearchSpace((Parameter("x", "uniform", min=0.0, max=1.0),))
    with pytest.raises(ValueError, match=r"box range of 'x' must lie inside its declared bounds \[0, 1\]; got \[0.5, 2\]"):
        Box(ranges={"x": (0.5, 2.0)}).check_within(space)


def test_phase_box_narrows_around_fewer_than_min_top_and_says_so():
    space = SearchSpace((Parameter("x", "uniform", min=0.0, max=1.0),))
    few = observations("x", [0.2, 0.4, 0.3])
    box, note = phase_box(space, few, "max", min_top=5, std_multiplier=1.0)
    assert box == narrow(space, few, "max", min_top=3, std_multiplier=1.0)
    assert note == "narrowed around all 3 usable of 3 earlier trials (0 failed or without a value), fewer than min_top=5"
    enough = observations("x", [0.1 * i for i in range(10)])
    assert phase_box(space, enough, "max", min_top=5, std_multiplier=1.0) == (
        narrow(space, enough, "max", min_top=5, std_multiplier=1.0),
        None,
    )


def test_phase_box_leaves_the_declared_bounds_when_nothing_usable_is_left():
    space = SearchSpace((Parameter("x", "uniform", min=0.0, max=1.0),))
    failed = [
        Observation(f"f{i}", 1, {"x": 0.1 * i}, TrialStatus.FAILED, None, 1.0, 0.0, 1) for i in range(3)
    ]
    for history in (failed, failed + observations("x", [0.5]), []):
        box, note = phase_box(space, history, "max", min_top=2, std_multiplier=1.0)
        assert box is None
        assert note.startswith("not narrowed: ") and "fewer than the 2 a box needs" in note
    assert phase_box(space, failed, "max", min_top=2, std_multiplier=1.0)[1] == (
        "not narrowed: 0 usable of 3 earlier trials (3 failed or without a value), fewer than the 2 a box needs; "
        "candidates come from the declared bounds"
    )


# ----------------------------------------------------------------------------
# trials on the edges of a box
# ----------------------------------------------------------------------------
EDGE_SPACE = SearchSpace(
    (
        Parameter("learning_rate", "log_uniform", min=1e-5, max=1e-1),
        Parameter("x", "uniform", min=0.0, max=1.0),
        Parameter("batch_size", "pow2", min=16, max=1024),
        Parameter("gamma", "logit_normal", min=0.9, max=0.9999),
        Parameter("act", "choice", values=("tanh", "relu")),
    )
)


def test_box_edges_counts_trials_within_one_percent_of_a_free_edge_per_parameter_and_side():
    box = Box(ranges={"learning_rate": (1e-4, 1e-2), "x": (0.0, 0.5)}, choices={"act": ("relu",)})
    # the log box spans 2 decades: 1% of it is 0.02 decade, so 1.04e-2 (0.017 decade above) is on the
    # upper edge and 1.06e-2 (0.025) is not; 1.03e-4 is on the lower edge
    configs = [
        {"learning_rate": 1.0e-2, "x": 0.5},
        {"learning_rate": 0.99e-2, "x": 0.496},  # x: within 1% of the 0.5-wide box
        {"learning_rate": 1.04e-2, "x": 0.49},  # x: 2% away
        {"learning_rate": 1.06e-2, "x": 0.0},  # x = 0 is the declared bound, not an edge of the box
        {"learning_rate": 1.03e-4, "x": 0.25},
        {"learning_rate": 1e-3, "x": float("nan")},
    ]
    edges = box_edges(EDGE_SPACE, box, configs)
    assert edges == [
        BoxEdge("learning_rate", "lower", 1, 6),
        BoxEdge("learning_rate", "upper", 3, 6),
        BoxEdge("x", "upper", 2, 6),
    ]
    assert describe_box_edges(edges, 6) == "box edges: learning_rate lower 1/6, learning_rate upper 3/6, x upper 2/6"
    assert describe_box_edges([], 6) == "box edges: no trial on an edge (of 6)"


def test_box_edges_in_power_of_two_and_log_one_minus_x_scales():
    box = Box(ranges={"batch_size": (64, 256), "gamma": (0.99, 0.999)})
    configs = [{"batch_size": 256, "gamma": 0.999}, {"batch_size": 128, "gamma": 0.9989}, {"batch_size": 64, "gamma": 0.995}]
    # gamma's box spans log(0.01) to log(0.001): 1% of that is a factor 1.023 on 1 - gamma, so 0.9989
    # (1 - gamma = 0.0011, a factor 1.1) is not on the upper edge
    assert box_edges(EDGE_SPACE, box, configs) == [
        BoxEdge("batch_size", "lower", 1, 3),
        BoxEdge("batch_size", "upper", 1, 3),
        BoxEdge("gamma", "upper", 1, 3),
    ]
    # a box reaching the declared bounds on both sides has no free edge
    whole = Box(ranges={"batch_size": (16, 1024), "gamma": (0.9, 0.9999)})
    assert box_edges(EDGE_SPACE, whole, [{"batch_size": 16, "gamma": 0.9999}]) == []
    assert box_edges(EDGE_SPACE, box, []) == []


def test_box_edges_tolerance_is_checked():
    with pytest.raises(ValueError, match=r"tolerance must lie in \[0, 0.5\] \(a fraction of the box's width\); got 2"):
        box_edges(EDGE_SPACE, Box(ranges={"x": (0.1, 0.2)}), [], tolerance=2)


def test_box_edges_per_trial_judges_each_trial_against_its_own_box():
    first, grown = Box(ranges={"x": (0.2, 0.3)}), Box(ranges={"x": (0.2, 0.45)})
    boxed = [(first, {"x": 0.3}), (grown, {"x": 0.3}), (grown, {"x": 0.45}), (first, {"x": 0.2})]
    assert box_edges_per_trial(EDGE_SPACE, boxed) == [BoxEdge("x", "lower", 1, 4), BoxEdge("x", "upper", 2, 4)]
    assert box_edges_per_trial(EDGE_SPACE, []) == []


def test_values_at_the_target_fidelity_rank_every_usable_observation_whatever_its_status():
    space = SearchSpace((Parameter("x", "uniform", min=0.0, max=1.0),))
    done = [obs(i, 5.0 + i, x=0.1 * i) for i in range(5)]  # completed: x 0.0-0.4, best raw 9.0 at x = 0.4
    cut = obs(9, 2.0, TrialStatus.TIME_BUDGET, x=0.9)  # cut short, low raw value
    stopped = obs(8, 1.0, TrialStatus.EARLY_STOPPED, x=0.8)
    failed = obs(7, None, TrialStatus.FAILED, x=0.7)
    history = [*done, cut, stopped, failed]
    values = {"t9": 12.0, "t8": 11.0, "t7": 99.0}  # a failed trial never counts, whatever it is given
    top = top_observations(history, "max", min_top=2, top_fraction=0.1, values=values)
    assert [o.trial_id for o in top] == ["t9", "t8"]  # t0-t4 missing from values keep their objective
    # without values the completed ones are ranked by their objective (today's rule)
    assert [o.trial_id for o in top_observations(history, "max", min_top=2, top_fraction=0.1)] == ["t4", "t3"]
    # the box's statistics are over the chosen configs' raw values: x of 0.9 and 0.8
    box = narrow(space, history, "max", min_top=2, top_fraction=0.1, std_multiplier=1.0, values=values)
    assert box.ranges["x"] == pytest.approx((0.85 - 0.0707107, 0.85 + 0.0707107), rel=1e-6)
    box, note = phase_box(space, history, "max", min_top=2, top_fraction=0.1, std_multiplier=1.0, values=values)
    assert note is None and box.contains({"x": 0.9}) and not box.contains({"x": 0.4})
    in_min_mode = top_observations(history, "min", min_top=2, top_fraction=0.1, values=values)
    assert [o.trial_id for o in in_min_mode] == ["t0", "t1"]
