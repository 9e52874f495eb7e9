"""The trust-region rule: a box that grows toward the optimum and shrinks after failures (pure logic)."""

import json
import math

import pytest

from raysweep.narrowing import Box
from raysweep.records import Observation, TrialStatus
from raysweep.space import Parameter, SearchSpace
from raysweep.trust_region import EDGE_BAND, GROW_FRACTION, Move, TrustRegion

SPACE = SearchSpace(
    (
        Parameter("x", "uniform", min=0.0, max=1.0),
        Parameter("lr", "log_uniform", min=1e-5, max=1e-1),
        Parameter("gamma", "logit_normal", min=0.9, max=0.9999),
        Parameter("layers", "int_uniform", min=1, max=10),
        Parameter("batch", "pow2", min=16, max=4096),
        Parameter("act", "choice", values=("relu", "tanh", "gelu")),
    )
)
MIDDLE = {"x": 0.5, "lr": 1e-3, "gamma": 0.99, "layers": 5, "batch": 256, "act": "relu"}
_count = iter(range(10**6))


def trial(objective, status=TrialStatus.COMPLETED, resampled_from=None, **params):
    return Observation(
        trial_id=f"t{next(_count)}", phase=2, params={**MIDDLE, **params}, status=status, objective=objective,
        cost_s=1.0, gpu_s=0.0, iterations=1, resampled_from=resampled_from,
    )


def optimum_at(x_best: float):
    """A synthetic objective in x alone, peaked at ``x_best``."""
    return lambda x: 10.0 - 10.0 * (x - x_best) ** 2


def test_a_box_grows_toward_an_optimum_outside_it_and_never_past_a_declared_bound():
    score = optimum_at(1.0)  # on the declared upper bound, far beyond the box
    region = TrustRegion(SPACE, Box(ranges={"x": (0.2, 0.3)}))
    seen = [trial(score(x), x=x) for x in (0.22, 0.25, 0.28)]  # the earlier phase's best, inside the box
    highs = [0.3]
    while highs[-1] < 1.0 and len(highs) < 20:
        lo, hi = region.box.ranges["x"]
        pressing = trial(score(hi), x=hi)  # the model's candidate on the upper edge
        assert region.observe(pressing, seen, "max") == Move("grow", (("x", "upper"),))
        seen.append(pressing)
        assert region.box.ranges["x"][1] == pytest.approx(min(1.0, hi + GROW_FRACTION * (hi - lo)))
        assert region.box.ranges["x"][0] == 0.2  # the lower end never moved
        highs.append(region.box.ranges["x"][1])
    assert highs == sorted(highs) and highs[-1] == 1.0  # it reached the bound, not past it
    assert region.growths == len(highs) - 1 == 6  # 0.1 wide, 1.5 times wider each time
    region.box.check_within(SPACE)
    # at the bound the upper end is no free edge: another success there grows nothing
    assert region.observe(trial(score(1.0) + 1, x=1.0), seen, "max") == Move("success")


def test_growth_is_in_each_parameter_s_own_scale_and_keeps_integers_and_powers_of_two_legal():
    box = Box(ranges={"lr": (1e-4, 1e-3), "gamma": (0.99, 0.999), "layers": (3, 5), "batch": (64, 256)})
    region = TrustRegion(SPACE, box)
    corner = trial(100.0, lr=1e-3, gamma=0.99, layers=3, batch=256)
    move = region.observe(corner, [trial(1.0, lr=3e-4, gamma=0.995, layers=4, batch=128)], "max")
    assert set(move.sides) == {("lr", "upper"), ("gamma", "lower"), ("layers", "lower"), ("batch", "upper")}
    lr_lo, lr_hi = region.box.ranges["lr"]
    # a decade wide box of a log parameter grows by half a decade, in log scale
    assert lr_lo == 1e-4 and lr_hi == pytest.approx(1e-3 * math.sqrt(10), rel=1e-9)
    gamma = SPACE["gamma"]
    g_lo, g_hi = region.box.unit_interval(gamma)
    assert g_hi == pytest.approx(gamma.to_unit(0.999))
    assert g_lo == pytest.approx(gamma.to_unit(0.99) - GROW_FRACTION * (gamma.to_unit(0.999) - gamma.to_unit(0.99)))
    assert region.box.ranges["layers"] == (2, 5)  # 3 - 0.5 * (2/9 of the width) = 2.0 -> 2, an int
    assert all(isinstance(v, int) for v in region.box.ranges["layers"])
    assert region.box.ranges["batch"] == (64, 512)  # 2 powers wide, grown by one: still powers of two
    region.box.check_within(SPACE)


