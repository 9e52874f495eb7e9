"""``state.json`` and the run directory's lock.

The state says which phases are done, with what settings, how many trials and
which best; the Parquet results hold the rows. A phase is ``done`` only after
its rows are committed, so the two always agree.

The run directory may be local or on an object store (:mod:`raysweep.storage`);
``state.json`` is replaced whole either way (rename locally, one upload remote).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

from raysweep.errors import RunDirLocked, UserError
from raysweep.storage import RemotePath, as_path, conditional_object, write_bytes_atomically

STATE_FILE = "state.json"
LOCK_FILE = ".lock"
FORMAT_VERSION = 1
#: How long a lock on an object store outlives its holder's last renewal.
LEASE_S = 60.0

log = logging.getLogger(__name__)


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
    narrow_note: str | None = None  # set when narrowing had fewer than min_top usable trials
    model_note: str | None = None  # a Bayesian phase's GP: multi- or single-fidelity, and a full run's fidelity
    final_box: dict[str, Any] | None = None  # where the trust region left the box (raysweep.trust_region)
    box_moves: dict[str, int] | None = None  # {"growths": n, "shrinks": m} of the trust region
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
    fidelity_attr: str = "training_iteration"  # what measures a trial's progress (the experiment's fidelity.attr)
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


def read_state(run_dir: "str | os.PathLike[str] | RemotePath") -> SweepState | None:
    """The run directory's state, or None when it has no ``state.json``.

    A ``state.json`` that is not UTF-8 JSON of a state's shape (null, a field of
    the wrong type, a truncated file) is a UserError naming the file.
    """
    path = as_path(run_dir) / STATE_FILE
    try:
        if not path.exists():
            return None
        raw = path.read_bytes()
    except OSError as exc:
        if not isinstance(path, RemotePath):
            raise UserError(f"cannot read {path} ({exc.strerror or exc})") from None
        raise UserError(f"cannot read {path} ({exc}); check the storage credentials and endpoint") from None
    return parse_state(raw, str(path))


def parse_state(raw: bytes, where: str) -> SweepState:
    """A state from the bytes of ``state.json``; UserError naming ``where`` if they hold none."""
    from pydantic import TypeAdapter, ValidationError

    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise UserError(f"{where} is not a raysweep state file (not UTF-8: byte 0x{raw[exc.start]:02x} at offset {exc.start})") from None
    except ValueError as exc:
        raise UserError(f"{where} is not a raysweep state file (not JSON, or cut short: {exc})") from None
    if not isinstance(data, dict):
        kind = "null" if data is None else "a list" if isinstance(data, list) else f"the value {data!r:.40}"
        raise UserError(f"{where} is not a raysweep state file (it holds {kind}, not a JSON object)")
    try:
        return TypeAdapter(SweepState).validate_python(data)
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        field = ".".join(str(part) for part in error["loc"]) or "(top)"
        raise UserError(
            f"{where} is not a raysweep state file ({field}: {error['msg'].lower()}; got {error.get('input')!r:.80})"
        ) from None


def write_state(run_dir: "str | os.PathLike[str] | RemotePath", state: SweepState) -> None:
    path = as_path(run_dir) / STATE_FILE
    write_bytes_atomically(path, (json.dumps(state.to_json(), indent=2, default=str) + "\n").encode("utf-8"))


class RunDirLock:
    """An exclusive lock on a run directory, held by one driver.

    A local run directory gets an advisory ``fcntl`` lock on ``<run_dir>/.lock``.
    The kernel drops it when the process dies, so a killed driver never leaves
    a stale lock behind.

    A run directory on an object store (``s3://``, ``gs://``) has no such lock,
    so it gets a lease (:class:`ObjectStoreLease`): a ``.lock`` object naming
    its owner, renewed in the background, that another driver may take over
    once it has not been renewed for ``lease_s`` seconds. See that class for
    what it guarantees and what it does not.
    """

    def __init__(self, run_dir: "str | os.PathLike[str] | RemotePath", *, lease_s: float = LEASE_S) -> None:
        self.path = as_path(run_dir) / LOCK_FILE
        self._handle = None
        self._lease = ObjectStoreLease(self.path, lease_s=lease_s) if isinstance(self.path, RemotePath) else None

    def acquire(self) -> "RunDirLock":
        if self._lease is not None:
            self._lease.acquire()
            return self
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
        if self._lease is not None:
            self._lease.release()
            return
        if self._handle is not None:
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None

    def __enter__(self) -> "RunDirLock":
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


class ObjectStoreLease:
    """The lock of a run directory on an object store: a lease object, renewed while held.

    The ``.lock`` object holds JSON naming its owner (a random id, pid, host)
    and the lease length. Taking the lock:

    1. create the object only if it does not exist (S3: ``PUT`` with
       ``If-None-Match: *``); if that succeeds, the lock is ours;
    2. otherwise read it: if it was renewed less than ``lease_s`` ago (the
       holder's own lease length, as written in it), refuse with
       :class:`RunDirLocked`;
    3. if the lease has lapsed (its driver was killed or lost the network),
       replace it only if it is still the version read (S3: ``If-Match:
       <ETag>``), so two drivers taking over the same stale lease cannot both
       succeed.

    While held, a daemon thread renews it every ``lease_s / 4`` seconds, each
    time only if it is still the version this driver wrote; releasing deletes
    it the same way.

    Limits, honestly:

    * A killed driver cannot delete its lease: the run directory stays locked
      until ``lease_s`` (60 s by default) after its last renewal; the refusal
      says how long is left. (The local ``fcntl`` lock has no such wait.)
    * A driver that cannot renew for ``lease_s`` (a network partition, a
      process stopped with SIGSTOP, a host suspended) loses the lock to the
      next driver that asks, while it may still be running. It notices at
      its next renewal and logs an error, but it is not stopped: until then
      both may write. Give ``lease_s`` a margin over any pause you expect.
    * On S3 the store decides the conditional writes, and lease ages are
      measured on its clock (``Date`` minus ``Last-Modified``, 1 s
      resolution), so machine clocks do not matter. This needs boto3 (the
      ``s3`` extra) and a store with conditional writes (AWS S3 since 2024,
      MinIO, moto); a store that ignores ``If-None-Match`` gives no exclusion.
    * Other stores (``gs://``, ...) get check-then-write: check, write, wait
      2 s, read back. Two drivers starting within the same instant are told
      apart only if a write is visible to the other within those 2 s, and
      lease ages compare this machine's clock with the store's modification
      time, so clock skew shifts them.
    * Like the local lock, it is advisory: it keeps raysweep drivers apart,
      not other programs writing to the same prefix.
    """

    def __init__(self, path: RemotePath, *, lease_s: float = LEASE_S) -> None:
        self.path = path
        self.lease_s = float(lease_s)
        self.owner = uuid.uuid4().hex
        self.lost = False
        self._object = None
        self._tag: str | None = None
        self._acquired_at = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _content(self) -> bytes:
        return json.dumps(
            {
                "owner": self.owner,
                "pid": os.getpid(),
                "host": os.uname().nodename,
                "lease_s": self.lease_s,
                "acquired_at": self._acquired_at,
                "renewed_at": time.time(),
            }
        ).encode("utf-8")

    def acquire(self) -> "ObjectStoreLease":
        if self._thread is not None:
            raise RuntimeError(f"{self.path} is already held by this lock")
        try:
            self._object = conditional_object(self.path)
            self._acquired_at = time.time()
            self._tag = self._take()
        except OSError as exc:
            raise UserError(
                f"cannot take the lock of {self.path.parent} ({exc}); check the storage credentials and endpoint "
                "(e.g. AWS_ENDPOINT_URL_S3 for an S3-compatible server)"
            ) from None
        self.lost = False
        self._stop.clear()
        self._thread = threading.Thread(target=self._renew_until_released, name="raysweep-lease", daemon=True)
        self._thread.start()
        return self

    def _take(self) -> str:
        assert self._object is not None
        for _ in range(5):
            tag = self._object.create(self._content())
            if tag is not None:
                return tag
            current = self._object.read()
            if current is None:
                continue  # released between our two requests: try to create it again
            holder = _holder(current.data)
            lease_s = float(holder.get("lease_s") or LEASE_S)
            if current.age_s < lease_s:
                raise RunDirLocked(
                    f"{self.path.parent} is in use by another raysweep driver ({_describe(holder)}, lease renewed "
                    f"{current.age_s:.0f} s ago); wait for it to finish or stop it before starting another. A killed "
                    f"driver's lease lapses {lease_s:.0f} s after its last renewal, in about "
                    f"{max(lease_s - current.age_s, 1):.0f} s"
                )
            tag = self._object.replace(self._content(), current.tag)
            if tag is not None:
                log.warning(
                    "took over the lock of %s: its lease (%s) was last renewed %.0f s ago, past its %.0f s",
                    self.path.parent, _describe(holder), current.age_s, lease_s,
                )
                return tag
        raise RunDirLocked(f"{self.path.parent}: the lock kept changing hands while this driver tried to take it; try again")

    def _renew_until_released(self) -> None:
        interval = max(self.lease_s / 4.0, 0.05)
        while not self._stop.wait(interval):
            try:
                tag = self._object.replace(self._content(), self._tag)  # type: ignore[union-attr]
            except Exception as exc:  # the network may come back before the lease lapses
                log.warning("could not renew the lock of %s (%s); trying again in %.0f s", self.path.parent, exc, interval)
                continue
            if tag is None:
                self.lost = True
                log.error(
                    "lost the lock of %s: this driver did not renew it for %.0f s and another driver took it over; "
                    "stop this driver, the other one now owns the run directory", self.path.parent, self.lease_s,
                )
                return
            self._tag = tag

    def release(self) -> None:
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join(timeout=60)
        self._thread = None
        if self.lost or self._tag is None:
            return
        try:
            if not self._object.delete(self._tag):  # type: ignore[union-attr]
                log.warning("the lock of %s was no longer this driver's when it was released", self.path.parent)
        except OSError as exc:
            log.warning("could not delete the lock of %s (%s); it lapses in %.0f s", self.path.parent, exc, self.lease_s)
        self._tag = None


def _holder(data: bytes) -> dict[str, Any]:
    try:
        holder = json.loads(data.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        return {}
    return holder if isinstance(holder, dict) else {}


def _describe(holder: dict[str, Any]) -> str:
    if not holder.get("pid"):
        return "unknown holder"
    return f"pid {holder['pid']} on {holder.get('host', '?')}"
