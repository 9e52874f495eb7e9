"""Wall and CPU seconds of one call, for the benchmark scripts (imports nothing heavy)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable


@dataclass(frozen=True)
class Timing:
    """One measured call: wall-clock seconds (``time.perf_counter``) and CPU
    seconds of this whole process, all its threads (``time.process_time``)."""

    wall: float
    cpu: float

    def __str__(self) -> str:
        return f"{self.wall:.2f} / {self.cpu:.2f}"


def timed(call: Callable[[], Any]) -> tuple[Any, Timing]:
    """``call()``'s result and how long it took."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = call()
    return result, Timing(time.perf_counter() - wall, time.process_time() - cpu)
