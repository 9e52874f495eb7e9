"""A trainable that notes where and when it ran, for multi-node tests and benchmarks.

Each trial writes one JSON file, ``<record_dir>/<trial_id>.json``, holding the
Ray node it ran on, the GPU ids Ray assigned it, and its wall-clock start and
end. ``record_dir`` comes from the config (a one-value ``choice`` parameter in
the experiment file) or, failing that, from ``RAYSWEEP_PLACEMENT_DIR``.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import ray
from ray import tune

RECORD_DIR_ENV = "RAYSWEEP_PLACEMENT_DIR"


def train(config: dict) -> None:
    """Holds its resources for ``work_s`` seconds (default 1.5), then reports ``score``."""
    started = time.time()
    runtime = ray.get_runtime_context()
    record = {
        "trial_id": tune.get_context().get_trial_id(),
        "node_id": runtime.get_node_id(),
        "gpu_ids": [str(gpu) for gpu in ray.get_gpu_ids()],
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "pid": os.getpid(),
        "started_at": started,
    }
    time.sleep(float(config.get("work_s", 1.5)))
    record["ended_at"] = time.time()
    _write(_record_dir(config), record)
    tune.report({"score": float(config.get("x", 0.0)), "work_s": record["ended_at"] - started})


def read_records(record_dir: str | os.PathLike[str]) -> list[dict]:
    """Every trial's record, in order of start."""
    records = [json.loads(path.read_text()) for path in Path(record_dir).glob("*.json")]
    return sorted(records, key=lambda r: r["started_at"])


def _record_dir(config: dict) -> Path:
    where = config.get("record_dir") or os.environ.get(RECORD_DIR_ENV)
    if not where:
        raise ValueError(f"placement.train needs record_dir in its config or {RECORD_DIR_ENV} in its environment")
    return Path(where)


def _write(record_dir: Path, record: dict) -> None:
    # Written under a temporary name and renamed: a reader never sees half a record.
    record_dir.mkdir(parents=True, exist_ok=True)
    final = record_dir / f"{record['trial_id']}.json"
    partial = final.with_suffix(f".{os.getpid()}.tmp")
    partial.write_text(json.dumps(record))
    os.replace(partial, final)
