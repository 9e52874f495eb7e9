import copy
import re
import subprocess
import sys

import pytest

from raysweep import spec as spec_module
from raysweep.errors import SpecError
from raysweep.spec import experiment_from_dict
from tests.conftest import ROOT, synthetic_experiment

BASE = synthetic_experiment(
    budget=10,
    phases=[
        {"name": "a", "searcher": "grid", "share": 0.5, "max_trial_time": "2m"},
        {"name": "b", "searcher": "ax", "share": 0.5, "max_trial_time": "4m"},
    ],
)


def _with(change):
    data = copy.deepcopy(BASE)
    change(data)
    return data


CASES = [
    ("unknown key", lambda d: d.update(colour="red"), r"^colour: unknown key 'colour'$"),
    ("nested unknown key", lambda d: d["phases"][1].update(bogus=1), r"^phases\[1\]\.bogus: unknown key 'bogus' in phases\[1\]$"),
    ("missing metric", lambda d: d.pop("metric"), r"^metric: required field is missing$"),
    ("bad mode", lambda d: d.update(mode="maximize"), r"^mode: mode must be max or min; got 'maximize'$"),
    ("min >= max", lambda d: d["parameters"]["x"].update(min=2.0), r"^parameters\.x\.min: min must be < max \(max is 1\); got 2\.0$"),
    ("log min <= 0", lambda d: d["parameters"]["lr"].update(min=0), r"^parameters\.lr\.min: log_uniform needs min > 0; got 0\.0$"),
    ("logit bounds", lambda d: d["parameters"].update(g={"distribution": "logit_normal", "min": 0.5, "max": 1.0}),
     r"^parameters\.g\.max: logit_normal bounds must lie inside \(0, 1\); got 1\.0$"),
    ("mean outside", lambda d: d["parameters"]["x"].update(mean=1.5), r"^parameters\.x\.mean: mean must lie within \[0, 1\]; got 1\.5$"),
    ("unknown distribution", lambda d: d["parameters"]["x"].update(distribution="normal"),
     r"^parameters\.x\.distribution: unknown distribution .*; got 'normal'$"),
    ("empty choice", lambda d: d["parameters"]["act"].update(values=[]), r"^parameters\.act\.values: a choice needs at least one value; got \[\]$"),
    ("shares", lambda d: d["phases"][1].update(share=0.2), r"^phases: the shares of the phases must sum to 1; got 0\.7$"),
    ("trials <= 0", lambda d: d["phases"][1].update(share=None, trials=0), r"^phases\[1\]\.trials: must be > 0; got 0$"),
    ("both share and trials", lambda d: d["phases"][0].update(trials=3),
     r"^phases\[0\]\.share: give exactly one of share .* or trials; got \{'share': 0\.5, 'trials': 3\}$"),
    ("neither share nor trials", lambda d: d["phases"][0].pop("share"), r"^phases\[0\]\.share: give exactly one of share"),
    ("bad duration", lambda d: d["phases"][1].update(max_trial_time="5 mins"),
     r"^phases\[1\]\.max_trial_time: unparseable duration \(.*\); got '5 mins'$"),
    ("unknown searcher", lambda d: d["phases"][0].update(searcher="tpe"), r"^phases\[0\]\.searcher: unknown searcher .*; got 'tpe'$"),
    ("trainable import", lambda d: d.update(trainable="no_such_pkg.mod:train"),
     r"^trainable: cannot import module 'no_such_pkg\.mod' .*; got 'no_such_pkg\.mod:train'$"),
    ("command not found", lambda d: (d.pop("trainable"), d.update(command=["no-such-program-xyz", "--x", "{x}"])),
     r"^command\[0\]: command not found .*; got 'no-such-program-xyz'$"),
    ("command placeholder", lambda d: (d.pop("trainable"), d.update(command=["python", "--y", "{y}"])),
     r"^command\[2\]: placeholder \{y\} names no parameter \(parameters, seed and trial_id can be used\); got '\{y\}'$"),
    ("command positional placeholder", lambda d: (d.pop("trainable"), d.update(command=["python", "--x", "{0}"])),
     r"^command\[2\]: placeholder \{0\} must name a parameter, seed or trial_id; got '\{0\}'$"),
    ("command format spec for a choice", lambda d: (d.pop("trainable"), d.update(command=["python", "--act={act:.3f}"])),
     r"^command\[1\]: placeholder \{act:\.3f\} cannot format act's value 'tanh' \(.*\); got '--act=\{act:\.3f\}'$"),
    ("command stray brace", lambda d: (d.pop("trainable"), d.update(command=["python", "--x", "{x}}"])),
     r"^command\[2\]: unbalanced braces \(.*\); got '\{x\}\}'$"),
    ("phase bias may not redefine bounds", lambda d: d["phases"][0].update(bias={"x": {"mean": 0.5, "min": 0.2}}),
     r"^phases\[0\]\.bias\.x\.min: unknown key 'min'"),
    ("narrow on a grid", lambda d: d["phases"][0].update(narrow={"std_multiplier": 2}),
     r"^phases\[0\]\.narrow: only phases with searcher ax take narrow"),
    ("reserved name", lambda d: d["parameters"].update(seed={"distribution": "int_uniform", "min": 0, "max": 9}),
     r"^parameters: the parameter name 'seed' is reserved"),
]