def test_only_a_success_near_a_free_edge_grows_the_box():
    region = TrustRegion(SPACE, Box(ranges={"x": (0.4, 0.6)}))
    earlier = [trial(5.0, x=0.5)]
    inside = 0.4 + (1.5 * EDGE_BAND) * 0.2  # beyond the edge band
    assert region.observe(trial(6.0, x=inside), earlier, "max") == Move("success")
    assert region.observe(trial(5.001, x=0.6), [*earlier, trial(5.0, x=0.45)], "max") == Move("failure")  # < 1e-3 better
    assert region.box.ranges["x"] == (0.4, 0.6)
    # in "min" mode a lower value is the success
    assert region.observe(trial(1.0, x=0.41), earlier, "min").kind == "grow"
    assert region.box.ranges["x"][0] == pytest.approx(0.3)


def test_it_shrinks_around_the_incumbent_after_repeated_failures_never_below_min_width():
    region = TrustRegion(SPACE, Box(ranges={"x": (0.2, 0.6), "layers": (1, 9)}), min_width=0.1)
    assert region.failure_tolerance == 4  # TuRBO's max(4, d) with d = 2
    best = trial(9.0, x=0.5, layers=7)
    moves = [region.observe(trial(1.0, x=0.3, layers=2), [best], "max") for _ in range(4)]
    assert [m.kind for m in moves] == ["failure", "failure", "failure", "shrink"]
    lo, hi = region.box.ranges["x"]
    assert (lo, hi) == pytest.approx((0.4, 0.6))  # half as wide, around 0.5, kept inside the old box
    assert region.box.ranges["layers"] == (5, 9)  # 4 of 9 units wide around 7, kept inside [1, 9]
    assert region.shrinks == 1 and region.failures == 0
    failed = [region.observe(trial(None, status=TrialStatus.FAILED), [best], "max") for _ in range(8)]
    assert [m.kind for m in failed].count("shrink") == 1  # 0.2 -> 0.1 wide, then at min_width
    assert region.box.ranges["x"] == pytest.approx((0.45, 0.55))
    assert region.box.ranges["x"][1] - region.box.ranges["x"][0] >= 0.1 - 1e-12
    assert best.params["x"] >= region.box.ranges["x"][0] and region.box.contains(best.params)


def test_a_success_resets_the_failures_and_resamples_are_not_judged():
    region = TrustRegion(SPACE, Box(ranges={"x": (0.2, 0.6)}))
    best = trial(9.0, x=0.5)
    for _ in range(3):
        region.observe(trial(1.0, x=0.3), [best], "max")
    assert region.observe(trial(9.5, x=0.45), [best], "max") == Move("success")
    assert region.failures == 0
    assert region.observe(trial(1.0, x=0.3, resampled_from="t0"), [best], "max") == Move("skip")
    assert region.failures == 0


def test_choices_are_left_alone():
    box = Box(ranges={"x": (0.2, 0.4)}, choices={"act": ("relu",)})
    region = TrustRegion(SPACE, box)
    region.observe(trial(9.0, x=0.4, act="relu"), [], "max")
    for _ in range(4):
        region.observe(trial(1.0, x=0.3, act="relu"), [trial(9.0, x=0.4)], "max")
    assert region.growths == 1 and region.shrinks == 1
    assert region.box.choices == {"act": ("relu",)}


