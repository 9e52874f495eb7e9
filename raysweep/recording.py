"""A Ray Tune callback that turns each finished trial into a TrialRecord and
stages it in the Parquet sink the moment the trial ends, so a killed driver
loses no finished trial.

A trial Tune retries (``max_failures``, e.g. after its node was lost) stays one
trial: one row, whose cost is the time each attempt held its resources. A retry
resumes after its last checkpoint's iteration, so the failed attempt's reports
past that point, whose work was lost with it, are superseded by the retry's
reports of the same iterations: each iteration keeps one progress row, the
latest, and the trial's best value is taken over the kept rows.

What a report holds is read by :mod:`raysweep.metrics` through the phase's
OutcomeBook: progress rows and ``metric.*`` columns use its flattened names and
numbers, the objective is the metric's last reported value (a report may lack
it), and the status is the book's.
"""

from __future__ import annotations

import math
import os
import time
from typing import Any

from ray.tune import Callback
from ray.tune.experiment import Trial

from raysweep import fidelity, metrics, outcomes
from raysweep.records import ProgressRecord, TrialRecord, TrialStatus
from raysweep.sinks.parquet import ParquetSink
from raysweep.space import SearchSpace
from raysweep.trainables import SEED_KEY


def last_values(progress: list[ProgressRecord]) -> dict[str, int | float]:
    """Each reported number's last value over a trial's reports (a metric may skip reports)."""
    values: dict[str, int | float] = {}
    for row in progress:
        values.update(row.metrics)
    return values


