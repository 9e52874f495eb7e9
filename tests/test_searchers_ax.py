"""AxSearcher on real Ax and BoTorch: driven directly as Tune would, then once through Ray Tune."""

from __future__ import annotations

import json
import math
import pickle

import numpy as np
import pytest
from ray.tune.search import Searcher

from raysweep import outcomes
from raysweep.narrowing import Box
from raysweep.records import Observation, TrialStatus
from raysweep.searchers.ax import AX_OBJECTIVE, AxSearcher
from raysweep.space import Parameter, SearchSpace

SPACE = SearchSpace(
    (
        Parameter("lr", "log_uniform", min=1e-5, max=1e-2),
        Parameter("gamma", "logit_normal", min=0.9, max=0.9999),
        Parameter("timesteps", "int_log_uniform", min=100_000_000, max=5_000_000_000, mean=5e8),
        Parameter("batch", "pow2", min=256, max=8192),
        Parameter("layers", "int_uniform", min=1, max=6),
        Parameter("clip", "uniform", min=0.1, max=0.4),
        Parameter("act", "choice", values=("relu", "tanh", "gelu")),
    )
)


def score(config: dict) -> float:
    return (
        -((math.log10(config["lr"]) + 3.5) ** 2)
        - (math.log10(1 - config["gamma"]) + 2) ** 2
        + 0.3 * math.log10(config["timesteps"])
        - 0.1 * abs(math.log2(config["batch"]) - 10)
        - 0.05 * abs(config["layers"] - 3)
        - 5 * (config["clip"] - 0.2) ** 2
        + (0.2 if config["act"] == "gelu" else 0.0)
    )


def observation(trial_id, config, status=TrialStatus.COMPLETED, objective=None, cost=None, phase=1) -> Observation:
    return Observation(
        trial_id=trial_id,
        phase=phase,
        params=dict(config),
        status=status,
        objective=score(config) if objective is None and status is not TrialStatus.FAILED else objective,
        cost_s=config["timesteps"] / 1e6 if cost is None else cost,
        gpu_s=0.0,
        iterations=10,
    )


def history(count: int, seed: int = 0) -> list[Observation]:
    rng = np.random.default_rng(seed)
    return [observation(f"earlier-{i}", config) for i, config in enumerate(SPACE.sample(rng, count))]


def result_for(config: dict) -> dict:
    return {"score": score(config), "time_total_s": config["timesteps"] / 1e6, "training_iteration": 5}


def assert_legal(config: dict) -> None:
    assert set(config) == {*SPACE.names, "seed"}
    assert isinstance(config["seed"], int)
    for parameter in SPACE:
        value = config[parameter.name]
        assert parameter.contains(value), (parameter.name, value)
        if parameter.is_int:
            assert isinstance(value, int), (parameter.name, value)
    assert config["batch"] in {2**k for k in range(8, 14)}


