"""Ranking at the target fidelity: runs cut short ranked by what a full run of their config reaches.

The GP is BoTorch's, fit for real on constructed learning curves that cross:
configs with a small ``x`` learn fast and plateau low, configs with a large
``x`` learn slowly and end highest (at ``x = 0.75``).
"""

from __future__ import annotations

import logging
import math

import pytest

from raysweep.fidelity import FidelityScale, experiment_scale, schedule_max
from raysweep.narrowing import phase_box, top_observations
from raysweep.records import Observation, TrialStatus
from raysweep.space import Parameter, SearchSpace
from raysweep.spec import experiment_from_dict
from raysweep.target_ranking import _training_points, target_values
from tests.conftest import synthetic_experiment

FULL_STEPS = 100.0
#: Configs run in full; the best of them (x = 0.6) is short of the peak at 0.75.
FULL_XS = (0.05, 0.2, 0.35, 0.5, 0.55, 0.6, 0.95)
B_X = 0.75


def value_at(x: float, share: float) -> float:
    """The metric after ``share`` of a full run: ends at 10 - 20 (x - 0.75)^2, learns slower as x grows."""
    final = 10.0 - 20.0 * (x - B_X) ** 2
    tau = 0.02 + 0.8 * x**2
    return final * (1.0 - math.exp(-share / tau)) / (1.0 - math.exp(-1.0 / tau))


def run(trial_id: str, x: float, trained: float, status: TrialStatus, **params) -> Observation:
    """An observation of config ``x`` that trained ``trained`` steps, with four points of its learning curve."""
    curve = tuple((level, value_at(x, level / FULL_STEPS)) for level in (trained / 8, trained / 4, trained / 2, trained))
    return Observation(
        trial_id, 1, {"x": x, **params}, status, curve[-1][1], 1.0, 0.0, 4, fidelity=trained, curve=curve
    )


def crossing_history(**params) -> list[Observation]:
    """A (x = 0.2, fast) and six more configs run in full; B (x = 0.75) cut at an eighth of a run."""
    history = [run(f"full{i}", x, FULL_STEPS, TrialStatus.COMPLETED, **params) for i, x in enumerate(FULL_XS)]
    history.append(run("B", B_X, FULL_STEPS / 8, TrialStatus.TIME_BUDGET, **params))
    return history


SPACE = SearchSpace((Parameter("x", "uniform", min=0.0, max=1.0),))
DIMENSION = FidelityScale(attr="steps", full=FULL_STEPS)


def test_a_config_that_looks_bad_cut_short_and_is_best_in_full_is_ranked_first():
    history = crossing_history()
    a = history[1]  # x = 0.2: ahead of B at an eighth of a run, far behind it in full
    b = history[-1]
    assert value_at(0.2, 1 / 8) > b.objective and a.objective > b.objective and value_at(B_X, 1.0) > 2 * a.objective
    values = target_values(history, SPACE, "max", DIMENSION)
    # full runs keep their measurement; B gets the GP's prediction for its full run (true value 10)
    assert {k: v for k, v in values.items() if k != "B"} == {o.trial_id: o.objective for o in history[:-1]}
    assert values["B"] == pytest.approx(10.0, abs=0.5)
    assert max(values, key=values.get) == "B"
    # ... so the box is built around B and its best neighbour, where the raw ranking left B out
    settings = dict(min_top=2, top_fraction=0.1)
    assert [o.trial_id for o in top_observations(history, "max", values=values, **settings)] == ["B", "full5"]
    assert "B" not in [o.trial_id for o in top_observations(history, "max", **settings)]
    box, note = phase_box(SPACE, history, "max", std_multiplier=1.0, values=values, **settings)
    raw_box, _ = phase_box(SPACE, history, "max", std_multiplier=1.0, **settings)
    assert note is None and box.contains({"x": B_X}) and not raw_box.contains({"x": B_X})


def test_in_min_mode_the_values_are_the_same_and_rank_the_other_way():
    negated = [
        Observation(o.trial_id, o.phase, o.params, o.status, -o.objective, o.cost_s, o.gpu_s, o.iterations,
                    fidelity=o.fidelity, curve=tuple((level, -v) for level, v in o.curve))
        for o in crossing_history()
    ]
    values = target_values(negated, SPACE, "min", DIMENSION)
    assert values["B"] == pytest.approx(-10.0, abs=0.5) and min(values, key=values.get) == "B"


def test_parameter_form_predicts_a_cut_run_at_its_own_length():
    space = SearchSpace((Parameter("x", "uniform", min=0.0, max=1.0), Parameter("steps", "int_uniform", min=10, max=100)))
    history = crossing_history(steps=100)
    # shorter runs are full runs of their own length: they keep their value
    history += [run(f"short{i}", x, 40, TrialStatus.COMPLETED, steps=40) for i, x in enumerate((0.3, 0.75, 0.9))]
    scale = FidelityScale(attr="steps", parameter="steps")
    assert not scale.is_full(history[len(FULL_XS)]) and scale.is_full(history[-1])
    values = target_values(history, space, "max", scale)
    assert values["B"] == pytest.approx(10.0, abs=0.5) and max(values, key=values.get) == "B"
    assert all(values[o.trial_id] == o.objective for o in history if o.trial_id != "B")


