"""What a trial runs: the user's Python callable, or an external command.

A Python trainable is ``train(config)`` that reports with ``ray.tune.report``.
A command is an argv list with ``{param}`` placeholders; each line it prints
to stdout that is a JSON object is one report, other lines pass through to the
trial's log. Values go in as argv items, never through a shell.
"""

from __future__ import annotations

import functools
import json
import os
import selectors
import subprocess
import sys
import threading
from collections import deque
from typing import Any, Callable

from ray import tune

from raysweep import placeholders, process_tree
from raysweep.spec import Experiment, resolve_trainable

#: Extra keys raysweep adds to every trial's config.
SEED_KEY = "seed"
#: Seconds a stopped command's processes get between SIGTERM and SIGKILL.
STOP_GRACE_S = 5.0


def build_trainable(experiment: Experiment) -> Callable[[dict[str, Any]], Any]:
    """The Tune function trainable of an experiment, with its resources attached."""
    if experiment.trainable is not None:
        function: Callable[[dict[str, Any]], Any] = _tensors_as_arrays(resolve_trainable(experiment.trainable))
    else:
        assert experiment.command is not None
        function = tune.with_parameters(run_command, argv=tuple(experiment.command))
    resources = {"cpu": experiment.resources.cpu, "gpu": experiment.resources.gpu}
    return tune.with_resources(function, resources)


def _tensors_as_arrays(function: Callable[[dict[str, Any]], Any]) -> Callable[[dict[str, Any]], Any]:
    """``function``, with torch tensors in its reports turned into NumPy arrays.

    Ray's ``tune.report`` refuses any torch tensor (it could not be unpickled
    where torch is absent), which would fail a trial that reports ``loss``
    rather than ``loss.item()``. As arrays they reach raysweep's number rule
    (:mod:`raysweep.metrics`): a 0-d one is its number, any other shape is
    refused there with the metric's name.
    """

    @functools.wraps(function)
    def run(config: dict[str, Any]) -> Any:
        from ray.train._internal.session import get_session

        session = get_session()
        if session is None:  # called outside a Tune trial
            return function(config)
        report = session.report
        session.report = lambda metrics, checkpoint=None: report(_without_tensors(metrics), checkpoint=checkpoint)
        try:
            return function(config)
        finally:
            del session.report  # the class's own again, for the next trial on this actor

    return run


def _without_tensors(value: Any) -> Any:
    torch = sys.modules.get("torch")
    if torch is None:
        return value
    if isinstance(value, torch.Tensor):
        tensor = value.detach().cpu()
        if tensor.ndim == 0:
            return tensor.item()
        return (tensor.double() if tensor.is_floating_point() else tensor).numpy()
    if isinstance(value, dict):
        return {key: _without_tensors(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_without_tensors(item) for item in value)
    return value


def format_argv(argv: tuple[str, ...] | list[str], config: dict[str, Any]) -> list[str]:
    """The argv of one trial: each item's placeholders filled (rules in :mod:`raysweep.placeholders`).

    ``trial_id`` comes from Tune's context when the config does not hold it.
    """
    values = dict(config)
    if "trial_id" not in values and any("trial_id" in item for item in argv):
        values["trial_id"] = _trial_id()
    return [placeholders.fill(item, values) for item in argv]


def _trial_id() -> str:
    """Tune's id of the running trial; ``unknown`` outside one (a unit test calling format_argv)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Tune warns when asked outside a trial
        try:
            trial_id = tune.get_context().get_trial_id()
        except Exception:
            trial_id = None
    return str(trial_id) if trial_id else "unknown"


def run_command(config: dict[str, Any], argv: tuple[str, ...]) -> None:
    """Run one trial as a subprocess; raise if it exits non-zero.

    The command runs under :mod:`raysweep.process_tree`, which ends its whole
    process tree (its process group and any session its helpers started:
    SIGTERM, then SIGKILL after :data:`STOP_GRACE_S`) when the trial ends for
    any reason: the command exits, Tune stops the trial (time budget, ASHA;
    Tune's stop event, which this loop polls), the trial's thread ends, or the
    actor's worker process is killed. Raises RuntimeError naming the exit code
    and the last stderr line when the command exits non-zero.
    """
    command = format_argv(argv, config)
    stderr_tail: deque[str] = deque(maxlen=20)
    supervised = [
        sys.executable,
        os.path.abspath(process_tree.__file__),
        "--grace",
        repr(STOP_GRACE_S),
        "--parent",
        str(os.getpid()),
        "--",
        *command,
    ]
    process = subprocess.Popen(
        supervised,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        bufsize=1,
        start_new_session=True,  # terminal signals reach the driver, not the trial
    )
    stop_event = _tune_stop_event()
    pump = threading.Thread(target=_pump_stderr, args=(process, stderr_tail), daemon=True)
    pump.start()
    selector = selectors.DefaultSelector()
    assert process.stdout is not None
    selector.register(process.stdout, selectors.EVENT_READ)
    reported = False
    try:
        while True:
            if stop_event is not None and stop_event.is_set():
                return  # Tune stopped the trial; `finally` ends the process
            if not selector.select(timeout=0.2):
                if process.poll() is not None:
                    reported = _drain(process) or reported
                    break
                continue
            line = process.stdout.readline()
            if not line:
                break
            reported = _handle_line(line) or reported
        code = process.wait()
        pump.join(timeout=5)
        if code != 0:
            last = next((line.strip() for line in reversed(stderr_tail) if line.strip()), "")
            raise RuntimeError(
                f"command exited with code {code}: {' '.join(command)}" + (f" (stderr ends: {last})" if last else "")
            )
        if not reported:
            raise RuntimeError(
                f"command printed no JSON report on stdout (a line holding one JSON object): {' '.join(command)}"
            )
    finally:
        selector.close()
        _kill(process)


def _drain(process: subprocess.Popen) -> bool:
    """Handle the lines left on stdout; whether one of them was a report."""
    assert process.stdout is not None
    reported = False
    for line in process.stdout:
        reported = _handle_line(line) or reported
    return reported


def _handle_line(line: str) -> bool:
    """Report a line that is a JSON object as it is, else pass it to stderr; whether it was a report.

    The values are read by :mod:`raysweep.metrics` in the driver: numbers in
    strings (``"0.17"``), nested objects and integers too large for a float
    all reach it unchanged.
    """
    text = line.strip()
    if text.startswith("{"):
        try:
            payload = json.loads(text)
        except (json.JSONDecodeError, RecursionError):
            payload = None
        if isinstance(payload, dict):
            tune.report(payload)
            return True
    if text:
        print(text, file=sys.stderr)
    return False


def _pump_stderr(process: subprocess.Popen, tail: deque[str]) -> None:
    assert process.stderr is not None
    for line in process.stderr:
        tail.append(line)
        sys.stderr.write(line)


def _kill(process: subprocess.Popen) -> None:
    """End the command's supervisor, which ends the whole tree first (see :mod:`raysweep.process_tree`)."""
    if process.poll() is not None:
        return
    try:
        process.terminate()
        process.wait(timeout=STOP_GRACE_S + 5)
    except subprocess.TimeoutExpired:
        process.kill()  # its detached keeper still ends the tree
        process.wait()
    except ProcessLookupError:
        pass


def _tune_stop_event() -> threading.Event | None:
    """The event Tune sets when it stops this trial (absent outside a trial).

    Tune only acts on it at the trial's next report; a command may be silent
    for long, so the reader loop polls it itself.
    """
    try:
        from ray.train._internal.session import get_session

        session = get_session()
    except Exception:
        return None
    return getattr(session, "stop_event", None)
