"""Command templates: what validate accepts fills the same way at run time."""

import pytest

from raysweep import placeholders
from raysweep.placeholders import PlaceholderError

SAMPLES = {"x": [0.0, 1.0], "n": [2, 64], "act": ["tanh", "relu"]}


def test_fill_plain_and_formatted_values():
    values = {"x": 0.123456789, "n": 8, "act": "relu", "seed": 7, "trial_id": "abc_00001"}
    assert placeholders.fill("--x={x}", values) == "--x=0.123456789"
    assert placeholders.fill("{x:.3f}", values) == "0.123"
    assert placeholders.fill("{n:04d}", values) == "0008"
    assert placeholders.fill("run-{trial_id}-s{seed}", values) == "run-abc_00001-s7"
    assert placeholders.fill("{{literal}} {act}", values) == "{literal} relu"
    assert placeholders.fill("{x}", {"x": 1e-07}) == "1e-07"


@pytest.mark.parametrize(
    "template, message",
    [
        ("{}", r"^placeholder \{\} must name a parameter, seed or trial_id$"),
        ("{0}", r"^placeholder \{0\} must name a parameter, seed or trial_id$"),
        ("{x.real}", r"^placeholder \{x\.real\}: attribute and index access are not supported"),
        ("{x[0]}", r"^placeholder \{x\[0\]\}: attribute and index access are not supported"),
        ("{x!r}", r"^placeholder \{x!r\}: conversions \(!r, !s, !a\) are not supported; use a format spec$"),
        ("{x:{n}}", r"^placeholder \{x:\{n\}\}: nested placeholders in a format spec are not supported$"),
        ("a{", r"^unbalanced braces \(Single '\{' encountered"),
        ("a}", r"^unbalanced braces \(Single '\}' encountered"),
        ("{y}", r"^placeholder \{y\} names no parameter \(parameters, seed and trial_id can be used\)$"),
        ("{act:.3f}", r"^placeholder \{act:\.3f\} cannot format act's value 'tanh' \(Unknown format code 'f'"),
        ("{x:d}", r"^placeholder \{x:d\} cannot format x's value 0\.0"),
        ("{trial_id:.2f}", r"^placeholder \{trial_id:\.2f\} cannot format trial_id's value"),
    ],
)
def test_check_refuses_what_would_not_fill(template, message):
    with pytest.raises(PlaceholderError, match=message):
        placeholders.check(template, SAMPLES)


@pytest.mark.parametrize("template", ["{x}", "{x:.3e}", "{n:05d}", "{n:.1f}", "{act:>6}", "{seed:03d}", "{trial_id}", "{{x}}"])
def test_check_accepts_what_fills(template):
    placeholders.check(template, SAMPLES)
