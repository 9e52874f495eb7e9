"""The phase's trial scheduler: the hard per-trial time budget, NaN guard and ASHA.

The NaN guard stops a trial at its first report whose metric is not a finite
number (:mod:`raysweep.metrics`); ASHA sees the metric and its time attribute
as numbers, and reports without them pass it by.

Ray Tune consults a scheduler on every reported result *and*, through
``choose_trial_to_run``, on every step of its control loop (at least every
0.1 s). raysweep's scheduler uses both: a trial over its time budget is
stopped as soon as it reports, and also while it is silent, so a trial that
hangs without reporting still ends on time. Early-stopping decisions are
delegated to Ray's own ``AsyncHyperBandScheduler``; every decision is written
to the phase's :class:`~raysweep.outcomes.OutcomeBook` before the trial ends.

A trial's time is Tune's ``time_total_s``: a retried trial (``max_failures``)
resumes the count from the checkpoint it restarts from, or from zero without
one, so the time budget covers the work the trial keeps, not the work a lost
attempt did after its last checkpoint.
"""

from __future__ import annotations

import math
import time
from typing import Any

from ray.tune.experiment import Trial
from ray.tune.schedulers import AsyncHyperBandScheduler, FIFOScheduler, TrialScheduler

from raysweep import metrics, outcomes
from raysweep.records import TrialStatus
from raysweep.spec import EarlyStoppingSpec


