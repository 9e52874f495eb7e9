"""How experiment files and --set values are read: UTF-8, one key per mapping, bounded aliases."""

import time

import pytest

from raysweep import yaml_input
from raysweep.errors import SpecError
from raysweep.spec import load_experiment

# The shape of ../shared/cases/yaml-duplicate-keys: a key twice under parameters, phases and metric twice.
DUPLICATES = """\
name: reldup
trainable: tests.trainables.synthetic:train
metric: score
mode: max
storage: {storage}
parameters:
  x: {{distribution: uniform, min: 0.0, max: 1.0}}
  x: {{distribution: log_uniform, min: 0.001, max: 1.0}}
phases:
  - {{name: explore, searcher: grid, trials: 2, grid_resolution: 2, max_trial_time: 20s}}
  - {{name: exploit, searcher: ax, trials: 2, max_trial_time: 20s}}
phases:
  - {{name: only, searcher: random, trials: 2}}
metric: loss
wandb: {{mode: disabled}}
"""

LAUGHS = """\
name: lol
a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]
h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]
i: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h]
"""


def test_duplicate_keys_name_the_field_and_both_lines(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text(DUPLICATES.format(storage=tmp_path / "run"))
    with pytest.raises(SpecError, match=r"^phases: duplicate key \(line 12; first at line 9\)$"):
        load_experiment(path)


@pytest.mark.parametrize(
    "text, message",
    [
        ("a: 1\nb:\n  x: 1\n  y: 2\n  x: 3\n", r"^b\.x: duplicate key \(line 5; first at line 3\)$"),
        ("p:\n  - {name: a, name: b}\n", r"^p\[0\]\.name: duplicate key \(line 2; first at line 2\)$"),
    ],
)
def test_duplicate_keys_at_any_depth(text, message):
    with pytest.raises(SpecError, match=message):
        yaml_input.load_text(text, "f.yaml")


def test_merge_keys_and_small_aliases_still_work():
    data = yaml_input.load_text("base: &b {min: 0, max: 1}\nx: {<<: *b, max: 2}\ny: *b\n", "f.yaml")
    assert data["x"] == {"min": 0, "max": 2} and data["y"] == {"min": 0, "max": 1}


def test_billion_laughs_is_refused_quickly():
    started = time.monotonic()
    with pytest.raises(SpecError, match=r"^f\[0\]\S*: YAML aliases \(\*name\) repeat more than 100000 values \(anchor at line \d+\); write the values out$"):
        yaml_input.load_text(LAUGHS, "lol.yaml")
    assert time.monotonic() - started < 30  # unbounded expansion would take minutes and gigabytes


def test_an_alias_that_contains_itself_is_refused():
    with pytest.raises(SpecError, match=r"^a\[1\]: a YAML alias contains itself \(line 1\)$"):
        yaml_input.load_text("a: &a [1, *a]\n", "f.yaml")


def test_non_utf8_bytes_name_the_file_byte_and_line(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_bytes(b"name: x\nmetric: sc\xe9re\n")
    with pytest.raises(SpecError, match=rf"^{path}: not UTF-8 text \(byte 0xe9 on line 2\)$"):
        load_experiment(path)


def test_invalid_yaml_is_one_line():
    with pytest.raises(SpecError) as info:
        yaml_input.load_text("a: [1, 2\nb: 3\n", "f.yaml")
    assert "\n" not in str(info.value) and str(info.value).startswith("f.yaml: not valid YAML (")


def test_uses_libyaml_when_pyyaml_has_it():
    import yaml

    if hasattr(yaml, "CSafeLoader"):
        assert issubclass(yaml_input._Loader, yaml.CSafeLoader)


def test_a_large_file_loads(tmp_path):
    values = "\n".join(f"      - value_{i}" for i in range(50_000))
    path = tmp_path / "big.yaml"
    path.write_text(
        "name: big\ntrainable: tests.trainables.synthetic:train\nmetric: score\nmode: max\n"
        f"storage: {tmp_path / 'run'}\nparameters:\n  act:\n    distribution: choice\n    values:\n{values}\n"
        "phases:\n  - {name: a, searcher: random, trials: 2}\n"
    )
    assert len(load_experiment(path).parameters["act"].values) == 50_000


def test_exponent_numbers_without_a_dot_are_numbers_as_in_yaml_1_2():
    data = yaml_input.load_text("a: 1e5\nb: 5e-3\nc: -2E+4\nd: 1.0e5\ne: '1e5'\nf: 1e5x\ng: 12", "x")
    assert data == {"a": 1e5, "b": 5e-3, "c": -2e4, "d": 1e5, "e": "1e5", "f": "1e5x", "g": 12}
    assert isinstance(data["g"], int)
