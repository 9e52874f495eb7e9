"""Why each trial ended.

Ray Tune tells a searcher or a callback only *that* a trial ended. raysweep's
stopper (time budget) and scheduler (ASHA) run in the driver process and
write the reason here first; the searcher and the result sinks then read one
consistent status. The book also keeps, per trial, what its reports said
(:mod:`raysweep.metrics`): the metric's last reported value, the first value
of it that was not a finite number, the names it reported. Every consumer of
a result passes it through :meth:`OutcomeBook.read` (reading a result twice
changes nothing), so the status and the objective come from one tally.
Books live in a process-wide registry under the phase's key, so a searcher
unpickled by ``Tuner.restore`` finds its book again by key.
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from raysweep import fidelity, metrics
from raysweep.records import Observation, TrialRecord, TrialStatus

_BOOKS: dict[str, "OutcomeBook"] = {}
_LOCK = threading.Lock()

#: How many of a trial's reported names a "never reported the metric" reason lists.
_NAMES_SHOWN = 8


@dataclass
class _Tally:
    """What one trial's reports said about the metric so far."""

    objective: float | None = None  # the metric's last finite value
    problem: str | None = None  # the first value of the metric that was not a finite number
    names: dict[str, None] = field(default_factory=dict)  # the trainable's keys, in first-seen order
    # (fidelity, metric) of each report holding the metric, at the last fidelity stated so far (its own or an
    # earlier report's), by training_iteration (a report read twice counts once)
    points: dict[int, fidelity.Point] = field(default_factory=dict)
    level: float | None = None  # the fidelity of the last report that stated one