class TrialRecorder(Callback):
    """Records the trials of one phase."""

    def __init__(
        self,
        *,
        run_dir: str,
        space: SearchSpace,
        sweep: str,
        phase: int,
        phase_name: str,
        metric: str,
        mode: str,
        outcome_key: str,
        gpus_per_trial: float,
        extra: dict[str, Any] | None = None,
        fidelity_attr: str = fidelity.ITERATION,
    ) -> None:
        self.run_dir = run_dir
        self.space = space
        self.sweep = sweep
        self.phase = phase
        self.phase_name = phase_name
        self.metric = metric
        self.mode = mode
        self.outcome_key = outcome_key
        self.gpus_per_trial = gpus_per_trial
        self.extra = dict(extra or {})
        self.fidelity_attr = fidelity_attr
        self._started: dict[str, float] = {}  # trial id -> wall clock of its first start
        self._attempt_started: dict[str, float] = {}  # trial id -> wall clock its current attempt started
        self._earlier_attempts_s: dict[str, float] = {}  # trial id -> wall seconds of its failed, retried attempts
        self._progress: dict[str, list[ProgressRecord]] = {}
        self._recorded: set[str] = set()

    @property
    def sink(self) -> ParquetSink:
        return ParquetSink(self.run_dir, self.space)

    # -- Tune's experiment state ---------------------------------------------------
    def get_state(self) -> dict[str, Any]:
        """What a resumed driver needs of the trials still running: saved with Tune's experiment state.

        A trial that resumes from a checkpoint after the driver was killed does
        not report its earlier iterations again; their rows come back from here
        (Tune saves this together with the trial's checkpoint reference, so the
        rows reach at least the checkpoint's iteration).
        """
        return {
            "started": dict(self._started),
            "earlier_attempts_s": dict(self._earlier_attempts_s),
            "progress": {trial_id: list(rows) for trial_id, rows in self._progress.items()},
        }

    def set_state(self, state: dict[str, Any]) -> None:
        self._started.update(state.get("started", {}))
        self._earlier_attempts_s.update(state.get("earlier_attempts_s", {}))
        book = outcomes.lookup(self.outcome_key, self.metric)
        for trial_id, rows in state.get("progress", {}).items():
            self._progress.setdefault(trial_id, list(rows))
            # The resumed trial's objective may come from a report made before the restart.
            values = last_values(self._progress[trial_id])
            book.restore(trial_id, _finite_or_none(values.get(self.metric)), values)

    # -- Tune's hooks -------------------------------------------------------------
    def on_trial_start(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        now = time.time()
        self._started.setdefault(trial.trial_id, now)
        self._attempt_started[trial.trial_id] = now

    def on_trial_recover(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        """An attempt failed and Tune will retry the trial: the attempt's time counts towards its cost."""
        started = self._attempt_started.pop(trial.trial_id, None)
        if started is not None:
            spent = self._earlier_attempts_s.get(trial.trial_id, 0.0)
            self._earlier_attempts_s[trial.trial_id] = spent + time.time() - started

    def on_trial_result(self, iteration: int, trials: list[Trial], trial: Trial, result: dict, **info: Any) -> None:
        now = time.time()
        self._started.setdefault(trial.trial_id, now)
        self._attempt_started.setdefault(trial.trial_id, now)
        read = outcomes.lookup(self.outcome_key, self.metric).read(trial.trial_id, result)
        # Tune stores the result after the callbacks saw it (they may change it in place).
        metrics.defuse_huge_integers(result)
        report = ProgressRecord(trial_id=trial.trial_id, iteration=read.iteration, time_s=read.time_s, metrics=dict(read.values))
        rows = self._progress.setdefault(trial.trial_id, [])
        # Iterations only go back when an attempt resumed from a checkpoint: drop what it superseded.
        rows[:] = [row for row in rows if row.iteration < report.iteration]
        rows.append(report)

    def on_trial_complete(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        self._record(trial, errored=False)

    def on_trial_error(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        self._record(trial, errored=True, error=_error_text(trial))

    # -- building the record ----------------------------------------------------------
    def _record(self, trial: Trial, errored: bool, error: str | None = None) -> None:
        book = outcomes.lookup(self.outcome_key, self.metric)
        if trial.trial_id in self._recorded or trial.trial_id in book.staged:
            return
        last = dict(trial.last_result or {})
        final = book.read(trial.trial_id, last)  # read already, unless no scheduler saw it
        status, reason = book.status_of(trial.trial_id, errored, error)
        ended = time.time()
        started = self._started.get(trial.trial_id, ended)
        attempts_s = self._earlier_attempts_s.get(trial.trial_id, 0.0)
        attempts_s += ended - self._attempt_started.get(trial.trial_id, ended)
        cost = max(attempts_s, final.time_s)
        progress = self._progress.pop(trial.trial_id, [])
        objective = book.objective(trial.trial_id)
        config = dict(trial.config)
        record = TrialRecord(
            sweep=self.sweep,
            phase=self.phase,
            phase_name=self.phase_name,
            trial_id=trial.trial_id,
            status=status,
            params={name: config.get(name) for name in self.space.names},
            objective=objective if status.has_value else None,
            best_objective=self._best_reported(progress) if status.has_value else None,
            metrics=last_values(progress) or dict(final.values),
            cost_s=cost,
            gpu_s=cost * self.gpus_per_trial,
            iterations=final.iteration,
            started_at=started,
            ended_at=ended,
            error=reason if status in (TrialStatus.FAILED, TrialStatus.TIME_BUDGET) else None,
            seed=config.get(SEED_KEY),
            resampled_from=book.origin(trial.trial_id),
            fidelity=fidelity.reached(progress, self.fidelity_attr, _tune_values(final)),
            curve=fidelity.curve_of_progress(progress, self.fidelity_attr, self.metric) if status.has_value else (),
            extra=self._extra_of(book, trial.trial_id),
        )
        self.sink.stage(record, progress)
        self._recorded.add(trial.trial_id)
        book.recorded(record)

    def _extra_of(self, book: outcomes.OutcomeBook, trial_id: str) -> dict[str, Any]:
        """The phase's extra columns; ``narrow_box`` is the box this trial was generated
        in when the searcher noted one (the box moves during a phase), else the phase's."""
        box = book.box_of(trial_id)
        return self.extra if box is None else {**self.extra, "narrow_box": box}

    def _best_reported(self, progress: list[ProgressRecord]) -> float | None:
        """The best finite value of the metric among the trial's progress rows, in the sweep's mode."""
        values = [_finite_or_none(row.metrics.get(self.metric)) for row in progress]
        finite = [value for value in values if value is not None]
        if not finite:
            return None
        return max(finite) if self.mode == "max" else min(finite)


def _tune_values(final: metrics.Report) -> dict[str, Any]:
    """The numbers of a trial's final result, with Tune's iteration and time among them."""
    values = dict(final.values)
    values.setdefault(fidelity.ITERATION, final.iteration)
    values.setdefault(fidelity.SECONDS, final.time_s)
    return values


def _finite_or_none(value: int | float | None) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


def _error_text(trial: Trial) -> str:
    """The last line of the trial's traceback, which names the exception."""
    text = None
    try:
        if trial.error_file and os.path.exists(trial.error_file):
            with open(trial.error_file) as handle:
                text = handle.read()
        else:
            text = trial.get_error()
    except Exception:  # the error text is a courtesy; the status is what counts
        pass
    if not text:
        return "trial raised an error"
    lines = [line.strip() for line in str(text).strip().splitlines() if line.strip()]
    return lines[-1][:2000] if lines else "trial raised an error"