@pytest.mark.parametrize("label, change, message", CASES, ids=[c[0] for c in CASES])
def test_bad_input_names_field_rule_and_value(label, change, message):
    with pytest.raises(SpecError, match=message):
        experiment_from_dict(_with(change))


def test_set_overrides_any_field_and_rejects_unknown_paths():
    experiment = experiment_from_dict(BASE, ["phases.2.max_trial_time=10m", "metric=heart.get", "parameters.x.max=2"])
    assert experiment.phases[1].max_trial_time == 600 and experiment.metric == "heart.get"
    assert experiment.parameters["x"].max == 2
    with pytest.raises(SpecError, match=r"^--set sweep\.metric: no such field: sweep \(fields here: name, .*, model\); got 'x'$"):
        experiment_from_dict(BASE, ["sweep.metric=x"])
    with pytest.raises(SpecError, match=r"^--set fidelity\.maxx: no such field: fidelity\.maxx \(fields here: attr, max, parameter\); got 3$"):
        experiment_from_dict(BASE, ["fidelity.maxx=3"])
    with pytest.raises(SpecError, match=r"^--set phases\.5\.share: no phase 5 \(phases count from 1; phases: 1 a, 2 b\)$"):
        experiment_from_dict(BASE, ["phases.5.share=1"])


def test_set_addresses_phases_by_name_or_by_the_number_phase_uses():
    by_name = experiment_from_dict(BASE, ["phases.b.max_trial_time=2h"])
    by_number = experiment_from_dict(BASE, ["phases.2.max_trial_time=2h"])
    assert by_name.phases[1].max_trial_time == by_number.phases[1].max_trial_time == 7200
    assert by_name.phases[0].max_trial_time == 120
    with pytest.raises(SpecError, match=r"^--set phases\.0\.share: no phase 0 \(phases count from 1; phases: 1 a, 2 b\)$"):
        experiment_from_dict(BASE, ["phases.0.share=1"])
    with pytest.raises(SpecError, match=r"^--set phases\.c\.share: no phase named 'c' \(phases: 1 a, 2 b\)$"):
        experiment_from_dict(BASE, ["phases.c.share=1"])
    # The old bracket form was a 0-based list index: refused, with the two forms that mean the same phase.
    with pytest.raises(SpecError, match=r"^--set phases\[1\]\.max_trial_time: address a phase by name or by its number "
                       r"counted from 1, as --phase does, not by \[index\] \(phases\[1\] would be phases\.b or phases\.2\); "
                       r"phases: 1 a, 2 b$"):
        experiment_from_dict(BASE, ["phases[1].max_trial_time=2h"])


def test_set_values_are_yaml_and_other_lists_keep_their_index():
    experiment = experiment_from_dict(BASE, ["parameters.act.values=[tanh, relu, gelu]", "parameters.act.values[2]=elu"])
    assert experiment.parameters["act"].values == ["tanh", "relu", "elu"]
    with pytest.raises(SpecError, match=r"^--set budget: not valid YAML \(.*\)$"):
        experiment_from_dict(BASE, ["budget=[1"])
    with pytest.raises(SpecError, match=r"^--set seed: duplicate key \(line 1; first at line 1\)$|^--set seed\.a: duplicate key"):
        experiment_from_dict(BASE, ["seed={a: 1, a: 2}"])


# Every numeric field of the spec, where it sits in an experiment dict (phases[1] is an ax phase).
_NUMERIC_HOMES = {
    spec_module.Experiment: [],
    spec_module.Resources: ["resources"],
    spec_module.ParameterSpec: ["parameters", "x"],
    spec_module.PhaseSpec: ["phases", 1],
    spec_module.NarrowSpec: ["phases", 1, "narrow"],
    spec_module.EarlyStoppingSpec: ["phases", 1, "early_stopping"],
    spec_module.BiasSpec: ["phases", 1, "bias", "x"],
}


def _numeric_fields():
    for model, home in _NUMERIC_HOMES.items():
        for name, info in model.model_fields.items():
            kinds = {a for a in getattr(info.annotation, "__args__", (info.annotation,)) if a is not type(None)}
            kinds = {getattr(k, "__origin__", k) for k in kinds}
            if kinds & {int, float}:
                yield [*home, name]


def _full_base():
    data = copy.deepcopy(BASE)
    data["resources"] = {"cpu": 1, "gpu": 0}
    data["phases"][1].update(narrow={"min_top": 2}, early_stopping={"type": "asha"}, bias={"x": {"mean": 0.5}})
    return data