def test_state_round_trips_through_a_dict():
    region = TrustRegion(SPACE, Box(ranges={"x": (0.2, 0.3), "batch": (64, 128)}), min_width=0.05)
    first = trial(9.0, x=0.3, batch=128)
    region.observe(first, [], "max")  # nothing in the box yet: any value succeeds
    region.observe(trial(1.0, x=0.25, batch=64), [first], "max")
    again = TrustRegion.from_dict(SPACE, region.to_dict())
    assert again.to_dict() == region.to_dict()
    assert again.box == region.box and again.initial == Box(ranges={"x": (0.2, 0.3), "batch": (64, 128)})
    assert (again.failures, again.growths, again.shrinks) == (1, 1, 0)
    assert again.moves() == {"growths": 1, "shrinks": 0}


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"box": Box(ranges={"x": (0.2, 1.5)})}, r"box range of 'x' must lie inside its declared bounds \[0, 1\]"),
        ({"min_width": 0.0}, r"min_width must lie in \(0, 1\].*got 0.0"),
        ({"failure_tolerance": 0}, r"failure_tolerance must be an int >= 1; got 0"),
    ],
)
def test_bad_settings_name_the_rule_and_the_value(kwargs, message):
    settings = {"box": Box(ranges={"x": (0.2, 0.3)}), **kwargs}
    with pytest.raises(ValueError, match=message):
        TrustRegion(SPACE, settings.pop("box"), **settings)


# -- on a real local Ray ------------------------------------------------------------------
def test_a_narrowed_bayesian_phase_follows_an_optimum_outside_its_first_box(ray_local, write_experiment, tmp_path):
    import pandas as pd

    from raysweep import sweep
    from raysweep.spec import load_experiment
    from raysweep.state import read_state
    from tests.conftest import synthetic_experiment

    data = synthetic_experiment(
        trainable="tests.trainables.rising:train",
        budget=14,
        parameters={
            # the random phase crowds around x = 0.2; the optimum is x = 1, the declared upper bound
            "x": {"distribution": "uniform", "min": 0.0, "max": 1.0, "mean": 0.2, "scale": 0.03},
            "lr": {"distribution": "log_uniform", "min": 1e-4, "max": 1e-2},
        },
        phases=[
            {"name": "explore", "searcher": "random", "trials": 6, "max_trial_time": "60s"},
            {"name": "follow", "searcher": "ax", "trials": 8, "random_samples": 0, "max_trial_time": "60s",
             "narrow": {"top_fraction": 0.5, "min_top": 3, "std_multiplier": 0.5, "min_width": 0.05}},
        ],
    )
    result = sweep.run(load_experiment(write_experiment(data)))
    state = read_state(result.run_dir)
    initial, final = Box.from_dict(state.phase(2).box), Box.from_dict(state.phase(2).final_box)
    first_high = initial.ranges["x"][1]
    assert first_high < 0.5  # the first box lies well below the optimum ...
    assert first_high < final.ranges["x"][1] <= 1.0  # ... the box grew toward it, never past the bound
    assert state.phase(2).box_moves["growths"] >= 1 and state.phase(2).box_moves["shrinks"] >= 0

    trials = pd.read_parquet(tmp_path / "run" / "results" / "trials")
    follow = trials[trials["phase"].astype(int) == 2].sort_values("started_at")
    boxes = [Box.from_dict(json.loads(text)) for text in follow["narrow_box"]]
    for box, x, lr in zip(boxes, follow["param.x"], follow["param.lr"]):
        assert box.contains({"x": x, "lr": lr})  # each trial lies in the box it was generated in
        assert initial.ranges["x"][0] <= box.ranges["x"][0] and box.ranges["x"][1] <= 1.0
    assert boxes[0] == initial and len({b.ranges["x"] for b in boxes}) >= 2  # the rows show the box moving
    assert follow["param.x"].max() > first_high  # trials ran beyond the first box
    assert trials[trials["phase"].astype(int) == 1]["narrow_box"].isna().all()


