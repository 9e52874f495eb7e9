"""The phase's trial scheduler: the hard per-trial time budget, NaN guard and ASHA.

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

from raysweep import outcomes
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
        value = result.get(self._metric)
        if value is not None and not _finite(value):
            self.book.mark(trial.trial_id, TrialStatus.FAILED, f"reported {self._metric}={value!r}")
            return TrialScheduler.STOP
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
        self.inner.on_trial_complete(tune_controller, trial, result)

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


def _finite(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return True  # a non-numeric metric is the trainable's business, not a NaN