def _path_text(path):
    return "".join(f"[{p}]" if isinstance(p, int) else (f".{p}" if i else p) for i, p in enumerate(path))


def test_every_numeric_field_is_found():
    assert len(list(_numeric_fields())) >= 29  # budget, seed, resources.cpu, phases[1].trials, narrow.min_top, ...


@pytest.mark.parametrize("bad", [True, float("inf"), float("nan"), "3"], ids=["bool", "inf", "nan", "string"])
@pytest.mark.parametrize("path", list(_numeric_fields()), ids=_path_text)
def test_numeric_fields_take_only_finite_numbers(path, bad):
    if path[-1] in ("max_trial_time", "max_suggestion_cost") and bad == "3":
        return  # a duration may be a string ("90s", "3" seconds)
    data = _full_base()
    node = data
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = bad
    field = re.escape(_path_text(path))
    with pytest.raises(SpecError, match=rf"^{field}: .*; got {re.escape(repr(bad))}$"):
        experiment_from_dict(data)


def test_inf_time_budget_names_the_rule():
    with pytest.raises(SpecError, match=r"^phases\[1\]\.max_trial_time: a duration must be finite \(leave the field out for no limit\); got inf$"):
        experiment_from_dict(_with(lambda d: d["phases"][1].update(max_trial_time=float("inf"))))
    with pytest.raises(SpecError, match=r"^phases\[0\]\.trials: must be a whole number; got True$"):
        experiment_from_dict(_with(lambda d: d["phases"][0].update(share=None, trials=True)))


def test_a_trainable_that_exits_or_raises_on_import_is_refused(tmp_path, monkeypatch):
    (tmp_path / "exits_on_import.py").write_text("import sys\nsys.exit(3)\n")
    (tmp_path / "raises_on_import.py").write_text("raise RuntimeError('needs a GPU\\nsecond line')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(SpecError, match=r"^trainable: importing module 'exits_on_import' called sys\.exit\(3\); guard its "
                       r"script code with `if __name__ == \"__main__\":`; got 'exits_on_import:train'$"):
        experiment_from_dict(_with(lambda d: d.update(trainable="exits_on_import:train")))
    with pytest.raises(SpecError, match=r"^trainable: cannot import module 'raises_on_import' \(RuntimeError: needs a GPU "
                       r"second line\); got 'raises_on_import:train'$"):
        experiment_from_dict(_with(lambda d: d.update(trainable="raises_on_import:train")))


def _cli(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "raysweep", *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_cli_bad_file_exits_2_with_one_line_and_writes_nothing(write_experiment, tmp_path):
    bad = _with(lambda d: d["phases"][1].update(max_trial_time="soon"))
    path = write_experiment(bad)
    for command in ("validate", "run"):
        proc = _cli(command, str(path))
        assert proc.returncode == 2, proc.stderr
        assert "Traceback" not in proc.stderr
        assert proc.stderr.strip().splitlines()[-1].startswith("raysweep: error: phases[1].max_trial_time: unparseable duration")
    assert not (tmp_path / "run").exists()


def test_cli_quick_mode_unknown_parameter_says_how_to_give_a_range(tmp_path):
    proc = _cli("run", "--trainable", "tests.trainables.synthetic:train", "--params", "x:0-1,mystery",
                "--budget", "10", "--metric", "score", "--mode", "max")
    assert proc.returncode == 2
    assert "--params mystery: no default range for this parameter; give one as mystery:LOW-HIGH" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_validate_prints_the_plan(write_experiment):
    data = synthetic_experiment(budget=150, parameters={
        "x": {"distribution": "uniform", "min": 0, "max": 1},
        "lr": {"distribution": "log_uniform", "min": 1e-4, "max": 1e-2},
    }, phases=[{"name": "grid", "searcher": "grid", "share": 1.0, "grid_resolution": 5, "max_trial_time": "30m"}])
    proc = _cli("validate", str(write_experiment(data)))
    assert proc.returncode == 0, proc.stderr
    assert "phase 1 'grid': grid, 150 trials; per-trial time budget 30m; full grid of 25 points + 125 biased random samples" in proc.stdout


def test_choices_of_lists_and_huge_phases_are_refused_in_one_line():
    data = synthetic_experiment(parameters={"net_arch": {"distribution": "choice", "values": [[64, 64], [128, 128]]}})
    with pytest.raises(SpecError, match=r"^parameters\.net_arch\.values: choice values are strings, numbers, booleans or null"):
        experiment_from_dict(data)
    with pytest.raises(SpecError, match=r"^phases\[0\]\.trials: must be at most 100000 \(a phase's configs are planned up front\); got 100000000$"):
        experiment_from_dict(synthetic_experiment(budget=None, phases=[{"name": "p", "searcher": "random", "trials": 100_000_000}]))
    with pytest.raises(SpecError, match=r"^budget: must be at most 100000"):
        experiment_from_dict(synthetic_experiment(budget=10**11))
