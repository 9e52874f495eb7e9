"""The multi-fidelity model of a Bayesian phase, on real Ax and BoTorch: every observation
reaches the GP at the fidelity it was measured, candidates are sought at full fidelity."""

from __future__ import annotations

import math

import numpy as np
import pytest

from raysweep import outcomes
from raysweep.fidelity import FidelityScale, curve as thin_curve, scale_for
from raysweep.records import Observation, TrialStatus
from raysweep.searchers.ax import AxSearcher
from raysweep.searchers.ax.multi_fidelity import FIDELITY_PARAMETER, IterationFidelityGP, TargetFidelityLogNEI
from raysweep.space import Parameter, SearchSpace

SPACE = SearchSpace(
    (
        Parameter("x", "uniform", min=0.0, max=1.0),
        Parameter("lr", "log_uniform", min=1e-4, max=1e-1),
    )
)
SCALE = FidelityScale(attr="training_iteration", full=10.0)


def final_value(config: dict) -> float:
    return 1.0 - (config["x"] - 0.7) ** 2 - 0.1 * (math.log10(config["lr"]) + 2) ** 2


def value_at(config: dict, level: float) -> float:
    """A learning curve: rises towards the final value with training."""
    return final_value(config) * (1.0 - math.exp(-0.4 * level))


def run(trial_id: str, config: dict, reached: float, status=TrialStatus.COMPLETED, phase=1) -> Observation:
    levels = [level for level in (1.0, 2.0, 3.0, 5.0, 8.0, 10.0) if level <= reached]
    curve = thin_curve([(level, value_at(config, level)) for level in levels])  # as the recorder keeps it
    return Observation(
        trial_id=trial_id,
        phase=phase,
        params=dict(config),
        status=status,
        objective=curve[-1][1],
        cost_s=reached,
        gpu_s=0.0,
        iterations=int(reached),
        fidelity=reached,
        curve=curve,
    )


def history(seed: int = 0) -> list[Observation]:
    rng = np.random.default_rng(seed)
    configs = SPACE.sample(rng, 12)
    observations = [run(f"cut-{i}", c, 3.0, TrialStatus.TIME_BUDGET) for i, c in enumerate(configs[:8])]
    observations += [run(f"full-{i}", c, 10.0) for i, c in enumerate(configs[8:])]
    return observations


def searcher(**overrides) -> AxSearcher:
    settings = dict(metric="score", mode="max", num_trials=4, history=history(), random_samples=0, seed=3,
                    fidelity_scale=SCALE)
    settings.update(overrides)
    return AxSearcher(SPACE, **settings)


def test_the_model_is_fit_on_every_curve_point_at_the_fidelity_it_was_measured():
    s = searcher()
    config = s.suggest("t0")
    assert SPACE["x"].contains(config["x"]) and SPACE["lr"].contains(config["lr"])
    assert isinstance(s._surrogate.model, IterationFidelityGP)  # the exponential-decay kernel over iterations
    rows = s.model_training_configs()
    fidelities = sorted(round(row["fidelity"], 6) for row in rows)
    # 8 runs cut at 3 iterations (points at 1 and 3) and 4 full runs (points at 1, 2, 5, 10):
    # every point at the fidelity it was measured.
    assert fidelities.count(10.0) == 4
    assert fidelities.count(3.0) == 8
    assert 1.0 in fidelities and 5.0 in fidelities
    assert len(rows) == 8 * 2 + 4 * 4
    # a cut-short run's point is never given the fidelity of a full run
    cut_configs = {(o.params["x"], o.params["lr"]) for o in history() if o.status is TrialStatus.TIME_BUDGET}
    assert all(row["fidelity"] < 10.0 for row in rows if (row["x"], row["lr"]) in cut_configs)


def test_candidates_are_sought_at_full_fidelity_with_a_projected_baseline():
    s = searcher()
    s.suggest("t0")
    s.suggest("t1")  # t0 pending
    adapter = s._last_adapter
    acquisition = adapter.generator._acquisition
    assert isinstance(acquisition.acqf, TargetFidelityLogNEI)
    fidelity_column = list(adapter.parameters).index(FIDELITY_PARAMETER)
    baseline = acquisition.acqf.X_baseline
    assert baseline.shape[0] >= 1 and bool((baseline[:, fidelity_column] == 1.0).all())
    pending = acquisition.X_pending
    assert pending is not None and bool((pending[:, fidelity_column] == 1.0).all())
    # the suggestions themselves are Ax trials at full fidelity
    arm = s._experiment.trials[s.ax_trial_index("t0")].arm.parameters
    assert arm[FIDELITY_PARAMETER] == 1.0


