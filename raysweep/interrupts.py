"""Stopping a sweep on SIGINT (Ctrl-C) or SIGTERM without losing or corrupting anything.

Ray Tune's own Ctrl-C handling makes ``Tuner.fit`` return normally, as if the
phase had ended, and Ray's driver turns SIGTERM into ``sys.exit`` wherever the
main thread happens to be. raysweep replaces both while it runs phases
(:class:`SignalGuard`):

* in Tune's control loop, the first signal asks Tune to stop the way it stops
  on Ctrl-C (running trials stopped, its experiment state saved once more);
  when ``fit`` returns, the phase is *not* committed: it stays ``running`` and
  :class:`Interrupted` is raised, which the CLI turns into exit code 130
  (SIGINT) or 143 (SIGTERM) and one line;
* while raysweep commits a phase (merging its rows, writing ``state.json``)
  a signal is held back until the commit is whole, then raised;
* anywhere else it raises :class:`Interrupted` at once;
* a second signal while Tune is stopping raises :class:`Interrupted` at once
  (the user wants out). Every file raysweep writes appears whole or not at
  all, and a Tune experiment state cut short is detected at ``--resume``
  (:func:`raysweep.sweep.unrestorable_reason`), so this still leaves a
  resumable run directory.

The guard only works in the main thread (Python delivers signals there); in
another thread it does nothing and Tune's and Ray's defaults stay.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from typing import Iterator

#: The signals a sweep stops on, and the exit code each one ends the CLI with (128 + number).
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(Exception):
    """The sweep was stopped by a signal; the running phase stays unfinished.

    An ``Exception`` (not a ``KeyboardInterrupt``) so that Tune's clean-up
    code, which catches ``Exception``, still stops the trials when it is raised
    inside Tune's loop.
    """

    def __init__(self, signum: int, hint: str = "") -> None:
        self.signum = int(signum)
        self.exit_code = 128 + self.signum
        text = "interrupted; continue with --resume"
        super().__init__(f"{text}: {hint}" if hint else text)


class SignalGuard:
    """Turns SIGINT and SIGTERM into a clean stop of the sweep (see the module's docstring).

    Use as a context manager around the phases; wrap Tune's ``fit`` in
    :meth:`tune_loop` and each commit in :meth:`deferred`. ``hint`` is the
    command that continues the sweep, quoted in :class:`Interrupted`.
    """

    def __init__(self, hint: str = "") -> None:
        self.hint = hint
        self.received: int | None = None  # the first signal, once one came
        self._where = "outside"  # outside | tune | deferred
        self._previous: dict[int, object] = {}
        self._active = False

    # -- installing ---------------------------------------------------------------
    def __enter__(self) -> "SignalGuard":
        if threading.current_thread() is not threading.main_thread():
            return self
        # Tune would otherwise take SIGINT for itself during fit and return as if
        # the phase had ended; it still listens to SIGUSR1, which this guard uses.
        self._previous_tune_env = os.environ.get("TUNE_DISABLE_SIGINT_HANDLER")
        os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
        for signum in STOP_SIGNALS:
            self._previous[signum] = signal.signal(signum, self._handle)
        self._active = True
        return self

    def __exit__(self, *exc: object) -> None:
        if not self._active:
            return
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]
        if self._previous_tune_env is None:
            os.environ.pop("TUNE_DISABLE_SIGINT_HANDLER", None)
        else:
            os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = self._previous_tune_env
        self._active = False

    # -- sections ---------------------------------------------------------------------
    @contextlib.contextmanager
    def tune_loop(self) -> Iterator[None]:
        """Around ``Tuner.fit``: a signal asks Tune to stop; :meth:`check` afterwards raises."""
        self.check()
        if self._active and hasattr(signal, "SIGUSR1"):
            # Until Tune installs its handler for this fit, the previous fit's would
            # swallow the request; this marker makes the guard raise instead.
            self._previous.setdefault(signal.SIGUSR1, signal.getsignal(signal.SIGUSR1))
            signal.signal(signal.SIGUSR1, _no_tune_loop_yet)
        self._where = "tune"
        try:
            yield
        finally:
            self._where = "outside"

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        """Around a commit: a signal waits until the block is done, then raises."""
        self._where = "deferred"
        try:
            yield
        finally:
            self._where = "outside"
        self.check()

    def check(self) -> None:
        """Raise :class:`Interrupted` if a signal came."""
        if self.received is not None:
            raise Interrupted(self.received, self.hint)

    # -- the handler --------------------------------------------------------------------
    def _handle(self, signum: int, frame: object) -> None:
        first = self.received is None
        if first:
            self.received = signum
        if self._where == "deferred":
            return
        if self._where == "tune" and first and _ask_tune_to_stop(frame):
            return
        raise Interrupted(self.received or signum, self.hint)


def _ask_tune_to_stop(frame: object) -> bool:
    """Trigger Tune's graceful stop (its SIGUSR1 handler, installed during ``fit``); False if none is installed."""
    handler = signal.getsignal(signal.SIGUSR1) if hasattr(signal, "SIGUSR1") else None
    if not callable(handler) or handler is _no_tune_loop_yet:
        return False
    handler(signal.SIGUSR1, frame)
    return True


def _no_tune_loop_yet(signum: int, frame: object) -> None:
    """SIGUSR1 between two of Tune's loops: nothing to stop."""
