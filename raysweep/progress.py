"""The live view of a running phase, in place of Tune's repeated status tables.

One status line per phase: trials done / running / planned, the best value so
far, and the cost used against the phase's limit (``planned x max_trial_time``,
in GPU-hours when trials hold GPUs). On a terminal the line is redrawn in place
about once a second, and only notable events (a failure, a new best) leave a
line of their own; in a log file (not a terminal) every finished trial prints
one line, so the log tells the whole story without control characters.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from ray.tune import Callback
from ray.tune.experiment import Trial

from raysweep import outcomes
from raysweep.durations import format_duration
from raysweep.records import TrialStatus

REDRAW_EVERY_S = 1.0


class PhaseProgress(Callback):
    """Prints ``[phase] done/planned, running, best, cost`` while a phase runs."""

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

    def on_trial_start(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        self._running[trial.trial_id] = time.monotonic()

    def on_trial_recover(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        # A trial Tune will retry waits for resources: not running until its next start.
        self._running.pop(trial.trial_id, None)

    def on_trial_complete(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        self._finished(trial)

    def on_trial_error(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        self._finished(trial)

    def on_step(self, iteration: int, trials: list[Trial], **info: Any) -> None:
        self._print_notices()
        if self.live and time.monotonic() - self._last_draw >= REDRAW_EVERY_S:
            self._draw()

    def on_experiment_end(self, trials: list[Trial], **info: Any) -> None:
        self._print_notices()
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
        text += f" | best {self.metric} {best:.4g}" if best is not None else " | no result yet"
        text += f" | cost {self._cost(used)}" + ("" if limit is None else f" of {self._cost(limit)}")
        text += f" | {_clock(now - self._started)}"
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


def _clock(seconds: float) -> str:
    """Elapsed wall time as ``m:ss`` or ``h:mm:ss``."""
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