def test_history_reaches_the_model_with_raw_values_while_generation_stays_in_the_box():
    early = history(8)
    short = dict(early[0].params, timesteps=300_000_000, lr=2e-5, gamma=0.95)
    long = dict(early[1].params, timesteps=4_000_000_000)
    failed = dict(early[2].params, timesteps=200_000_000)
    past = [
        *early,
        observation("phase1-300M", short),
        observation("phase2-4B", long, phase=2),
        observation("phase1-crash", failed, status=TrialStatus.FAILED),
    ]
    box = Box(
        ranges={
            "timesteps": (500_000_000, 1_500_000_000),
            "lr": (1e-4, 1e-3),
            "gamma": (0.98, 0.999),
            "batch": (512, 2048),
            "layers": (2, 4),
        },
        choices={"act": ("gelu",)},
    )
    searcher = AxSearcher(SPACE, metric="score", mode="max", num_trials=3, history=past, random_samples=0, box=box, seed=3)

    config = searcher.suggest("t0")
    assert searcher.generated_by("t0") == "model"
    assert_legal(config)
    assert box.contains(config)
    assert config["act"] == "gelu"

    # What the fitted BoTorch model was trained on, mapped back from its train_inputs.
    trained = searcher.model_training_configs()
    assert len(trained) == len(past) - 1  # every usable observation; the failed one has no value
    by_steps = {row["timesteps"]: row for row in trained}
    assert 300_000_000 in by_steps and 4_000_000_000 in by_steps  # outside the box, not clipped
    assert isinstance(by_steps[300_000_000]["timesteps"], int)
    assert by_steps[300_000_000]["lr"] == pytest.approx(2e-5, rel=1e-9)  # below the box's lr range too
    assert by_steps[300_000_000]["gamma"] == pytest.approx(0.95, rel=1e-12)
    for row in trained:
        original = next(o.params for o in past if o.params["timesteps"] == row["timesteps"])
        for name in ("lr", "gamma", "clip"):
            assert row[name] == pytest.approx(original[name], rel=1e-9)
        for name in ("batch", "layers", "act"):
            assert row[name] == original[name]

    # The Ax experiment keeps the declared bounds; the box lives only in generation.
    ax_space = searcher._experiment.search_space.parameters
    assert (ax_space["timesteps"].lower, ax_space["timesteps"].upper) == (100_000_000, 5_000_000_000)
    # Float parameters cross in unit coordinates: the declared bounds are [0, 1] in the parameter's own scale.
    assert (ax_space["gamma__unit"].lower, ax_space["gamma__unit"].upper) == (0.0, 1.0)
    arm = searcher._experiment.trials[searcher.ax_trial_index("t0")].arm.parameters
    assert arm["gamma__unit"] == pytest.approx(SPACE["gamma"].to_unit(config["gamma"]), abs=1e-12)
    assert arm["lr__unit"] == pytest.approx(SPACE["lr"].to_unit(config["lr"]), abs=1e-12)


def test_every_kind_of_parameter_comes_out_legal():
    # "gelu" scores best, so the model would pick it were the box not enforced
    box = Box(ranges={"clip": (0.15, 0.3), "batch": (256, 1024)}, choices={"act": ("relu", "tanh")})
    past = [observation(f"gelu-{i}", dict(c, act="gelu"), objective=5.0) for i, c in enumerate(SPACE.sample(np.random.default_rng(4), 3))]
    searcher = AxSearcher(SPACE, metric="score", mode="max", num_trials=6, random_samples=3, seed=1, box=box, history=past)
    configs = {}
    for position in range(6):
        trial_id = f"t{position}"
        configs[trial_id] = searcher.suggest(trial_id)
        assert_legal(configs[trial_id])
        assert box.contains(configs[trial_id])
        searcher.on_trial_complete(trial_id, result_for(configs[trial_id]))
    kinds = [searcher.generated_by(f"t{i}") for i in range(6)]
    assert kinds == ["random"] * 3 + ["model"] * 3
    assert len({c["seed"] for c in configs.values()}) == 6


def test_random_starts_follow_the_mean_bias_inside_the_box():
    box = Box(ranges={"timesteps": (200_000_000, 2_000_000_000)}, choices={"act": ("relu", "tanh")})
    space = SPACE.with_bias({"timesteps": (5e8, 0.05)})
    searcher = AxSearcher(space, metric="score", mode="max", num_trials=40, random_samples=40, box=box, seed=5)
    configs = [searcher.suggest(f"t{i}") for i in range(40)]
    assert all(searcher.generated_by(f"t{i}") == "random" for i in range(40))
    assert all(box.contains(c) for c in configs)
    assert {c["act"] for c in configs} == {"relu", "tanh"}
    steps = np.log([c["timesteps"] for c in configs])
    # biased toward the mean 5e8: the median sits there, not at the box's log-centre (6.3e8)
    assert abs(np.median(steps) - math.log(5e8)) < 0.05
    assert np.mean(np.abs(steps - math.log(5e8)) < 0.2) > 0.5


