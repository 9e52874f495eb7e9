"""A trainable that checkpoints and resumes, and notes each attempt, for fault tests.

It reports ``steps`` iterations, ``sleep`` seconds apart, and saves a checkpoint
with every ``checkpoint_every``-th report. A retried attempt resumes from the
trial's last checkpoint (``ray.tune.get_checkpoint()``), and every report
carries ``resumed_from``: the iteration the attempt started after (0 for a
start from scratch).

Each trial appends its events to ``<record_dir>/<trial_id>.jsonl``: one
``start`` per attempt (with ``resumed_from``) and one ``report`` after each
report Tune took (with the iteration and whether it checkpointed), each with
the Ray node id and pid. ``record_dir`` comes from the config or, failing
that, from ``RAYSWEEP_CHECKPOINTING_DIR``.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

import ray
from ray import tune

RECORD_DIR_ENV = "RAYSWEEP_CHECKPOINTING_DIR"
_STATE = "state.json"


def train(config: dict) -> None:
    """Reports ``score = x * iteration`` for iterations ``resumed_from + 1 .. steps``."""
    steps = int(config.get("steps", 6))
    sleep = float(config.get("sleep", 0.5))
    every = int(config.get("checkpoint_every", 2))
    x = float(config.get("x", 1.0))
    log = _log_path(config)
    resumed_from = _restored_iteration()
    _append(log, {"event": "start", "resumed_from": resumed_from})
    for iteration in range(resumed_from + 1, steps + 1):
        time.sleep(sleep)
        metrics = {"score": x * iteration, "step": iteration, "resumed_from": resumed_from}
        checkpointed = iteration % every == 0
        if checkpointed:
            with tempfile.TemporaryDirectory() as directory:
                Path(directory, _STATE).write_text(json.dumps({"iteration": iteration}))
                tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(directory))
        else:
            tune.report(metrics)
        # tune.report returns once the driver asked for the next result: Tune has this one.
        _append(log, {"event": "report", "iteration": iteration, "checkpointed": checkpointed})


def read_events(record_dir: str | os.PathLike[str]) -> dict[str, list[dict]]:
    """Every trial's events in the order written, by trial id.

    A line cut short by a killed process is skipped.
    """
    events: dict[str, list[dict]] = {}
    for path in sorted(Path(record_dir).glob("*.jsonl")):
        lines = []
        for line in path.read_text().splitlines():
            try:
                lines.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        events[path.stem] = lines
    return events


def _restored_iteration() -> int:
    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        return 0
    with checkpoint.as_directory() as directory:
        return int(json.loads(Path(directory, _STATE).read_text())["iteration"])


def _log_path(config: dict) -> Path:
    where = config.get("record_dir") or os.environ.get(RECORD_DIR_ENV)
    if not where:
        raise ValueError(f"checkpointing.train needs record_dir in its config or {RECORD_DIR_ENV} in its environment")
    Path(where).mkdir(parents=True, exist_ok=True)
    return Path(where) / f"{tune.get_context().get_trial_id()}.jsonl"


def _append(log: Path, event: dict) -> None:
    event.update(node_id=ray.get_runtime_context().get_node_id(), pid=os.getpid(), time=time.time())
    # One short write per line to a file opened for appending: lines never interleave.
    with open(log, "a") as handle:
        handle.write(json.dumps(event) + "\n")