def test_without_runs_cut_short_nothing_is_fit_and_failed_runs_are_left_out():
    history = crossing_history()[:-1] + [
        Observation("boom", 1, {"x": 0.5}, TrialStatus.FAILED, None, 1.0, 0.0, 0),
        Observation("nan", 1, {"x": 0.5}, TrialStatus.COMPLETED, float("nan"), 1.0, 0.0, 1),
    ]
    assert target_values(history, SPACE, "max", DIMENSION) == {o.trial_id: o.objective for o in history[:-2]}


def test_a_fit_that_fails_leaves_the_raw_values_and_says_so(caplog):
    # values at the edge of float64: standardising them overflows and the GP predicts no finite value
    extreme = [1e308, -1e308, 1e308, -1e308]
    history = [
        Observation(f"t{i}", 1, {"x": i / 5}, TrialStatus.COMPLETED, v, 1.0, 0.0, 1, fidelity=100.0, curve=((100.0, v),))
        for i, v in enumerate(extreme)
    ]
    history.append(Observation("cut", 1, {"x": 0.9}, TrialStatus.EARLY_STOPPED, 3.0, 1.0, 0.0, 1, fidelity=20.0,
                               curve=((20.0, 3.0),)))
    with caplog.at_level(logging.WARNING, logger="raysweep.target_ranking"):
        values = target_values(history, SPACE, "max", DIMENSION)
    assert values == {o.trial_id: o.objective for o in history}
    assert "ranking at the target fidelity: the GP fit on 5 points failed (ValueError: the posterior mean is not " \
           "finite at every config); ranking by the raw values" in caplog.text


def test_configs_that_do_not_encode_keep_their_raw_value():
    history = crossing_history()
    stray = run("stray", 0.5, 10.0, TrialStatus.TIME_BUDGET)
    stray = Observation("stray", 1, {"y": 0.5}, stray.status, stray.objective, 1.0, 0.0, 1, fidelity=10.0, curve=stray.curve)
    values = target_values([*history, stray], SPACE, "max", DIMENSION)
    assert values["stray"] == stray.objective and values["B"] == pytest.approx(10.0, abs=0.5)


def test_the_fit_sees_at_most_max_points_full_runs_first_then_the_last_points_of_cut_ones():
    history = crossing_history()  # 8 observations x 4 curve points
    inputs, outputs = _training_points(history, SPACE, DIMENSION, 32)
    assert inputs.shape == (32, 2) and len(outputs) == 32  # unit x and the share of a full run
    inputs, outputs = _training_points(history, SPACE, DIMENSION, 8)
    assert sorted(inputs[:, 1]) == [1 / 8] + [1.0] * len(FULL_XS)  # every full run's end, then B's last point
    assert sorted(outputs) == sorted(o.objective for o in history)
    inputs, _ = _training_points(history, SPACE, DIMENSION, 5)
    assert list(inputs[:, 1]) == [1.0] * 5  # a seeded choice among the full runs' ends
    again, _ = _training_points(history, SPACE, DIMENSION, 5)
    assert (again == inputs).all()
    values = target_values(history, SPACE, "max", DIMENSION, max_points=12)
    assert values["B"] > history[-1].objective  # fewer points, still a prediction at full fidelity


def test_bad_arguments_name_the_rule_and_the_value():
    with pytest.raises(ValueError, match=r"^mode must be 'max' or 'min'; got 'best'$"):
        target_values([], SPACE, "best", DIMENSION)
    with pytest.raises(ValueError, match=r"^max_points must be an int >= 3; got 2$"):
        target_values([], SPACE, "max", DIMENSION, max_points=2)


def test_a_full_run_is_what_asha_allows_when_it_counts_in_the_fidelity_units():
    asha = {"type": "asha", "time_attr": "steps", "grace_period": 10, "max_t": 80}
    phases = [
        {"name": "explore", "searcher": "random", "trials": 4, "early_stopping": asha},
        {"name": "refine", "searcher": "ax", "trials": 2,
         "early_stopping": {**asha, "time_attr": "training_iteration", "max_t": 999}},
    ]
    experiment = experiment_from_dict(synthetic_experiment(budget=None, phases=phases, fidelity={"attr": "steps"}))
    assert schedule_max(experiment) == 80.0  # the other phase's ASHA counts iterations, not steps
    assert experiment_scale(experiment, []) == FidelityScale(attr="steps", full=80.0)
    declared = experiment_from_dict(synthetic_experiment(budget=None, phases=phases, fidelity={"attr": "steps", "max": 50}))
    assert experiment_scale(declared, []).full == 50.0  # fidelity.max wins
    plain = experiment_from_dict(synthetic_experiment(fidelity={"attr": "steps"}))
    assert schedule_max(plain) is None and experiment_scale(plain, []) is None  # nothing says yet what a full run is
    assert experiment_scale(plain, crossing_history()).full == FULL_STEPS  # the most a completed run reached