def test_a_run_cut_short_counts_at_the_fidelity_it_reached_and_a_full_one_on_its_own_trial():
    book = outcomes.register(outcomes.OutcomeBook("mf-test", "score"))
    s = searcher(outcome_key="mf-test")
    cut, full = s.suggest("cut"), s.suggest("full")
    for i in range(1, 5):
        book.read("cut", {"score": value_at(cut, i), "training_iteration": i})
    book.mark("cut", TrialStatus.EARLY_STOPPED)
    s.on_trial_complete("cut", {"score": value_at(cut, 4), "training_iteration": 4})
    for i in range(1, 11):
        book.read("full", {"score": value_at(full, i), "training_iteration": i})
    s.on_trial_complete("full", {"score": value_at(full, 10), "training_iteration": 10})

    observed = {o.trial_id: o for o in s.observations()}
    assert observed["cut"].fidelity == 4.0 and observed["cut"].curve[-1] == (4.0, value_at(cut, 4))
    assert observed["full"].fidelity == 10.0 and [level for level, _ in observed["full"].curve] == [1.0, 2.0, 5.0, 10.0]
    statuses = s.ax_trial_statuses()
    assert statuses[s.ax_trial_index("cut")] == "ABANDONED"  # its value is not a full run's
    assert statuses[s.ax_trial_index("full")] == "COMPLETED"  # measured at full fidelity, its own Ax trial
    cut_points = [p for p in s._points["cut"]]
    shares = [s._experiment.trials[index].arm.parameters[FIDELITY_PARAMETER] for index, _, _ in cut_points]
    assert shares == [0.1, 0.2, 0.4]


def test_the_state_restores_the_same_ax_trials():
    import pickle

    book = outcomes.register(outcomes.OutcomeBook("mf-restore", "score"))
    s = searcher(outcome_key="mf-restore")
    first = s.suggest("a")
    s.suggest("b")
    for i in range(1, 4):
        book.read("a", {"score": value_at(first, i), "training_iteration": i})
    book.mark("a", TrialStatus.TIME_BUDGET)
    s.on_trial_complete("a", {"score": value_at(first, 3), "training_iteration": 3})
    restored = pickle.loads(pickle.dumps(s))
    assert restored.ax_trial_statuses() == s.ax_trial_statuses()
    assert {k: [i for i, _, _ in v] for k, v in restored._points.items()} == {
        k: [i for i, _, _ in v] for k, v in s._points.items()
    }
    arms = {i: t.arm.parameters for i, t in s._experiment.trials.items()}
    assert {i: t.arm.parameters for i, t in restored._experiment.trials.items()} == arms
    assert restored.suggest("c") is not None


def test_the_fidelity_parameter_form_counts_a_cut_run_at_the_length_it_trained():
    space = SearchSpace((Parameter("x", "uniform", min=0.0, max=1.0), Parameter("steps", "int_uniform", min=100, max=1000)))
    scale = FidelityScale(attr="timesteps", parameter="steps")
    cut = Observation("cut", 1, {"x": 0.5, "steps": 1000}, TrialStatus.TIME_BUDGET, 0.4, 3.0, 0.0, 3,
                      fidelity=300.0, curve=((150.0, 0.2), (300.0, 0.4)))
    full = Observation("full", 1, {"x": 0.2, "steps": 400}, TrialStatus.COMPLETED, 0.5, 4.0, 0.0, 4,
                       fidelity=410.0, curve=((200.0, 0.3), (410.0, 0.5)))
    assert [p[0]["steps"] for p in scale.points(cut)] == [150, 300]
    assert [p[0]["steps"] for p in scale.points(full)] == [200, 400]  # a completed run: its own length
    assert scale.is_full(full) and not scale.is_full(cut)
    s = AxSearcher(space, metric="score", mode="max", num_trials=2, history=[cut, full], random_samples=0,
                   fidelity_scale=scale, seed=1)
    assert s.suggest("t") is not None
    assert sorted(row["steps"] for row in s.model_training_configs()) == [150, 200, 300, 400]