def test_without_usable_history_a_few_random_points_come_first():
    searcher = AxSearcher(SPACE, metric="score", mode="max", num_trials=5, random_samples=0, history=history(2)[:0])
    configs = [searcher.suggest(f"t{i}") for i in range(3)]
    assert [searcher.generated_by(f"t{i}") for i in range(3)] == ["random"] * 3
    # the model needs data: while those run, Tune is asked to wait
    assert searcher.suggest("t3") is None
    assert searcher.num_suggested == 3
    for i, config in enumerate(configs):
        searcher.on_trial_complete(f"t{i}", None, error=True)
    # all failed and nothing is running: another random point rather than a stall
    config = searcher.suggest("t3")
    assert searcher.generated_by("t3") == "random" and config is not None

    with_history = AxSearcher(SPACE, metric="score", mode="max", num_trials=2, random_samples=0, history=history(4))
    with_history.suggest("a")
    assert with_history.generated_by("a") == "model"


def test_trial_endings_reach_ax_as_completed_early_stopped_or_failed():
    key = "test-endings"
    book = outcomes.register(outcomes.OutcomeBook(key, "score"))
    searcher = AxSearcher(
        SPACE, metric="score", mode="max", num_trials=6, random_samples=6, outcome_key=key, max_suggestion_cost=900.0
    )
    configs = {f"t{i}": searcher.suggest(f"t{i}") for i in range(6)}
    book.mark("t1", TrialStatus.EARLY_STOPPED, "ASHA")
    book.mark("t2", TrialStatus.TIME_BUDGET, "max_trial_time")
    searcher.on_trial_complete("t0", result_for(configs["t0"]))
    searcher.on_trial_complete("t1", result_for(configs["t1"]))
    searcher.on_trial_complete("t2", result_for(configs["t2"]))
    searcher.on_trial_complete("t3", None, error=True)
    searcher.on_trial_complete("t4", {"score": float("nan"), "time_total_s": 3.0})
    searcher.on_trial_complete("t5", {"time_total_s": 3.0})  # never reported the metric

    statuses = searcher.ax_trial_statuses()
    index = searcher.ax_trial_index
    assert [statuses[index(f"t{i}")] for i in range(6)] == [
        "COMPLETED", "EARLY_STOPPED", "EARLY_STOPPED", "FAILED", "FAILED", "FAILED"
    ]
    data = searcher._experiment.lookup_data().df
    with_data = set(data["trial_index"])
    assert with_data == {index("t0"), index("t1"), index("t2")}
    stopped = data[data["trial_index"] == index("t2")].set_index("metric_name")["mean"]
    assert stopped[AX_OBJECTIVE] == pytest.approx(score(configs["t2"]))
    assert stopped["cost_s"] == pytest.approx(configs["t2"]["timesteps"] / 1e6)  # the overrun's cost is learned
    assert [o.status for o in searcher.observations()] == [
        TrialStatus.COMPLETED, TrialStatus.EARLY_STOPPED, TrialStatus.TIME_BUDGET,
        TrialStatus.FAILED, TrialStatus.FAILED, TrialStatus.FAILED,
    ]
    # the cost limit is an outcome constraint of the Ax optimisation config
    (constraint,) = searcher._experiment.optimization_config.outcome_constraints
    assert constraint.metric_names == ["cost_s"] and constraint.bound == 900.0 and constraint.op.name == "LEQ"


def test_never_more_than_num_trials_and_pending_trials_shape_suggestions():
    searcher = AxSearcher(SPACE, metric="score", mode="min", num_trials=4, random_samples=0, history=history(6))
    first = searcher.suggest("a")
    second = searcher.suggest("b")  # "a" is pending: qLogNEI fantasises over it
    assert first != second
    assert searcher.suggest("a") == first  # asking again for a known trial returns its config
    searcher.on_trial_complete("a", {"score": 1.0, "time_total_s": 10.0})
    searcher.suggest("c")
    searcher.suggest("d")
    assert searcher.suggest("e") == Searcher.FINISHED
    assert searcher.num_suggested == 4
    assert len(searcher._experiment.trials) == 6 + 4
    searcher.on_trial_complete("unknown", {"score": 1.0})  # ignored, no error


