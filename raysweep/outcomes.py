"""Why each trial ended.

Ray Tune tells a searcher or a callback only *that* a trial ended. raysweep's
stopper (time budget, NaN) and scheduler (ASHA) run in the driver process and
write the reason here first; the searcher and the result sinks then read one
consistent status. Books live in a process-wide registry under the phase's key,
so a searcher unpickled by ``Tuner.restore`` finds its book again by key.
"""

from __future__ import annotations

import math
import threading
from typing import Any

from raysweep.records import Observation, TrialRecord, TrialStatus

_BOOKS: dict[str, "OutcomeBook"] = {}
_LOCK = threading.Lock()


class OutcomeBook:
    """Maps trial ids to the status raysweep decided for them."""

    def __init__(self, key: str, metric: str) -> None:
        self.key = key
        self.metric = metric
        self._marks: dict[str, tuple[TrialStatus, str | None]] = {}
        self._origins: dict[str, str] = {}
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

    def recorded(self, record: TrialRecord) -> None:
        self.records.append(record)

    def status_of(
        self, trial_id: str, last_result: dict[str, Any] | None, errored: bool, error: str | None = None
    ) -> tuple[TrialStatus, str | None]:
        """The status of a trial that just ended, and its error text if any."""
        if errored:
            return TrialStatus.FAILED, error or "trial raised an error"
        value = (last_result or {}).get(self.metric)
        mark = self._marks.get(trial_id)
        if value is None:
            if mark is not None and mark[0] is TrialStatus.TIME_BUDGET:
                return mark  # cut off by the budget before it reported: the reason says so
            return TrialStatus.FAILED, f"trial never reported the metric {self.metric!r}"
        if not _finite(value):
            return TrialStatus.FAILED, f"trial reported {self.metric}={value!r}, which is not a finite number"
        if mark is not None:
            return mark
        return TrialStatus.COMPLETED, None


def _finite(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


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