@pytest.mark.parametrize("distribution", ["pow2", "log_uniform", "int_log_uniform"])
def test_a_length_parameter_on_a_log_or_power_of_two_scale_takes_every_curve_point(distribution):
    # Curve points at lengths a pow2 parameter cannot hold (3000 steps) broke Ax's ordered-choice
    # coding, so every model-based suggestion failed; a point at length 0 (an evaluation before
    # training) had no place on a log scale and crashed the searcher's construction.
    space = SearchSpace((Parameter("x", "uniform", min=0.0, max=1.0), Parameter("steps", distribution, min=1024, max=65536)))
    scale = scale_for("timesteps", None, "steps", [], power_of_two=distribution == "pow2")
    rng = np.random.default_rng(0)
    history = []
    for i, config in enumerate(space.sample(rng, 10)):
        length = config["steps"]
        levels = [float(level) for level in range(0, int(length / (3 if i % 2 else 1)) + 1, 500)]
        points = thin_curve([(level, -((config["x"] - 0.3) ** 2) + level / 1e5) for level in levels])
        history.append(Observation(f"t{i}", 1, dict(config), TrialStatus.TIME_BUDGET if i % 2 else TrialStatus.COMPLETED,
                                   points[-1][1], 1.0, 0.0, len(levels), fidelity=levels[-1], curve=points))
    cut = Observation("cut", 1, {"x": 0.5, "steps": 65536}, TrialStatus.TIME_BUDGET, 0.3, 1.0, 0.0, 3,
                      fidelity=3000.0, curve=((0.0, 0.1), (1500.0, 0.2), (3000.0, 0.3)))
    lengths = [params["steps"] for params, *_ in scale.points(cut)]
    # length 0 left out; on pow2, the nearest power of two in log2 scale
    assert lengths == ([2048, 4096] if distribution == "pow2" else [1500, 3000])
    s = AxSearcher(space, metric="score", mode="max", num_trials=2, history=[*history, cut], random_samples=0,
                   fidelity_scale=scale, seed=1)
    assert s.suggest("t") is not None
    assert s.generated_by("t") == "model"  # not a quasi-random fallback after a failed fit
    rows = s.model_training_configs()
    assert all(row["steps"] > 0 for row in rows)
    if distribution == "pow2":
        assert {row["steps"] for row in rows} <= {2 ** k for k in range(17)}


def test_a_full_run_is_declared_or_else_learnt_from_completed_trials():
    done = Observation("a", 1, {"x": 0.1}, TrialStatus.COMPLETED, 1.0, 1.0, 0.0, 1, fidelity=50.0)
    cut = Observation("b", 1, {"x": 0.2}, TrialStatus.EARLY_STOPPED, 1.0, 1.0, 0.0, 1, fidelity=80.0)
    assert scale_for("steps", 100.0, None, [done]).full == 100.0
    assert scale_for("steps", None, None, [done, cut], schedule_max=90.0).full == 50.0  # a completed run is full
    assert scale_for("steps", None, None, [cut], schedule_max=90.0).full == 90.0
    assert scale_for("steps", None, None, [done, cut]).full == 50.0
    assert scale_for("steps", None, None, [cut]) is None  # no full run known: the single-fidelity GP
    assert scale_for("steps", None, "x", []).parameter == "x"


@pytest.mark.parametrize("status", [TrialStatus.EARLY_STOPPED, TrialStatus.TIME_BUDGET])
def test_a_cut_short_run_without_a_known_fidelity_gives_the_model_no_point(status):
    unknown = Observation("u", 1, {"x": 0.1, "lr": 1e-3}, status, 0.3, 1.0, 0.0, 1)
    assert SCALE.points(unknown) == []
    done = Observation("d", 1, {"x": 0.1, "lr": 1e-3}, TrialStatus.COMPLETED, 0.3, 1.0, 0.0, 1)
    assert SCALE.points(done) == [({"x": 0.1, "lr": 1e-3}, 1.0, 0.3, 1.0)]