def test_resampling_reruns_pareto_front_configs_with_new_seeds():
    key = "test-resample"
    book = outcomes.register(outcomes.OutcomeBook(key, "score"))
    base = history(3)
    cheap, costly, dominated = base[0].params, base[1].params, base[2].params
    past = [
        observation("cheap", cheap, objective=1.0, cost=10.0),
        observation("costly", costly, objective=2.0, cost=20.0),
        observation("dominated", dominated, objective=0.0, cost=30.0),
    ]
    searcher = AxSearcher(
        SPACE, metric="score", mode="max", num_trials=4, history=past, random_samples=1, resample_every=2, outcome_key=key
    )
    one = searcher.suggest("t1")
    two = searcher.suggest("t2")
    assert searcher.generated_by("t1") == "random"
    assert searcher.generated_by("t2") == "resample" and searcher.resampled_from("t2") == "costly"
    assert book.origin("t2") == "costly"
    assert {k: v for k, v in two.items() if k != "seed"} == costly
    assert two["seed"] != one["seed"]
    searcher.on_trial_complete("t2", {"score": 0.5, "time_total_s": 20.0})  # the lucky winner regresses
    searcher.on_trial_complete("t1", {"score": -9.0, "time_total_s": 500.0})
    searcher.suggest("t3")
    four = searcher.suggest("t4")
    # "costly" now has two measurements; the least-measured front config goes next
    assert searcher.resampled_from("t4") == "cheap"
    assert {k: v for k, v in four.items() if k != "seed"} == cheap
    assert searcher.resampled_from("t3") is None
    best = searcher.best_config()  # repeats pooled: costly's mean fell from 2.0 to 1.25, still above cheap's 1.0
    assert best.trial_ids == ("costly", "t2") and best.objective == pytest.approx(1.25) and best.params == costly



def test_a_restored_searcher_tells_a_new_driver_s_book_which_pending_trial_is_a_resample(tmp_path):
    # After Ctrl-C or a kill, a resample still pending ends in the next driver, whose book knew
    # nothing of it: its row lost resampled_from (and the box rule judged it as an ordinary trial).
    key = "test-resample-restored"
    outcomes.register(outcomes.OutcomeBook(key, "score"))
    past = [observation(f"h{i}", o.params, objective=float(i), cost=10.0 * (i + 1)) for i, o in enumerate(history(3))]
    searcher = AxSearcher(SPACE, metric="score", mode="max", num_trials=4, history=past, random_samples=1,
                          resample_every=2, outcome_key=key)
    searcher.suggest("t1")
    searcher.suggest("t2")
    assert searcher.resampled_from("t2") is not None
    path = tmp_path / "state.json"
    searcher.save(str(path))
    fresh = outcomes.register(outcomes.OutcomeBook(key, "score"))  # the next driver's book
    restored = AxSearcher(SPACE, metric="score", mode="max", num_trials=4, history=past, outcome_key=key)
    restored.restore(str(path))
    assert fresh.origin("t2") == searcher.resampled_from("t2")
    assert fresh.origin("t1") is None


def test_save_and_restore_continue_the_phase(tmp_path):
    past = history(4)
    settings = dict(metric="score", mode="max", num_trials=6, history=past, random_samples=2, resample_every=3, seed=11)
    first = AxSearcher(SPACE, **settings)
    configs = {}
    for trial_id in ("t0", "t1", "t2"):
        configs[trial_id] = first.suggest(trial_id)
    first.on_trial_complete("t0", result_for(configs["t0"]))
    first.on_trial_complete("t1", None, error=True)
    path = tmp_path / "searcher-state.json"
    first.save(str(path))
    assert not [p for p in tmp_path.iterdir() if p.name != path.name]  # no temp file left behind

    second = AxSearcher(SPACE, **settings)
    second.restore(str(path))
    assert second.num_suggested == 3
    assert second.suggest("t1") == configs["t1"]  # a known trial keeps its config
    assert second.observations()[: len(past)] == past
    second.on_trial_complete("t2", result_for(configs["t2"]))
    for trial_id in ("t3", "t4", "t5"):
        configs[trial_id] = second.suggest(trial_id)
        assert configs[trial_id] not in (None, Searcher.FINISHED)
    assert second.suggest("t6") == Searcher.FINISHED
    assert second.generated_by("t5") == "resample"  # the 6th trial, counted across the restore
    indices = [second.ax_trial_index(f"t{i}") for i in range(6)]
    assert len(set(indices)) == 6 and len(second._experiment.trials) == len(past) + 6
    assert len({c["seed"] for c in configs.values()}) == 6
    assert configs["t3"] != configs["t0"] and configs["t3"] != configs["t1"]

    clone = pickle.loads(pickle.dumps(second))
    assert clone.num_suggested == 6 and clone.observations() == second.observations()


