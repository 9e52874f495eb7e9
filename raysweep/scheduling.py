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

A trial's time is raysweep's own monotonic clock in the driver, from the
moment Tune runs the trial, never what the trainable reports (a trainable that
reports ``time_this_iter_s: 0`` is stopped on time all the same). A retried
trial (``max_failures``) resumes the count from the checkpoint it restarts
from (the time this clock had counted at that checkpoint's report), or from
zero without one, so the time budget covers the work the trial keeps, not the
work a lost attempt did after its last checkpoint.

Ending a trial for real. Tune "stops" a trial by no longer asking it for
results; with actor reuse it parks the actor and, when the next trial comes,
waits in ``reset_config`` for the old trial's thread to return. A trial that
hangs (a deadlock, a ``time.sleep`` before its first report) never returns, and
a ``command:`` trial keeps its process running until then. So the actor of a
trial that raysweep's limits stop while it is silent, or of any stopped
``command:`` trial, is never reused: raysweep turns reuse off for that one trial
right before Tune decides whether to park its actor (Tune calls the
scheduler's ``on_trial_complete`` just before), and kills a silent trial's
actor, whose pending ``train`` call would otherwise keep Tune's graceful stop
waiting. Trials that end normally, or are stopped at a report of a Python
trainable (whose thread is parked inside ``report`` and exits at once on
reset), keep actor reuse.
"""

from __future__ import annotations

import math
import time
from typing import Any

import ray
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
        external_process: bool = False,
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
        # A command trial runs in its own processes: stopping it must end them now,
        # so its actor is never parked for reuse with the command still running.
        self.external_process = external_process
        self._time_attr_missed = False  # said once per phase, at the first report without it
        # trial id -> (monotonic clock when its current attempt started running, seconds counted before it)
        self._running_since: dict[str, tuple[float, float]] = {}
        # trial id -> {training_iteration: seconds counted at that report}, to resume a retry's count
        self._counted_at: dict[str, dict[int, float]] = {}
        # trials whose actor must not be reused (stopped silent, or a stopped command)
        self._discard: set[str] = set()
        self._reuse_actors: bool | None = None  # Tune's setting, read on first contact

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
        self._set_reuse_for(tune_controller, trial)
        self.inner.on_trial_error(tune_controller, trial)

    def on_trial_result(self, tune_controller, trial: Trial, result: dict) -> str:
        report = self.book.read(trial.trial_id, result)
        if report.problem is not None:  # the book fails the trial with this reason
            return self._stop(trial)
        result = self._as_numbers(result, report)
        if self.early_stopping is not None and not self._time_attr_missed:
            notice = missing_time_attr(self.early_stopping.time_attr, trial.trial_id, result, report)
            if notice is not None:
                self._time_attr_missed = True
                self.book.notify(notice)
        clock = self._counted(trial)
        iteration = result.get("training_iteration")
        if iteration is not None:
            self._counted_at.setdefault(trial.trial_id, {})[int(iteration)] = clock
        # The budget limits the trial's cost as its row counts it: raysweep's clock, or the time the trial
        # reports when that is more (a simulated run reporting simulated seconds); never less than the clock.
        elapsed = max(clock, _reported_seconds(result))
        if self.max_trial_time is not None and elapsed >= self.max_trial_time:
            self.book.mark(trial.trial_id, TrialStatus.TIME_BUDGET, _over_budget(elapsed, self.max_trial_time))
            return self._stop(trial)
        decision = self.inner.on_trial_result(tune_controller, trial, result)
        if decision == TrialScheduler.STOP:
            if self.early_stopping is not None:
                reached_max_t = result.get(self.early_stopping.time_attr, 0) >= self.early_stopping.max_t
                if not reached_max_t:
                    self.book.mark(trial.trial_id, TrialStatus.EARLY_STOPPED, "stopped by ASHA")
            return self._stop(trial)
        return decision

    def on_trial_complete(self, tune_controller, trial: Trial, result: dict) -> None:
        self._forget(trial)
        report = self.book.read(trial.trial_id, result)
        # Tune decides right after this call whether to park the trial's actor for reuse.
        self._set_reuse_for(tune_controller, trial)
        self.inner.on_trial_complete(tune_controller, trial, self._as_numbers(result, report))

    def on_trial_remove(self, tune_controller, trial: Trial) -> None:
        self._forget(trial)
        self._set_reuse_for(tune_controller, trial)
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

    # -- raysweep's clock ---------------------------------------------------------------
    def _counted(self, trial: Trial, now: float | None = None) -> float:
        """Seconds the trial has run by raysweep's clock (starting the count if it is new)."""
        now = time.monotonic() if now is None else now
        since = self._running_since.get(trial.trial_id)
        if since is None:
            since = self._running_since[trial.trial_id] = (now, self._time_at_start(trial))
        started, already = since
        return already + (now - started)

    def _time_at_start(self, trial: Trial) -> float:
        """Seconds a trial that starts running counts on from: those of its checkpoint, else zero.

        The count this clock had at the checkpoint's report when this driver saw
        it; Tune's ``time_total_s`` of the checkpoint for a trial restored from an
        earlier driver's experiment state.
        """
        checkpointed = trial.latest_checkpoint_result
        if checkpointed is None:
            return 0.0
        iteration = checkpointed.metrics.get("training_iteration")
        counted = self._counted_at.get(trial.trial_id, {})
        if iteration is not None and int(iteration) in counted:
            return counted[int(iteration)]
        return float(checkpointed.metrics.get("time_total_s") or 0.0)

    def _forget(self, trial: Trial) -> None:
        self._running_since.pop(trial.trial_id, None)
        self._counted_at.pop(trial.trial_id, None)

    def _stop(self, trial: Trial) -> str:
        """STOP, for a trial Tune will stop at a report; a command's actor must not be parked."""
        if self.external_process:
            self._discard.add(trial.trial_id)
        return TrialScheduler.STOP

    def _set_reuse_for(self, tune_controller, trial: Trial) -> None:
        """Let Tune park this trial's actor for reuse only if raysweep did not discard it.

        Tune has no per-trial switch; its controller's ``_reuse_actors`` is read
        only when a stopping trial's actor would be parked, which happens right
        after the scheduler hook that calls this, for that trial alone.
        """
        controller = getattr(tune_controller, "_tune_controller", tune_controller)  # Tune hands schedulers a wrapper
        if not hasattr(controller, "_reuse_actors"):
            return
        if self._reuse_actors is None:
            self._reuse_actors = bool(controller._reuse_actors)
        controller._reuse_actors = self._reuse_actors and trial.trial_id not in self._discard

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
            elapsed = self._counted(trial, now)
            # A small grace lets a trial that is about to report be stopped by its
            # own report (which carries its last metrics) rather than cut off here.
            if elapsed >= self.max_trial_time + _SILENT_GRACE_S:  # type: ignore[operator]
                reported = trial.trial_id in self._counted_at
                self.book.mark(
                    trial.trial_id, TrialStatus.TIME_BUDGET, _over_budget(elapsed, self.max_trial_time, reported)
                )
                self._end_silent(tune_controller, trial)

    def _end_silent(self, tune_controller, trial: Trial) -> None:
        """Stop a trial that is not reporting, and kill its actor.

        Its actor is busy in a ``train`` call that waits for a report that may
        never come, so Tune's graceful stop (a ``stop`` call queued behind it)
        would hold the trial's resources until Tune's own cleanup timeout. A
        ``command:`` trial's processes end with the actor (see
        :func:`raysweep.trainables.run_command`).
        """
        actor = getattr(getattr(trial, "temporary_state", None), "ray_actor", None)
        self._discard.add(trial.trial_id)
        tune_controller.stop_trial(trial)
        if actor is not None:
            try:
                ray.kill(actor, no_restart=True)
            except Exception:  # already gone: nothing left to end
                pass


_SILENT_GRACE_S = 1.0


def _reported_seconds(result: dict) -> float:
    """Tune's ``time_total_s`` of a result (the trainable's own ``time_this_iter_s`` summed), or 0."""
    value = metrics.number_or_none(result.get("time_total_s"))
    return float(value) if value is not None and math.isfinite(value) else 0.0


def _over_budget(elapsed: float, budget: float | None, reported: bool = True) -> str:
    text = f"stopped at {elapsed:.1f}s by the phase's max_trial_time of {budget:g}s"
    return text if reported else text + " before its first report"


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