class PhaseScheduler(TrialScheduler):
    """Wraps FIFO or ASHA scheduling with raysweep's hard limits."""

    def __init__(
        self,
        *,
        outcome_key: str,
        metric: str,
        mode: str,
        max_trial_time: float | None,
        early_stopping: EarlyStoppingSpec | None = None,
    ) -> None:
        super().__init__()
        self.outcome_key = outcome_key
        self._metric = metric
        self._mode = mode
        self.max_trial_time = max_trial_time
        self.early_stopping = early_stopping
        if early_stopping is None:
            self.inner: TrialScheduler = FIFOScheduler()
        else:
            self.inner = AsyncHyperBandScheduler(
                time_attr=early_stopping.time_attr,
                grace_period=early_stopping.grace_period,
                reduction_factor=early_stopping.reduction_factor,
                max_t=early_stopping.max_t,
            )
        self.inner.set_search_properties(metric, mode)
        self._time_attr_missed = False  # said once per phase, at the first report without it
        # trial id -> (monotonic clock of its last report, or of when we saw it start running; its time_total_s then)
        self._running_since: dict[str, tuple[float, float]] = {}

    @property
    def book(self) -> outcomes.OutcomeBook:
        return outcomes.lookup(self.outcome_key, self._metric)

    # -- Tune's interface ---------------------------------------------------------
    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        return True  # metric and mode were fixed at construction

    def on_trial_add(self, tune_controller, trial: Trial) -> None:
        self.inner.on_trial_add(tune_controller, trial)

    def on_trial_error(self, tune_controller, trial: Trial) -> None:
        self._running_since.pop(trial.trial_id, None)
        self.inner.on_trial_error(tune_controller, trial)

    def on_trial_result(self, tune_controller, trial: Trial, result: dict) -> str:
        report = self.book.read(trial.trial_id, result)
        if report.problem is not None:  # the book fails the trial with this reason
            return TrialScheduler.STOP
        result = self._as_numbers(result, report)
        if self.early_stopping is not None and not self._time_attr_missed:
            notice = missing_time_attr(self.early_stopping.time_attr, trial.trial_id, result, report)
            if notice is not None:
                self._time_attr_missed = True
                self.book.notify(notice)
        elapsed = result.get("time_total_s")
        if elapsed is not None:
            self._running_since[trial.trial_id] = (time.monotonic(), float(elapsed))
        if self.max_trial_time is not None and elapsed is not None and elapsed >= self.max_trial_time:
            self.book.mark(trial.trial_id, TrialStatus.TIME_BUDGET, _over_budget(elapsed, self.max_trial_time))
            return TrialScheduler.STOP
        decision = self.inner.on_trial_result(tune_controller, trial, result)
        if decision == TrialScheduler.STOP and self.early_stopping is not None:
            reached_max_t = result.get(self.early_stopping.time_attr, 0) >= self.early_stopping.max_t
            if not reached_max_t:
                self.book.mark(trial.trial_id, TrialStatus.EARLY_STOPPED, "stopped by ASHA")
        return decision

    def on_trial_complete(self, tune_controller, trial: Trial, result: dict) -> None:
        self._running_since.pop(trial.trial_id, None)
        report = self.book.read(trial.trial_id, result)
        self.inner.on_trial_complete(tune_controller, trial, self._as_numbers(result, report))

    def on_trial_remove(self, tune_controller, trial: Trial) -> None:
        self._running_since.pop(trial.trial_id, None)
        self.inner.on_trial_remove(tune_controller, trial)

    def choose_trial_to_run(self, tune_controller) -> Trial | None:
        staged = self.book.staged
        if staged:
            # A restored phase lists trials that finished after Tune's last save as
            # unfinished; their results are already staged, so they never run again.
            for trial in list(tune_controller.get_live_trials()):
                if trial.status == Trial.PENDING and trial.trial_id in staged:
                    tune_controller.stop_trial(trial)
        if self.max_trial_time is not None:
            self._stop_overdue(tune_controller)
        return self.inner.choose_trial_to_run(tune_controller)

    def debug_string(self) -> str:
        return self.inner.debug_string()

    def save(self, checkpoint_path: str) -> None:
        self.inner.save(checkpoint_path)

    def restore(self, checkpoint_path: str) -> None:
        self.inner.restore(checkpoint_path)

    def _as_numbers(self, result: dict, report: metrics.Report) -> dict:
        """``result`` with the metric and ASHA's time attribute as numbers, or without them.

        ASHA compares and negates these values; a report without them (an
        evaluation every N iterations) is one ASHA skips.
        """
        clean = dict(result)
        clean.pop(self._metric, None)
        if report.objective is not None:
            clean[self._metric] = report.objective
        if self.early_stopping is not None:
            time_attr = self.early_stopping.time_attr
            value = metrics.number_or_none(clean.pop(time_attr, None))
            if value is not None and math.isfinite(value):
                clean[time_attr] = value
        return clean

    # -- the silent-trial deadline ---------------------------------------------------
    def _stop_overdue(self, tune_controller) -> None:
        now = time.monotonic()
        for trial in list(tune_controller.get_live_trials()):
            if trial.status != Trial.RUNNING:
                self._running_since.pop(trial.trial_id, None)
                continue
            since = self._running_since.get(trial.trial_id)
            if since is None:
                self._running_since[trial.trial_id] = (now, _time_at_start(trial))
                continue
            started, already = since
            elapsed = already + (now - started)
            # A small grace lets a trial that is about to report be stopped by its
            # own report (which carries its last metrics) rather than cut off here.
            if elapsed >= self.max_trial_time + _SILENT_GRACE_S:  # type: ignore[operator]
                self.book.mark(trial.trial_id, TrialStatus.TIME_BUDGET, _over_budget(elapsed, self.max_trial_time))
                self._running_since.pop(trial.trial_id, None)
                tune_controller.stop_trial(trial)


_SILENT_GRACE_S = 1.0


def _time_at_start(trial: Trial) -> float:
    """The ``time_total_s`` a trial that starts running counts on from: its checkpoint's, else zero."""
    checkpointed = trial.latest_checkpoint_result
    if checkpointed is None:
        return 0.0
    return float(checkpointed.metrics.get("time_total_s") or 0.0)


def _over_budget(elapsed: float, budget: float | None) -> str:
    return f"stopped at {elapsed:.1f}s by the phase's max_trial_time of {budget:g}s"


def missing_time_attr(time_attr: str, trial_id: str, result: dict, report: metrics.Report) -> str | None:
    """The warning for a phase whose first report lacks ASHA's ``time_attr``, or None when it has it.

    Without it ASHA never reaches a rung and stops nothing: the user should
    hear so at once, not find out from a phase of full-length trials.
    """
    if time_attr in result:
        return None
    reported = ", ".join(report.names) or "nothing of its own"
    return (
        f"early_stopping.time_attr {time_attr!r} has no number in the report of trial {trial_id}, which held: "
        f"{reported} (and Tune's training_iteration, time_total_s); ASHA stops no trial on reports without it"
    )