def test_restore_refuses_another_space(tmp_path):
    searcher = AxSearcher(SPACE, metric="score", mode="max", num_trials=1)
    path = tmp_path / "state.json"
    searcher.save(str(path))
    other = AxSearcher(SearchSpace(SPACE.parameters[:2]), metric="score", mode="max", num_trials=1)
    with pytest.raises(ValueError, match="saved for another search space"):
        other.restore(str(path))
    # Tune logs a failed restore and starts the phase over with this searcher: it suggests nothing
    # more, so that run ends and raysweep runs the missing trials afresh from the staged rows
    assert other.suggest("t0") == Searcher.FINISHED


def test_a_state_saved_in_another_format_is_refused_by_restore_and_by_unpickling(tmp_path):
    searcher = AxSearcher(SPACE, metric="score", mode="max", num_trials=1)
    path = tmp_path / "state.json"
    searcher.save(str(path))
    old = {**json.loads(path.read_text()), "format": "raysweep.AxSearcher/2"}
    path.write_text(json.dumps(old))
    with pytest.raises(ValueError, match=r"is not an AxSearcher checkpoint \(format 'raysweep.AxSearcher/2'\)"):
        AxSearcher(SPACE, metric="score", mode="max", num_trials=1).restore(str(path))
    with pytest.raises(ValueError, match=r"a pickled AxSearcher of another raysweep \(format 'raysweep.AxSearcher/2', not 'raysweep.AxSearcher/3'\)"):
        AxSearcher.__new__(AxSearcher).__setstate__({"state": old})


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"mode": "maximize"}, r"mode must be 'max' or 'min'; got 'maximize'"),
        ({"num_trials": -1}, r"num_trials must be an int >= 0; got -1"),
        ({"resample_every": 1}, r"resample_every must be None or an int >= 2; got 1"),
        ({"max_suggestion_cost": 0}, r"max_suggestion_cost must be None or a positive number of seconds; got 0"),
        ({"cost_field": "gpu_s"}, r"cost_field='gpu_s' needs gpus_per_trial > 0; got 0.0"),
        ({"box": Box(ranges={"lr": (1e-3, 1.0)})}, r"box range of 'lr' must lie inside its declared bounds"),
        ({"box": Box(ranges={"batch": (300.0, 500.0)})}, r"box range of 'batch' holds no power of two; got \(300.0, 500.0\)"),
        ({"box": Box(ranges={"layers": (2.2, 2.8)})}, r"box range of 'layers' holds no integer; got \(2.2, 2.8\)"),
    ],
)
def test_bad_settings_name_the_rule_and_the_value(overrides, message):
    settings = dict(metric="score", mode="max", num_trials=3)
    settings.update(overrides)
    with pytest.raises(ValueError, match=message):
        AxSearcher(SPACE, **settings)


# -- through Ray Tune -----------------------------------------------------------------


@pytest.fixture(scope="module")
def local_ray():
    import ray

    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    if started:
        ray.shutdown()


