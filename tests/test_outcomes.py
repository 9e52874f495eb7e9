"""The outcome book's tally of what trials reported, and failure reasons counted."""

from __future__ import annotations

from raysweep import outcomes
from raysweep.records import TrialStatus


def test_the_objective_is_the_last_reported_value_and_reading_twice_changes_nothing():
    book = outcomes.OutcomeBook("tally", "score")
    for result in ({"score": 1.0}, {"loss": 0.5}, {"score": "2.5"}, {"loss": 0.1}):
        book.read("t1", result)
        book.read("t1", result)  # the scheduler and a callback read the same result
    assert book.objective("t1") == 2.5
    assert book.status_of("t1", errored=False) == (TrialStatus.COMPLETED, None)
    book.mark("t1", TrialStatus.EARLY_STOPPED, "stopped by ASHA")
    assert book.status_of("t1", errored=False) == (TrialStatus.EARLY_STOPPED, "stopped by ASHA")
    assert book.status_of("t1", errored=True, error="boom") == (TrialStatus.FAILED, "boom")


def test_a_value_that_is_no_number_fails_the_trial_even_after_good_reports():
    book = outcomes.OutcomeBook("bad", "score")
    book.read("t1", {"score": 1.0})
    book.read("t1", {"score": [1.0, 2.0]})
    book.read("t1", {"score": float("nan")})
    assert book.status_of("t1", errored=False) == (
        TrialStatus.FAILED, "trial reported score=[1.0, 2.0], which is not a number (a list)"  # the first one
    )


def test_never_reported_says_what_was_reported_instead():
    book = outcomes.OutcomeBook("never", "score")
    assert book.status_of("t0", errored=False) == (TrialStatus.FAILED, "trial never reported the metric 'score' (it made no report)")
    book.read("t1", {"training_iteration": 1, "config": {"x": 1}, "done": True})  # only Tune's own keys
    assert book.status_of("t1", errored=False)[1] == "trial never reported the metric 'score' (it made no report)"
    book.read("t2", {"scor": 1.0, "env": {"steps": 3}})
    assert book.status_of("t2", errored=False)[1] == "trial never reported the metric 'score' (its reports held: scor, env/steps)"
    book.restore("t2", 4.0, ["score"])  # a resumed trial's earlier rows
    assert book.status_of("t2", errored=False) == (TrialStatus.COMPLETED, None) and book.objective("t2") == 4.0


def test_notices_are_taken_once():
    book = outcomes.OutcomeBook("notices", "score")
    book.notify("a")
    assert book.take_notices() == ["a"] and book.take_notices() == []


def test_failure_counts_group_texts_that_differ_only_in_numbers():
    errors = [
        "trial reported score=True, which is not a number (a boolean)",
        "RuntimeError: command exited with code 3: python t.py --x 0.95",
        "Traceback (most recent call last):\n  ...\nRuntimeError: command exited with code 3: python t.py --x 0.97",
        "RuntimeError: command exited with code 3: python t.py --x 1e-05",
        None,
        "trial never reported the metric 'score' (it made no report)",
    ]
    assert outcomes.failure_counts(errors, top=3) == [
        (3, "RuntimeError: command exited with code 3: python t.py --x 0.95"),
        (1, "trial reported score=True, which is not a number (a boolean)"),
        (1, "no error text"),
    ]
