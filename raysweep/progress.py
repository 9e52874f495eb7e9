"""The live view of a running phase, in place of Tune's repeated status tables.

One status line per phase: trials done / running / planned, the best value so
far, and the cost used against the phase's limit (``planned x max_trial_time``,
in GPU-hours when trials hold GPUs). On a terminal the line is redrawn in place
about once a second, and only notable events (a failure, a new best) leave a
line of their own; in a log file (not a terminal) every finished trial prints
one line, so the log tells the whole story without control characters.

Trials that wait for a slot while others of the phase run are counted as
queued. When none of the phase's trials runs and the cluster has no room for
one (other jobs hold the resources, an autoscaler has yet to add a node), the
line says what they wait for (:mod:`raysweep.waiting`), and a log file gets one
line when that wait starts and one when it ends. Tune's own warning about it
stays muted with the rest of its logging (see ``raysweep.sweep.connect``).
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from ray.tune import Callback
from ray.tune.experiment import Trial
from ray.tune.progress_reporter import TrialProgressCallback

from raysweep import outcomes, waiting
from raysweep.durations import format_duration
from raysweep.records import TrialStatus

REDRAW_EVERY_S = 1.0
# A phase's first trials hold their resources for a few seconds (Ray starting
# their actors) before Tune calls them RUNNING; a shorter stall is no wait.
WAIT_GRACE_S = 15.0
# Ray's resources are read from its GCS at most this often, and only during a stall.
RESOURCE_POLL_S = 5.0


class PhaseProgress(Callback):
    """Prints ``[phase] done/planned, running, queued, best, cost`` while a phase runs.

    ``wait_grace_s`` is how long trials must be pending with none running
    before Ray's resources are read and a wait is reported (seconds).
    """

    def __init__(
        self,
        *,
        phase_name: str,
        planned: int,
        metric: str,
        mode: str,
        outcome_key: str,
        cost_limit_s: float | None,
        gpus_per_trial: float = 0.0,
        already_done: int = 0,
        stream: TextIO | None = None,
        live: bool | None = None,
        wait_grace_s: float = WAIT_GRACE_S,
    ) -> None:
        self.phase_name = phase_name
        self.planned = planned
        self.metric = metric
        self.mode = mode
        self.outcome_key = outcome_key
        self.max_trial_time = cost_limit_s
        self.gpus = gpus_per_trial
        self.already_done = already_done
        self._stream = stream
        self._live = live
        self._started = time.monotonic()
        self._last_draw = 0.0
        self._line_open = False
        self._best: float | None = None
        self._running: dict[str, float] = {}  # trial id -> monotonic start
        self.wait_grace_s = wait_grace_s
        self._reset_wait()

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles callbacks into its experiment state; a console stream is not state.
        state = dict(self.__dict__)
        state["_stream"] = None
        return state

    # -- Tune's hooks -----------------------------------------------------------
    def setup(self, **info: Any) -> None:
        # A phase restored from Tune's experiment state brings back this callback
        # as pickled by the interrupted attempt: restart its clock and running set.
        self._started = time.monotonic()
        self._running = {}
        # A callback pickled by a raysweep older than the resource watch lacks its setting.
        self.wait_grace_s = getattr(self, "wait_grace_s", WAIT_GRACE_S)
        self._reset_wait()

    def on_trial_start(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        self._running[trial.trial_id] = time.monotonic()

    def on_trial_recover(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        # A trial Tune will retry waits for resources: not running until its next start.
        self._running.pop(trial.trial_id, None)

    def on_trial_complete(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        self._finished(trial)

    def on_trial_error(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        self._finished(trial)

    def on_step_end(self, iteration: int, trials: list[Trial], **info: Any) -> None:
        self._print_notices()
        self._watch_resources(trials)
        if self.live and time.monotonic() - self._last_draw >= REDRAW_EVERY_S:
            self._draw()

    def on_experiment_end(self, trials: list[Trial], **info: Any) -> None:
        self._print_notices()
        self._queued = 0
        self._wait_text = None  # the phase ends (or stops): no wait left to report
        if self.live:  # the last state of the line stays on screen
            self._draw()
            self.stream.write("\n")
            self.stream.flush()
            self._line_open = False

    # -- what is shown -------------------------------------------------------------
    @property
    def live(self) -> bool:
        if self._live is None:
            isatty = getattr(self.stream, "isatty", None)
            self._live = bool(isatty and isatty())
        return self._live

    @property
    def stream(self) -> TextIO:
        return self._stream or sys.stdout

    def status_line(self) -> str:
        records = self._records()
        staged = len(outcomes.lookup(self.outcome_key, self.metric).staged)
        done = max(self.already_done, staged) + len(records)
        running = len(self._running)
        best = self._best_value(records)
        per_trial_gpus = self.gpus if self.gpus > 0 else 1.0
        used = sum(r.gpu_s if self.gpus > 0 else r.cost_s for r in records)
        now = time.monotonic()
        used += sum(now - t for t in self._running.values()) * per_trial_gpus
        limit = None if self.max_trial_time is None else self.planned * self.max_trial_time * per_trial_gpus
        text = f"[{self.phase_name}] {done}/{self.planned} done, {running} running"
        text += f", {self._queued} queued" if self._queued else ""
        text += f" | best {self.metric} {best:.4g}" if best is not None else " | no result yet"
        text += f" | cost {self._cost(used)}" + ("" if limit is None else f" of {self._cost(limit)}")
        text += f" | {_clock(now - self._started)}"
        text += f" | {self._wait_text}" if self._wait_text else ""
        return text

    # -- internals -------------------------------------------------------------------
    def _records(self) -> list:
        return list(outcomes.lookup(self.outcome_key, self.metric).records)

    def _cost(self, seconds: float) -> str:
        """GPU-hours when trials hold GPUs, else trial time."""
        if self.gpus > 0:
            return f"{seconds / 3600.0:.3g} GPU-h"
        return format_duration(seconds)

    def _best_value(self, records: list) -> float | None:
        values = [r.objective for r in records if r.status.has_value and r.objective is not None]
        if not values:
            return None
        return (max if self.mode == "max" else min)(values)

    def _finished(self, trial: Trial) -> None:
        self._running.pop(trial.trial_id, None)
        if trial.trial_id in outcomes.lookup(self.outcome_key, self.metric).staged:
            return  # finished by an earlier attempt, counted in already_done
        records = self._records()
        record = next((r for r in reversed(records) if r.trial_id == trial.trial_id), None)
        best = self._best_value(records)
        new_best = best is not None and best != self._best
        self._best = best
        if record is None:
            event = f"{trial.trial_id} ended"
        else:
            event = f"{record.trial_id} {record.status.value}"
            if record.objective is not None:
                event += f" {self.metric}={record.objective:.4g}"
            if record.status is TrialStatus.FAILED and record.error:
                event += f": {record.error.strip().splitlines()[-1][:120]}"
        if not self.live:
            self._write_line(f"{self.status_line()} | {event}")
            return
        if new_best or (record is not None and record.status is TrialStatus.FAILED):
            self._end_line()
            self._write_line(f"[{self.phase_name}] {event}" + (" (new best)" if new_best else ""))
        self._draw()

    def _reset_wait(self) -> None:
        self._queued = 0  # PENDING trials at the last loop step
        self._stalled_since: float | None = None  # trials pending and none running since (monotonic)
        self._last_poll = float("-inf")
        self._wait_text: str | None = None  # what the trials wait for, while they do
        self._wait_started = 0.0

    def _watch_resources(self, trials: list[Trial]) -> None:
        """Tell queueing from waiting for resources (see the module docstring); Ray is asked only during a stall."""
        pending = [trial for trial in trials if trial.status == Trial.PENDING]
        self._queued = len(pending)
        now = time.monotonic()
        if not pending or any(trial.status == Trial.RUNNING for trial in trials):
            self._stalled_since = None
            self._end_wait(now)
            return
        if self._stalled_since is None:
            self._stalled_since = now
        if now - self._stalled_since < self.wait_grace_s or now - self._last_poll < RESOURCE_POLL_S:
            return
        self._last_poll = now
        need = pending[0].placement_group_factory.required_resources
        try:
            cluster = waiting.read_cluster_resources()
        except Exception:  # the GCS did not answer this time: the next poll asks again
            return
        text = waiting.describe_wait(len(pending), need, cluster)
        if text is None:
            self._end_wait(now)
            return
        if self._wait_text is None:
            self._wait_started = self._stalled_since  # the trials have waited since the stall began
            if not self.live:
                self._write_line(f"[{self.phase_name}] {text}")
        self._wait_text = text

    def _end_wait(self, now: float) -> None:
        if self._wait_text is None:
            return
        self._wait_text = None
        if not self.live:
            self._write_line(f"[{self.phase_name}] resources free after waiting {_clock(now - self._wait_started)}")

    def _print_notices(self) -> None:
        """Warnings the scheduler left in the phase's book (e.g. a time_attr never reported), one line each."""
        for notice in outcomes.lookup(self.outcome_key, self.metric).take_notices():
            self._end_line()
            self._write_line(f"[{self.phase_name}] warning: {notice}")

    def _draw(self) -> None:
        self._last_draw = time.monotonic()
        self.stream.write("\r\x1b[2K" + self.status_line())
        self.stream.flush()
        self._line_open = True

    def _end_line(self) -> None:
        if self._line_open:
            self.stream.write("\r\x1b[2K")
            self.stream.flush()
            self._line_open = False

    def _write_line(self, text: str) -> None:
        print(text, file=self.stream, flush=True)


class TuneTrialPrinterOff(TrialProgressCallback):
    """Stands in for Tune's per-trial printer while :class:`PhaseProgress` has the console.

    Tune's legacy output engine (the one raysweep runs at verbosity 0, see
    ``raysweep.sweep._tune_output``) adds a ``TrialProgressCallback`` unless the
    callbacks hold one. Its printing is gated by verbosity except for one line,
    ``Trial <name> completed. Last result: ...``, which it prints for a trial
    that ends without a result it has not shown yet (one that never reported).
    Given this one, which prints nothing, Tune adds none. With ``--verbose``
    Tune's newer engine prints instead and drops this callback.
    """

    def on_trial_result(self, iteration: int, trials: list[Trial], trial: Trial, result: dict, **info: Any) -> None:
        pass

    def on_trial_error(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        pass

    def on_trial_complete(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        pass


def _clock(seconds: float) -> str:
    """Elapsed wall time as ``m:ss`` or ``h:mm:ss``."""
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
