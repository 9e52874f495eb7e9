"""How far a trial got: the fidelity of every observation.

A run cut short (by the time budget, by ASHA, by a node that died) is not a
full run: its last value is a measurement at a lower fidelity. The experiment's
``fidelity`` says what measures progress (``FidelitySpec``: a reported value,
``training_iteration`` by default); this module reads, from a trial's progress
rows, the fidelity it reached. The recorder stores it in the trial's row
(column ``fidelity``), so every later phase sees each observation with the
fidelity it reached, as the raw values of its parameters.

Pure logic: no Ray.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

from raysweep.records import ProgressRecord

__all__ = ["ITERATION", "SECONDS", "reached"]

#: Tune's own result keys a fidelity may name; the progress rows keep them as columns of their own.
ITERATION = "training_iteration"
SECONDS = "time_total_s"


def reached(
    progress: Sequence[ProgressRecord], attr: str, final_values: Mapping[str, float] | None = None
) -> float | None:
    """The last value of ``attr`` over a trial's progress rows (reports in order), or None.

    ``training_iteration`` and ``time_total_s`` are read from the rows' own
    iteration and time; any other name from the numbers the trial reported
    (a value may be missing from some reports: the last one that holds it
    counts). ``final_values`` (the numbers of the trial's final result) stand
    in when there are no progress rows. Non-finite values are skipped.
    """
    value: float | None = None
    for row in progress:
        candidate = _value_of(row, attr)
        if candidate is not None:
            value = candidate
    if value is None and final_values is not None:
        value = _finite(final_values.get(attr))
    return value


def _value_of(row: ProgressRecord, attr: str) -> float | None:
    if attr == ITERATION:
        return float(row.iteration)
    if attr == SECONDS:
        return _finite(row.time_s)
    return _finite(row.metrics.get(attr))


def _finite(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    number = float(value)
    return number if math.isfinite(number) else None