def test_how_a_box_moved_reads_as_one_line():
    from raysweep.trust_region import box_changes, describe_box_moves

    initial = Box(ranges={"x": (0.2, 0.3), "lr": (1e-4, 1e-3), "batch": (64, 128)}, choices={"act": ("relu",)})
    final = Box(ranges={"x": (0.2, 0.45), "lr": (1e-4, 1e-3), "batch": (32, 128)}, choices={"act": ("relu",)})
    assert box_changes(initial, final) == [("x", (0.2, 0.3), (0.2, 0.45)), ("batch", (64, 128), (32, 128))]
    assert describe_box_moves(initial, final, {"growths": 2, "shrinks": 1}) == (
        "box moved: x [0.2, 0.3] -> [0.2, 0.45], batch [64, 128] -> [32, 128]; 2 growths, 1 shrink"
    )
    assert describe_box_moves(initial, initial, {"growths": 0, "shrinks": 0}) == "box did not move (0 growths, 0 shrinks)"
    assert describe_box_moves(initial, final, None).endswith("[32, 128]")


def test_a_killed_driver_resumes_the_box_and_the_rule_s_counters(write_experiment, tmp_path):
    """SIGKILL in the middle of a narrowed Ax phase whose box moved, then --resume: the phase goes on from
    the moved box with its counters, not from the first box."""
    import subprocess
    import sys

    import pandas as pd

    from tests.conftest import ROOT, assert_consistent_results, kill_driver_once_staged, synthetic_experiment

    data = synthetic_experiment(
        trainable="tests.trainables.rising:train",
        budget=14,
        parameters={"x": {"distribution": "uniform", "min": 0.0, "max": 1.0, "mean": 0.2, "scale": 0.03},
                    "lr": {"distribution": "log_uniform", "min": 1e-4, "max": 1e-2}},
        phases=[
            {"name": "explore", "searcher": "random", "trials": 6, "max_trial_time": "60s"},
            {"name": "follow", "searcher": "ax", "trials": 8, "random_samples": 0, "max_trial_time": "60s",
             "max_concurrent": 1, "narrow": {"top_fraction": 0.5, "min_top": 3, "std_multiplier": 0.5}},
        ],
    )
    path = write_experiment(data)
    run_dir = tmp_path / "run"
    command = [sys.executable, "-m", "raysweep", "run", str(path), "--num-cpus", "2"]
    kill_driver_once_staged(command, run_dir, 2, 4, timeout_s=300)
    staging = run_dir / "results" / ".staging" / "phase=2"
    before = pd.concat([pd.read_parquet(p) for p in staging.glob("*.trials.parquet")]).sort_values("started_at")
    assert 4 <= len(before) < 8
    moved_before = len(set(before["narrow_box"])) - 1  # the box moved this often, at least, before the kill

    proc = subprocess.run([*command, "--resume"], cwd=ROOT, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    trials = assert_consistent_results(run_dir, {1: 6, 2: 8})
    follow = trials[trials["phase"] == 2].sort_values("started_at")
    state = json.loads((run_dir / "state.json").read_text())["phases"][1]
    for text, x, lr in zip(follow["narrow_box"], follow["param.x"], follow["param.lr"]):
        assert Box.from_dict(json.loads(text)).contains({"x": x, "lr": lr})
    moves = state["box_moves"]["growths"] + state["box_moves"]["shrinks"]
    assert moves >= len(set(follow["narrow_box"])) - 1 >= moved_before  # the counters went on from the kill
    after = follow[~follow["trial_id"].isin(set(before["trial_id"]))]
    if moved_before:  # the resumed phase went on in the moved box, not the first one
        assert json.dumps(state["box"]) not in set(after["narrow_box"])
    assert Box.from_dict(state["final_box"]).ranges["x"][1] >= Box.from_dict(json.loads(before["narrow_box"].iloc[-1])).ranges["x"][1]
