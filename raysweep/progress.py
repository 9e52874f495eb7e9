"""A compact progress line per finished trial, in place of Tune's tables."""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from ray.tune import Callback
from ray.tune.experiment import Trial

from raysweep import outcomes
from raysweep.durations import format_duration


class PhaseProgress(Callback):
    """Prints ``[phase] done/planned, running, best, cost`` as trials finish."""

    def __init__(self, *, phase_name: str, planned: int, metric: str, mode: str, outcome_key: str,
                 cost_limit_s: float | None, already_done: int = 0, stream: TextIO | None = None) -> None:
        self.phase_name = phase_name
        self.planned = planned
        self.metric = metric
        self.mode = mode
        self.outcome_key = outcome_key
        self.cost_limit_s = cost_limit_s
        self.already_done = already_done
        self._stream = stream
        self._started = time.time()

    def on_trial_complete(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        self._print(trials, trial)

    def on_trial_error(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        self._print(trials, trial)

    def _print(self, trials: list[Trial], finished: Trial) -> None:
        book = outcomes.lookup(self.outcome_key, self.metric)
        records = book.records
        done = self.already_done + len(records)
        running = sum(1 for t in trials if t.status == Trial.RUNNING and t is not finished)
        values = [r.objective for r in records if r.status.has_value and r.objective is not None]
        best = (max if self.mode == "max" else min)(values) if values else None
        cost = sum(r.cost_s for r in records)
        last = records[-1] if records else None
        text = f"[{self.phase_name}] {done}/{self.planned} done, {running} running"
        text += f", best {self.metric} {best:.4g}" if best is not None else ", no result yet"
        text += f", {format_duration(cost)} trial time"
        if last is not None:
            text += f" | {last.trial_id} {last.status.value}"
            if last.objective is not None:
                text += f" {last.objective:.4g}"
        print(text, file=self._stream or sys.stdout, flush=True)
