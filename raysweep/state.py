"""``state.json`` and the run directory's lock.

The state says which phases are done, with what settings, how many trials and
which best; the Parquet results hold the rows. A phase is ``done`` only after
its rows are committed, so the two always agree.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from raysweep.errors import RunDirLocked, UserError

STATE_FILE = "state.json"
LOCK_FILE = ".lock"
FORMAT_VERSION = 1


@dataclass
class PhaseState:
    index: int  # 1-based
    name: str
    searcher: str
    status: str = "pending"  # pending | running | done
    trials_planned: int = 0
    trials_done: int = 0
    status_counts: dict[str, int] = field(default_factory=dict)
    best: dict[str, Any] | None = None  # {trial_id, objective, params}
    cost_s: float = 0.0
    gpu_s: float = 0.0
    settings: dict[str, Any] = field(default_factory=dict)
    plan: str = ""  # how the phase's configs were chosen, for people
    box: dict[str, Any] | None = None  # the narrowed box, when the phase narrows
    tune_path: str | None = None
    started_at: float | None = None
    ended_at: float | None = None


@dataclass
class SweepState:
    sweep: str
    metric: str
    mode: str
    parameters: dict[str, Any]  # the declared search space, frozen at creation
    phases: list[PhaseState]
    created_at: float = field(default_factory=time.time)
    format: int = FORMAT_VERSION

    def phase(self, index: int) -> PhaseState:
        return self.phases[index - 1]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "SweepState":
        phases = [PhaseState(**p) for p in data.pop("phases")]
        return cls(phases=phases, **data)


def read_state(run_dir: str | os.PathLike[str]) -> SweepState | None:
    path = Path(run_dir) / STATE_FILE
    if not path.exists():
        return None
    try:
        return SweepState.from_json(json.loads(path.read_text()))
    except (ValueError, TypeError, KeyError) as exc:
        raise UserError(f"{path} is not a raysweep state file ({exc})") from None


def write_state(run_dir: str | os.PathLike[str], state: SweepState) -> None:
    path = Path(run_dir) / STATE_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{STATE_FILE}.{uuid.uuid4().hex}.tmp")
    tmp.write_text(json.dumps(state.to_json(), indent=2, default=str) + "\n")
    os.replace(tmp, path)


class RunDirLock:
    """An exclusive, advisory lock on a run directory, held by one driver.

    The kernel drops it when the process dies, so a killed driver never leaves
    a stale lock behind.
    """

    def __init__(self, run_dir: str | os.PathLike[str]) -> None:
        self.path = Path(run_dir) / LOCK_FILE
        self._handle = None

    def acquire(self) -> "RunDirLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise RunDirLocked(
                f"{self.path.parent} is in use by another raysweep driver ({holder}); "
                "wait for it to finish or stop it before starting another"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {os.uname().nodename}")
        handle.flush()
        self._handle = handle
        return self

    def release(self) -> None:
        if self._handle is not None:
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None

    def __enter__(self) -> "RunDirLock":
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