@pytest.mark.parametrize("num_samples", ["plan", -1], ids=["num_samples=N", "num_samples=-1"])
def test_a_phase_through_ray_tune_ends_with_exactly_n_trials(local_ray, tmp_path, num_samples):
    """With num_samples=-1 (the runner's way) the phase ends on the searcher's FINISHED."""
    from ray import tune

    counter = tmp_path / "calls"
    counter.write_text("0")

    def trainable(config):
        import fcntl
        import math as m

        with open(counter, "r+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            call = int(handle.read() or 0) + 1
            handle.seek(0)
            handle.write(str(call))
            handle.truncate()
        if call == 2:
            raise RuntimeError("this trial crashes")
        value = float("nan") if call == 3 else -((m.log10(config["lr"]) + 3.5) ** 2) - (config["clip"] - 0.2) ** 2
        tune.report({"score": value})

    trials = 6
    searcher = AxSearcher(SPACE, metric="score", mode="max", num_trials=trials, random_samples=3, seed=2)
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=searcher,
            num_samples=trials if num_samples == "plan" else num_samples,
            max_concurrent_trials=2,
            reuse_actors=True,
            metric="score",
            mode="max",
        ),
        run_config=tune.RunConfig(storage_path=str(tmp_path / "tune"), name="phase", verbose=0),
    )
    results = tuner.fit()
    assert len(results) == trials
    assert searcher.num_suggested == trials
    statuses = sorted(searcher.ax_trial_statuses().values())
    assert statuses == ["COMPLETED"] * (trials - 2) + ["FAILED"] * 2
    assert sum(1 for r in results if r.error is not None) == 1
    for result in results:
        assert_legal(result.config)


def test_boxes_of_any_raw_magnitude_reach_ax():
    # Ax refuses ranges under 1.5e-5 wide in its own coordinates; raysweep gives it unit coordinates.
    space = SearchSpace(
        (
            Parameter("weight_decay", "log_uniform", min=1e-7, max=1e-2),
            Parameter("tiny", "uniform", min=0.0, max=1e-6),
            Parameter("x", "uniform", min=0.0, max=1.0),
        )
    )
    rng = np.random.default_rng(0)
    past = [
        Observation(f"p{i}", 1, c, TrialStatus.COMPLETED, -abs(math.log10(c["weight_decay"]) + 6) - c["x"], 1.0, 0.0, 1)
        for i, c in enumerate(space.sample(rng, 8))
    ]
    box = Box(ranges={"weight_decay": (2e-7, 8e-6), "tiny": (1e-7, 1.2e-7)})
    searcher = AxSearcher(space, metric="score", mode="max", num_trials=4, history=past, random_samples=1, box=box, seed=2)
    for i in range(4):
        config = searcher.suggest(f"t{i}")
        assert box.contains(config), config
        searcher.on_trial_complete(f"t{i}", {"score": -1.0, "time_total_s": 1.0})
    assert {searcher.generated_by(f"t{i}") for i in range(4)} == {"random", "model"}
    trained = searcher.model_training_configs()
    assert sorted(row["weight_decay"] for row in trained[:8]) == pytest.approx(
        sorted(o.params["weight_decay"] for o in past), rel=1e-9
    )


def _same(a, b) -> bool:
    return type(a) is type(b) and a == b


def test_a_choice_of_null_beside_numbers_crosses_to_ax_and_back_raw():
    space = SearchSpace(
        (
            Parameter("max_grad_norm", "choice", values=(None, 0.5, 1.0)),
            Parameter("flag", "choice", values=(1, "1", True)),  # equal in Python, three values to the user
            Parameter("x", "uniform", min=0.0, max=1.0),
        )
    )
    past = [
        Observation(f"p{i}", 1, {"max_grad_norm": v, "flag": f, "x": x}, TrialStatus.COMPLETED, score, 1.0, 0.0, 1)
        for i, (v, f, x, score) in enumerate(
            [(None, 1, 0.2, 3.0), (0.5, "1", 0.4, 1.0), (1.0, True, 0.6, 0.0), (None, "1", 0.8, 2.5)]
        )
    ]
    searcher = AxSearcher(space, metric="score", mode="max", num_trials=3, history=past, random_samples=0, seed=5)
    for i in range(3):
        config = searcher.suggest(f"t{i}")
        assert searcher.generated_by(f"t{i}") == "model"
        assert any(_same(config["max_grad_norm"], v) for v in (None, 0.5, 1.0))
        assert any(_same(config["flag"], v) for v in (1, "1", True))
        searcher.on_trial_complete(f"t{i}", {"score": 1.0, "time_total_s": 1.0})
    trained = searcher.model_training_configs()
    assert [(row["max_grad_norm"], type(row["flag"])) for row in trained[:4]] == [
        (None, int), (0.5, str), (1.0, bool), (None, str)
    ]

    # A box may keep only the null value.
    box = Box(choices={"max_grad_norm": (None,)})
    narrowed = AxSearcher(space, metric="score", mode="max", num_trials=2, history=past, random_samples=1, box=box, seed=6)
    for i in range(2):
        assert narrowed.suggest(f"n{i}")["max_grad_norm"] is None
        narrowed.on_trial_complete(f"n{i}", {"score": 1.0, "time_total_s": 1.0})


