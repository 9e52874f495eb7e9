import pytest

from raysweep.records import Observation, TrialStatus
from raysweep.selection import best_config, measured, pareto_front, summarize


def obs(trial_id, objective, cost, status=TrialStatus.COMPLETED, seed=None, gpu_s=0.0, **params):
    return Observation(
        trial_id=trial_id,
        phase=1,
        params=params or {"x": float(cost)},
        status=status,
        objective=objective,
        cost_s=cost,
        gpu_s=gpu_s,
        iterations=1,
        seed=seed,
    )


def test_pareto_front_keeps_the_non_dominated_configs_cheapest_first():
    points = [obs("a", 1.0, 10.0), obs("b", 3.0, 20.0), obs("c", 2.0, 30.0), obs("d", 5.0, 40.0), obs("e", 0.5, 15.0)]
    front = pareto_front(points, "max")
    assert [s.trial_ids for s in front] == [("a",), ("b",), ("d",)]
    assert [s.cost for s in front] == [10.0, 20.0, 40.0]


def test_pareto_front_in_min_mode_and_with_ties():
    points = [obs("a", 5.0, 10.0), obs("b", 3.0, 20.0), obs("c", 4.0, 30.0), obs("d", 3.0, 20.0, x=99.0)]
    front = pareto_front(points, "min")
    assert [s.trial_ids for s in front] == [("a",), ("b",), ("d",)]  # b and d tie: both stay


def test_repeats_are_pooled_by_config_and_averaged():
    lucky = obs("t1", 10.0, 100.0, seed=1, lr=1e-3, act="relu")
    again = obs("t7", 2.0, 120.0, seed=7, lr=1e-3, act="relu")  # the resample of t1, another seed
    steady = obs("t2", 7.0, 100.0, seed=2, lr=3e-3, act="relu")
    summaries = summarize([lucky, again, steady])
    pooled = next(s for s in summaries if s.count == 2)
    assert pooled.objective == 6.0 and pooled.cost == 110.0 and pooled.trial_ids == ("t1", "t7")
    assert pooled.objective_std == pytest.approx(5.656854, rel=1e-6)
    assert pooled.first_trial_id == "t1"
    assert best_config([lucky, again, steady], "max").trial_ids == ("t2",)
    assert best_config([lucky, steady], "max").trial_ids == ("t1",)


def test_seed_in_params_does_not_split_a_config():
    a = obs("t1", 1.0, 1.0, x=0.5, seed=3)
    b = Observation("t2", 1, {"x": 0.5, "seed": 4}, TrialStatus.COMPLETED, 3.0, 1.0, 0.0, 1)
    (summary,) = summarize([a, b])
    assert summary.count == 2 and summary.params == {"x": 0.5}


def test_failed_trials_never_count_and_completed_ones_are_preferred():
    done = obs("ok", 1.0, 5.0)
    stopped = obs("asha", 50.0, 1.0, status=TrialStatus.EARLY_STOPPED)
    failed = obs("boom", 99.0, 1.0, status=TrialStatus.FAILED)
    assert measured([done, stopped, failed]) == [done]
    assert best_config([done, stopped, failed], "max").trial_ids == ("ok",)
    # without any completed trial, partial measurements are all there is
    assert best_config([stopped, failed], "max").trial_ids == ("asha",)
    assert best_config([failed], "max") is None


def test_min_repeats_restricts_the_best_to_repeated_configs():
    once = obs("a", 9.0, 1.0, x=0.1)
    twice = [obs("b", 5.0, 1.0, x=0.2), obs("c", 6.0, 1.0, x=0.2)]
    assert best_config([once, *twice], "max").trial_ids == ("a",)
    assert best_config([once, *twice], "max", min_repeats=2).trial_ids == ("b", "c")
    assert best_config([once], "max", min_repeats=2).trial_ids == ("a",)  # nobody repeated: all compete


def test_gpu_seconds_can_be_the_cost():
    points = [obs("a", 1.0, 10.0, gpu_s=80.0), obs("b", 2.0, 20.0, gpu_s=40.0)]
    assert [s.trial_ids for s in pareto_front(points, "max", cost_field="gpu_s")] == [("b",)]


def test_bad_arguments_name_the_value():
    with pytest.raises(ValueError, match=r"cost_field must be one of \('cost_s', 'gpu_s'\); got 'wall'"):
        pareto_front([], "max", cost_field="wall")
    with pytest.raises(ValueError, match=r"mode must be 'max' or 'min'; got 'best'"):
        best_config([], "best")
    with pytest.raises(ValueError, match=r"min_repeats must be an int >= 1; got 0"):
        best_config([], "max", min_repeats=0)


def test_with_a_fidelity_scale_the_best_config_is_one_measured_at_full_fidelity():
    from raysweep.fidelity import FidelityScale

    def at(trial_id, objective, fidelity, status=TrialStatus.COMPLETED, **params):
        return Observation(trial_id, 1, params, status, objective, 1.0, 0.0, 1, fidelity=fidelity)

    full = at("full", 5.0, 100.0, x=0.1)
    # a lucky value 20 steps in, stopped by the time budget, and a run that completed short of a full run
    lucky = at("lucky", 9.0, 20.0, TrialStatus.TIME_BUDGET, x=0.2)
    short = at("short", 8.0, 50.0, x=0.3)
    # one that reached a full run's fidelity before its budget ran out is a full measurement
    reached = at("reached", 6.0, 100.0, TrialStatus.TIME_BUDGET, x=0.4)
    scale = FidelityScale(attr="steps", full=100.0)
    history = [full, lucky, short, reached]
    assert measured(history, scale) == [full, reached]
    assert best_config(history, "max", scale=scale).trial_ids == ("reached",)
    assert best_config(history, "max").trial_ids == ("short",)  # without a scale: every completed run (today's rule)
    # no full-fidelity measurement at all: every usable one competes, as without a scale
    assert best_config([lucky, short], "max", scale=scale).trial_ids == ("lucky",)
    # parameter form: a completed run is a full run of its own length
    by_length = FidelityScale(attr="steps", parameter="steps")
    cut = at("cut", 9.0, 20.0, TrialStatus.EARLY_STOPPED, steps=100)
    own = at("own", 4.0, 40.0, steps=40)
    assert best_config([cut, own], "max", scale=by_length).trial_ids == ("own",)
