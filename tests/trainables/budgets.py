"""Trainables that test the time budget: a hang before the first report, a lying clock."""

from __future__ import annotations

import os
import time

from ray import tune


def hang_before_report(config: dict) -> None:
    """A deadlock before the first report: never reports, never returns; notes when it started."""
    with open(os.path.join(config["record_dir"], f"start-{time.time():.3f}-{os.getpid()}"), "w"):
        pass
    time.sleep(3600)
    tune.report({"score": 1.0})


def zero_time(config: dict) -> None:
    """Reports every 0.2 s for a long time, claiming each report took no time at all."""
    for i in range(1, 1000):
        time.sleep(0.2)
        tune.report({"score": float(i), "time_this_iter_s": 0.0})