def test_a_sweep_feeds_its_bayesian_phase_runs_cut_short_at_the_fidelity_they_reached(ray_local, write_experiment, capsys):
    import json

    from raysweep import cli
    from tests.conftest import assert_consistent_results, synthetic_experiment

    path = write_experiment(synthetic_experiment(
        trainable="tests.trainables.edges:paced",
        budget=None,
        fidelity={"attr": "timesteps", "max": 8000},
        parameters={
            "x": {"distribution": "uniform", "min": 0.1, "max": 1.0},
            "pause": {"distribution": "choice", "values": [0.0, 1.0]},
        },
        phases=[
            {"name": "explore", "searcher": "random", "trials": 6, "max_trial_time": "3s", "max_concurrent": 2},
            {"name": "exploit", "searcher": "ax", "trials": 3, "random_samples": 0, "max_concurrent": 1},
        ],
    ))
    assert cli.main(["run", str(path)]) == 0
    out = capsys.readouterr().out
    assert "model: multi-fidelity GP; candidates sought at a full run, 8000 timesteps" in out
    run_dir = path.parent / "run"
    trials = assert_consistent_results(run_dir, {1: 6, 2: 3})
    state = json.loads((run_dir / "state.json").read_text())
    assert state["phases"][1]["model_note"].startswith("model: multi-fidelity GP")
    assert state["phases"][0]["model_note"] is None  # a random phase has no GP
    cut = trials[(trials["phase"].astype(int) == 1) & (trials["status"] == "time_budget")]
    assert len(cut) and (cut["fidelity"] < 8000).all()  # slow configs: at most 3 of 8 steps in 3 s
    assert all(list(c)[-1] == f for c, f in zip(cut["curve_fidelity"], cut["fidelity"]))
    assert cli.main(["status", str(run_dir)]) == 0
    assert "model: multi-fidelity GP" in capsys.readouterr().out


def test_the_model_note_says_when_no_trial_reports_the_fidelity_attribute():
    from raysweep.searchers.ax.factory import model_note
    from raysweep.spec import experiment_from_dict
    from tests.conftest import synthetic_experiment

    typo = experiment_from_dict(synthetic_experiment(fidelity={"attr": "timestep"}))
    silent = [Observation(f"t{i}", 1, {"x": 0.1}, TrialStatus.COMPLETED, 1.0, 1.0, 0.0, 3) for i in range(3)]
    assert model_note(typo, None, silent) == (
        "model: single-fidelity GP: none of the 3 earlier trials with a value reported fidelity.attr 'timestep' "
        "(name a value the trainable reports, as metric names one)"
    )
    declared = experiment_from_dict(synthetic_experiment(fidelity={"attr": "timestep", "max": 100}))
    assert model_note(declared, scale_for("timestep", 100.0, None, silent), silent).endswith(
        "; but none of the 3 earlier trials with a value reported fidelity.attr 'timestep' "
        "(name a value the trainable reports, as metric names one)"
    )
    reported = [Observation("r", 1, {"x": 0.1}, TrialStatus.EARLY_STOPPED, 1.0, 1.0, 0.0, 3, fidelity=30.0)]
    assert model_note(typo, None, reported).startswith("model: single-fidelity GP for now: no full run's timestep")
    assert model_note(typo, None, []).startswith("model: single-fidelity GP for now")


def test_with_seconds_as_the_fidelity_every_completed_run_is_a_full_run():
    # No two complete runs take the same time: measured against the slowest one, the faster complete
    # runs counted as cut short, so a sweep's best completed config was left out of the best config.
    from raysweep.selection import best_config

    quick = Observation("quick", 1, {"x": 0.3}, TrialStatus.COMPLETED, 0.95, 0.3, 0.0, 6, fidelity=0.30,
                        curve=((0.05, 0.4), (0.15, 0.8), (0.30, 0.95)))
    slow = Observation("slow", 1, {"x": 0.9}, TrialStatus.COMPLETED, 0.60, 0.33, 0.0, 6, fidelity=0.33,
                       curve=((0.33, 0.60),))
    cut = Observation("cut", 1, {"x": 0.5}, TrialStatus.TIME_BUDGET, 0.70, 0.1, 0.0, 2, fidelity=0.10,
                      curve=((0.10, 0.70),))
    scale = scale_for("time_total_s", None, None, [quick, slow, cut])
    assert scale.full == 0.33 and scale.completion_is_full
    assert scale.is_full(quick) and scale.is_full(slow) and not scale.is_full(cut)
    assert [share for _, share, _, _ in scale.points(quick)] == pytest.approx([1 / 6, 0.5, 1.0])
    assert [share for _, share, _, _ in scale.points(cut)] == pytest.approx([0.10 / 0.33])
    assert best_config([quick, slow, cut], "max", scale=scale).trial_ids == ("quick",)
    steps = scale_for("timesteps", None, None, [quick, slow, cut])
    assert not steps.completion_is_full and not steps.is_full(quick)  # a length: a run that stopped short is not full