def test_past_max_model_rows_the_gp_is_fit_on_a_subset_that_keeps_the_phase_s_own_trials(monkeypatch):
    from raysweep.searchers.ax import subset

    monkeypatch.setattr(subset, "MAX_MODEL_ROWS", 24)
    past = history(40, seed=7)
    searcher = AxSearcher(SPACE, metric="score", mode="max", num_trials=4, history=past, random_samples=0, seed=4)
    configs = []
    for i in range(3):
        configs.append(searcher.suggest(f"t{i}"))
        searcher.on_trial_complete(f"t{i}", result_for(configs[-1]))
    searcher.suggest("t3")
    trained = searcher.model_training_configs()
    assert len(trained) == 24
    keys = {round(row["clip"], 9) for row in trained}
    assert all(round(c["clip"], 9) in keys for c in configs)  # this phase's own trials
    best = max(past, key=lambda o: o.objective)
    assert round(best.params["clip"], 9) in keys
    # the refit rule counts every usable observation, not the rows of the subset
    assert searcher._surrogate.observed_rows == 43


def test_a_phase_leaves_its_gp_hyperparameters_and_the_next_phase_starts_from_them(tmp_path):
    path = tmp_path / "model" / "phase2-gp.json"
    first = AxSearcher(SPACE, metric="score", mode="max", num_trials=2, history=history(12), random_samples=0,
                       seed=1, hyperparameters_path=str(path))
    first.suggest("a")
    saved = json.loads(path.read_text())
    assert saved["rows"] == 12 and saved["tensors"]
    second = AxSearcher(SPACE, metric="score", mode="max", num_trials=2, history=history(14, seed=3),
                        random_samples=0, seed=2, warm_hyperparameters=saved)
    start = {k: v.clone() for k, v in second._surrogate.resume_state.items()}
    assert second._surrogate.rows_at_last_optimisation is None  # optimised on its first fit, from saved
    second.suggest("b")
    assert second.generated_by("b") == "model"
    assert second._surrogate.rows_at_last_optimisation == 14
    assert set(start) == set(second._surrogate.hyperparameters()["tensors"])
    # something unreadable costs only a cold start
    cold = AxSearcher(SPACE, metric="score", mode="max", num_trials=1, history=history(6), random_samples=0,
                      warm_hyperparameters={"rows": 3})
    assert cold.suggest("c") is not None and cold.generated_by("c") == "model"


def test_the_saved_state_names_the_history_and_a_restore_reads_it_back_from_parquet(ray_local, write_experiment):
    from raysweep import planning, sweep
    from raysweep.searchers.ax import make_ax_searcher
    from raysweep.sinks.parquet import ParquetSink
    from raysweep.spec import load_experiment
    from tests.conftest import synthetic_experiment

    experiment = load_experiment(write_experiment(synthetic_experiment(budget=None, phases=[
        {"name": "explore", "searcher": "random", "trials": 5, "max_trial_time": "30s"},
        {"name": "exploit", "searcher": "ax", "trials": 2, "random_samples": 0, "max_trial_time": "30s"},
    ])))
    result = sweep.run(experiment, phase=1)
    sink = ParquetSink(result.run_dir, experiment.space)
    searcher, _ = make_ax_searcher(experiment, planning.plan(experiment)[1], sink, "test#2")
    config = searcher.suggest("t0")
    state = searcher.__getstate__()["state"]
    assert "history" not in state and len(state["history_ids"]) == 5 and state["history_phases"] == [1]
    restored = pickle.loads(pickle.dumps(searcher))
    assert restored.observations() == searcher.observations()
    assert restored.ax_trial_statuses() == searcher.ax_trial_statuses()
    assert restored.suggest("t0") == config  # the pending trial came back with its config
    # a run directory that lost a trial the state names cannot be restored silently
    state["history_ids"][0] = "gone"
    with pytest.raises(ValueError, match=r"hold no trial 'gone' \(1 of the searcher's 5 history observations are missing\)$"):
        AxSearcher.__new__(AxSearcher).__setstate__({"state": state})