class OutcomeBook:
    """Maps trial ids to the status raysweep decided for them and to what they reported."""

    def __init__(self, key: str, metric: str, fidelity_attr: str = fidelity.ITERATION) -> None:
        self.key = key
        self.metric = metric
        self.fidelity_attr = fidelity_attr
        self._marks: dict[str, tuple[TrialStatus, str | None]] = {}
        self._origins: dict[str, str] = {}
        self._boxes: dict[str, dict[str, Any]] = {}
        # Where a narrowed phase's trust region stands: {"box": Box.to_dict(), "growths": n,
        # "shrinks": m}, noted by the searcher after each trial; None when the box is fixed.
        self.region: dict[str, Any] | None = None
        self._tallies: dict[str, _Tally] = {}
        self._notices: list[str] = []
        self.records: list[TrialRecord] = []  # finished trials of this process, in order
        # Trials an interrupted attempt of the phase already finished and staged. A
        # phase restored from Tune's experiment state may hold them as unfinished
        # (they ended after Tune's last save); they are never run again.
        self.staged: dict[str, Observation] = {}

    def mark(self, trial_id: str, status: TrialStatus, reason: str | None = None) -> None:
        """Record a decision; the first one for a trial wins."""
        self._marks.setdefault(trial_id, (status, reason))

    def marked(self, trial_id: str) -> tuple[TrialStatus, str | None] | None:
        return self._marks.get(trial_id)

    def set_origin(self, trial_id: str, resampled_from: str) -> None:
        """Note that ``trial_id`` re-runs the config of trial ``resampled_from``."""
        self._origins[trial_id] = resampled_from

    def origin(self, trial_id: str) -> str | None:
        return self._origins.get(trial_id)

    def set_box(self, trial_id: str, box: dict[str, Any]) -> None:
        """Note the box (:meth:`raysweep.narrowing.Box.to_dict`) ``trial_id``'s config was generated in."""
        self._boxes[trial_id] = box

    def box_of(self, trial_id: str) -> dict[str, Any] | None:
        return self._boxes.get(trial_id)

    def recorded(self, record: TrialRecord) -> None:
        self.records.append(record)

    # -- what trials reported ------------------------------------------------------
    def read(self, trial_id: str, result: Mapping[str, Any] | None) -> metrics.Report:
        """Interpret one result of a trial and add it to the trial's tally.

        Idempotent: the scheduler, the searcher and the callbacks may each read
        the same result. Never raises for what a trainable reported.
        """
        report = metrics.read(result, self.metric)
        level = fidelity.level_of(self.fidelity_attr, report.iteration, report.time_s, report.values)
        with _LOCK:
            tally = self._tallies.setdefault(trial_id, _Tally())
            tally.names.update(dict.fromkeys(report.names))
            if level is not None:
                tally.level = level
            if report.problem is not None and tally.problem is None:
                tally.problem = report.problem
            if report.objective is not None:
                tally.objective = report.objective
                if tally.level is not None:  # this report's fidelity, or the last an earlier one stated
                    tally.points[report.iteration] = (tally.level, report.objective)
        return report

    def restore(self, trial_id: str, objective: float | None, names: Iterable[str]) -> None:
        """Seed a trial's tally from rows an earlier driver recorded (a resumed phase)."""
        with _LOCK:
            tally = self._tallies.setdefault(trial_id, _Tally())
            tally.names.update(dict.fromkeys(names))
            if objective is not None and tally.objective is None:
                tally.objective = objective

    def objective(self, trial_id: str) -> float | None:
        """The metric's last finite value the trial reported, or None."""
        tally = self._tallies.get(trial_id)
        return None if tally is None else tally.objective

    def reached(self, trial_id: str) -> float | None:
        """The fidelity the trial reached (the last one its reports stated), or None."""
        tally = self._tallies.get(trial_id)
        return None if tally is None else tally.level

    def curve(self, trial_id: str) -> tuple[fidelity.Point, ...]:
        """:func:`raysweep.fidelity.curve` of the trial's reports read so far."""
        tally = self._tallies.get(trial_id)
        if tally is None:
            return ()
        return fidelity.curve([tally.points[i] for i in sorted(tally.points)])

    def status_of(self, trial_id: str, errored: bool, error: str | None = None) -> tuple[TrialStatus, str | None]:
        """The status of a trial that just ended, and its error text if any.

        Read the trial's final result (:meth:`read`) first.
        """
        if errored:
            return TrialStatus.FAILED, error or "trial raised an error"
        tally = self._tallies.get(trial_id, _Tally())
        mark = self._marks.get(trial_id)
        if tally.problem is not None:
            return TrialStatus.FAILED, tally.problem
        if tally.objective is None:
            if mark is not None and mark[0] is TrialStatus.TIME_BUDGET:
                return mark  # cut off by the budget before it reported: the reason says so
            return TrialStatus.FAILED, self._never_reported(tally)
        if mark is not None:
            return mark
        return TrialStatus.COMPLETED, None

    def _never_reported(self, tally: _Tally) -> str:
        reason = f"trial never reported the metric {self.metric!r}"
        names = list(tally.names)
        if not names:
            return reason + " (it made no report)"
        listed = ", ".join(names[:_NAMES_SHOWN]) + (", ..." if len(names) > _NAMES_SHOWN else "")
        return reason + f" (its reports held: {listed})"

    # -- notices for the console ----------------------------------------------------
    def notify(self, text: str) -> None:
        """Queue a warning for the phase's live view to print."""
        with _LOCK:
            self._notices.append(text)

    def take_notices(self) -> list[str]:
        """The warnings queued since the last call."""
        with _LOCK:
            notices, self._notices = self._notices, []
        return notices


def failure_counts(errors: Iterable[str | None], top: int = 3) -> list[tuple[int, str]]:
    """The ``top`` most frequent reasons among failed trials' error texts, as (count, example).

    Texts that differ only in their numbers (a value, a trial's argv, a time)
    count as one reason; the example is the first such text, cut to one line.
    """
    counts: Counter[str] = Counter()
    examples: dict[str, str] = {}
    for error in errors:
        text = _one_line(error)
        key = _NUMBER.sub("#", text)
        counts[key] += 1
        examples.setdefault(key, text)
    return [(count, examples[key]) for key, count in counts.most_common(top)]


_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


def _one_line(error: str | None) -> str:
    lines = [line.strip() for line in str(error or "").strip().splitlines() if line.strip()]
    return lines[-1][:200] if lines else "no error text"


def register(book: OutcomeBook) -> OutcomeBook:
    with _LOCK:
        _BOOKS[book.key] = book
    return book


def lookup(key: str, metric: str) -> OutcomeBook:
    """The book registered under ``key``, or a fresh one registered now."""
    with _LOCK:
        book = _BOOKS.get(key)
        if book is None:
            book = _BOOKS[key] = OutcomeBook(key, metric)
        return book