# -- a box that follows the optimum (raysweep.trust_region) -----------------------------
TRUST_SPACE = SearchSpace((Parameter("x", "uniform", min=0.0, max=1.0), Parameter("lr", "log_uniform", min=1e-4, max=1e-2)))


def test_the_box_follows_the_optimum_each_trial_s_box_is_noted_and_a_restore_keeps_the_region(tmp_path):
    from raysweep.trust_region import TrustRegion

    key = "test-trust-region"
    book = outcomes.register(outcomes.OutcomeBook(key, "score"))
    rising = lambda config: 10.0 * config["x"] - 0.1 * abs(math.log10(config["lr"]) + 3)  # noqa: E731  best at x = 1
    rng = np.random.default_rng(3)
    past = [
        Observation(f"earlier-{i}", 1, {"x": float(x), "lr": float(lr)}, TrialStatus.COMPLETED,
                    rising({"x": x, "lr": lr}), 1.0, 0.0, 1)
        for i, (x, lr) in enumerate(zip(rng.uniform(0.2, 0.3, 6), 10 ** rng.uniform(-4, -2, 6)))
    ]
    box = Box(ranges={"x": (0.2, 0.3), "lr": (1e-4, 1e-2)})
    settings = dict(metric="score", mode="max", num_trials=8, history=past, random_samples=0, seed=5, outcome_key=key)
    searcher = AxSearcher(TRUST_SPACE, box=box, trust_region=TrustRegion(TRUST_SPACE, box), **settings)
    assert book.region == {"box": box.to_dict(), "growths": 0, "shrinks": 0}
    uppers = []
    for i in range(5):
        config = searcher.suggest(f"t{i}")
        generated_in = Box.from_dict(book.box_of(f"t{i}"))
        assert generated_in == searcher.box and generated_in.contains(config)
        searcher.on_trial_complete(f"t{i}", {"score": rising(config), "time_total_s": 1.0})
        uppers.append(searcher.box.ranges["x"][1])
    assert uppers[-1] > 0.3 and uppers == sorted(uppers)  # it grew toward x = 1 ...
    assert max(uppers) <= 1.0  # ... and never past the declared bound
    assert searcher.trust_region.growths >= 2 and book.region["box"] == searcher.box.to_dict()
    assert searcher.box.ranges["lr"] == (1e-4, 1e-2)  # a range already at its declared bounds has no free edge

    path = tmp_path / "searcher-state.json"
    searcher.save(str(path))
    again = AxSearcher(TRUST_SPACE, box=box, trust_region=TrustRegion(TRUST_SPACE, box), **settings)
    again.restore(str(path))
    assert again.box == searcher.box and again.trust_region.to_dict() == searcher.trust_region.to_dict()
    config = again.suggest("t5")
    assert again.box.contains(config) and book.box_of("t5") == again.box.to_dict()


def test_a_trust_region_must_start_from_the_searcher_s_box():
    from raysweep.trust_region import TrustRegion

    with pytest.raises(ValueError, match=r"trust_region must start from the box; it holds x \[0.1, 0.2\]"):
        AxSearcher(TRUST_SPACE, metric="score", mode="max", num_trials=1, box=Box(ranges={"x": (0.2, 0.3)}),
                   trust_region=TrustRegion(TRUST_SPACE, Box(ranges={"x": (0.1, 0.2)})))
