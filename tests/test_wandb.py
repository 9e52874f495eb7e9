"""W&B logging, offline, read back from the ``.wandb`` files W&B wrote.

wandb 0.31 has no Python reader for its run files (the datastore moved into
wandb-core), so ``read_records`` parses the container (a LevelDB-style log:
a 7-byte ``:W&B`` header, then 32 KiB blocks of CRC-checked chunks) and
decodes each record with wandb's own protobuf ``Record``. Nothing here
contacts W&B's servers: every run is offline and error reporting is off.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from raysweep import sweep
from raysweep.sinks import wandb as wandb_sink
from raysweep.spec import WandbSpec, load_experiment
from tests.conftest import synthetic_experiment

FAKE_SECRET = "local-0123456789abcdefFAKEKEYdoNotUse0123456789abcdef"

@pytest.fixture(autouse=True)
def _offline_wandb(monkeypatch, tmp_path):
    monkeypatch.setenv("WANDB_ERROR_REPORTING", "false")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_BASE_URL", raising=False)


# ----------------------------------------------------------------------------
# reading .wandb files
# ----------------------------------------------------------------------------
_BLOCK = 32 * 1024
_CHUNK_HEADER = struct.Struct("<IHB")  # crc32 of (type byte + data), data length, chunk type
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def read_records(path: Path) -> list:
    """Every record of a ``.wandb`` file, decoded as ``wandb_internal_pb2.Record``."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    ident, magic, version = struct.unpack("<4sHB", data[:7])
    assert (ident, magic, version) == (b":W&B", 0xBEE1, 0), f"{path} is not a W&B run file"
    records, pending, position = [], b"", 7
    while position + _CHUNK_HEADER.size <= len(data):
        room = _BLOCK - position % _BLOCK
        if room < _CHUNK_HEADER.size:  # a block's zero-filled tail
            position += room
            continue
        checksum, length, kind = _CHUNK_HEADER.unpack_from(data, position)
        if kind == 0 and length == 0:
            position += room
            continue
        chunk = data[position + _CHUNK_HEADER.size : position + _CHUNK_HEADER.size + length]
        assert zlib.crc32(chunk, zlib.crc32(bytes([kind]))) == checksum, f"bad checksum at byte {position} of {path}"
        position += _CHUNK_HEADER.size + length
        if kind == _FIRST:
            pending = chunk
        elif kind == _MIDDLE:
            pending += chunk
        else:
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending + chunk if kind == _LAST else chunk)
            records.append(record)
            pending = b""
    return records


@dataclass
class OfflineRun:
    """What an offline run holds, folded from its records as W&B would on sync."""

    directory: Path
    run_id: str = ""
    project: str = ""
    group: str = ""
    job_type: str = ""
    tags: tuple[str, ...] = ()
    config: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    history: dict[int, dict[str, Any]] = field(default_factory=dict)
    exit_code: int | None = None


def _fold(target: dict[str, Any], items) -> dict[str, Any]:
    """Apply W&B key/value updates; a ``nested_key`` path sets a value inside nested dicts."""
    for item in items:
        path = list(item.nested_key) or [item.key]
        node = target
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = json.loads(item.value_json)
    return target


def read_run(directory: Path) -> OfflineRun:
    (path,) = directory.glob("*.wandb")
    run = OfflineRun(directory)
    for record in read_records(path):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            r = record.run
            run.run_id, run.project, run.group, run.job_type = r.run_id, r.project, r.run_group, r.job_type
            run.tags = tuple(r.tags)
            _fold(run.config, r.config.update)
        elif kind == "config":
            _fold(run.config, record.config.update)
        elif kind == "summary":
            _fold(run.summary, record.summary.update)
        elif kind == "history":
            row = _fold({}, record.history.item)
            run.history[int(row["_step"])] = row
        elif kind == "exit":
            run.exit_code = record.exit.exit_code
    run.config.pop("_wandb", None)
    return run


def offline_runs(run_dir: Path, timeout_s: float = 30.0) -> list[OfflineRun]:
    """The offline runs under ``run_dir``, once each file holds its run record.

    W&B's service process writes a run's file on its own; right after
    ``run.finish()`` returns, the last run's records can still be on their way
    to disk, so the reader waits (up to ``timeout_s``) for every run's header.
    """
    import time

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            runs = [read_run(d) for d in sorted((run_dir / "wandb").glob("offline-run-*"))]
        except (ValueError, AssertionError):  # a file not there yet, or cut mid-record
            if time.monotonic() > deadline:
                raise
        else:
            if all(run.run_id for run in runs) or time.monotonic() > deadline:
                return runs
        time.sleep(0.5)


# ----------------------------------------------------------------------------
# running phases
# ----------------------------------------------------------------------------
def run_sweep(experiment) -> Path:
    return sweep.run(experiment).run_dir


def _experiment(write_experiment, **overrides):
    data = synthetic_experiment(
        name="wb_sweep",
        budget=6,
        parameters={
            "x": {"distribution": "uniform", "min": 0.0, "max": 1.0},
            "fail": {"distribution": "choice", "values": ["no", "raise", "nan"]},
        },
        phases=[{"name": "explore", "searcher": "grid", "share": 1.0, "grid_resolution": 2, "max_trial_time": "30s"}],
        wandb={"mode": "offline"},
    )
    data.update(overrides)
    return load_experiment(write_experiment(data))


# ----------------------------------------------------------------------------
# tests
# ----------------------------------------------------------------------------
def test_each_trial_is_an_offline_run_with_its_config_metrics_and_final_status(ray_local, write_experiment):
    experiment = _experiment(write_experiment)
    run_dir = run_sweep(experiment)
    trials = pd.read_parquet(run_dir / "results" / "trials")
    progress = pd.read_parquet(run_dir / "results" / "progress")
    runs = offline_runs(run_dir)
    trial_runs = {run.run_id: run for run in runs if run.job_type == "explore"}
    assert set(trial_runs) == set(trials["trial_id"]) and len(trials) == 6
    assert set(trials["status"]) == {"completed", "failed"}  # both kinds of ending are checked below

    metric_columns = [c for c in progress.columns if c.startswith("metric.")]
    assert progress["trial_id"].nunique() >= 4 and metric_columns == ["metric.score", "metric.step"]
    for row in trials.to_dict("records"):
        run = trial_runs[row["trial_id"]]
        assert (run.project, run.group, run.job_type) == ("wb_sweep", "wb_sweep", "explore")
        assert run.config == {"x": row["param.x"], "fail": row["param.fail"], "seed": row["seed"]}
        assert set(run.tags) == {"phase-1", row["status"]}
        assert run.summary["trial/status"] == row["status"]
        assert run.exit_code == (1 if row["status"] == "failed" else 0)
        if row["status"] == "completed":
            assert run.summary["trial/objective"] == pytest.approx(row["objective"])
        else:
            assert "trial/objective" not in run.summary and row["error"] in run.summary["trial/error"]
        # the logged history is the Parquet progress, step for step
        reports = progress[progress["trial_id"] == row["trial_id"]]
        assert sorted(run.history) == sorted(reports["iteration"])  # none for a trial that raised at once
        for report in reports.to_dict("records"):
            logged = run.history[report["iteration"]]
            assert logged["trial/time_s"] == pytest.approx(report["time_s"])
            for column in metric_columns:
                name = column[len("metric."):]
                expected = report[column]
                if math.isnan(expected):
                    assert name not in logged or math.isnan(float(logged[name]))
                else:
                    assert logged[name] == pytest.approx(expected, rel=1e-12)

    (summary,) = [run for run in runs if run.job_type == "explore-summary"]
    assert summary.group == "wb_sweep" and set(summary.tags) == {"phase-1", "summary"}
    usable = trials[trials["status"] != "failed"]
    best = usable.loc[usable["objective"].idxmax()]
    assert summary.summary["trials"] == 6
    assert summary.summary["status/completed"] == len(usable)
    assert summary.summary["status/failed"] == len(trials) - len(usable)
    assert summary.summary["cost_s"] == pytest.approx(trials["cost_s"].sum())
    assert summary.summary["best/objective"] == pytest.approx(best["objective"])
    assert summary.summary["best/config"] == {"x": best["param.x"], "fail": best["param.fail"]}
    (table_ref,) = [row["top_configs"] for row in summary.history.values() if "top_configs" in row]
    table = json.loads((summary.directory / "files" / table_ref["path"]).read_text())
    objectives = [row[table["columns"].index("objective")] for row in table["data"]]
    assert objectives == sorted(usable["objective"], reverse=True)  # failed trials never ranked
    assert not list(run_dir.glob("wandb/**/*.tmp"))


def test_api_key_reaches_no_file_of_the_run_directory(ray_local, write_experiment, monkeypatch, tmp_path):
    monkeypatch.setenv("WANDB_API_KEY", FAKE_SECRET)
    experiment = _experiment(write_experiment, budget=2, phases=[
        {"name": "explore", "searcher": "random", "trials": 2, "max_trial_time": "30s"},
    ])
    assert wandb_sink.resolve_mode(experiment.wandb) == "offline"
    callbacks = wandb_sink.trial_callbacks(experiment, phase=1, phase_name="explore", run_dir=tmp_path, outcome_key="k")
    assert FAKE_SECRET.encode() not in pickle.dumps(callbacks)  # Tune pickles callbacks into tuner.pkl
    run_dir = run_sweep(experiment)
    files = [p for p in run_dir.rglob("*") if p.is_file()]
    assert any(p.suffix == ".wandb" for p in files) and any(p.name == "tuner.pkl" for p in files)
    leaks = [str(p.relative_to(run_dir)) for p in files if FAKE_SECRET.encode() in p.read_bytes()]
    assert leaks == []


def test_disabled_logs_nothing(write_experiment, tmp_path):
    experiment = _experiment(write_experiment, wandb={"mode": "disabled"})
    run_dir = tmp_path / "unused"
    assert wandb_sink.trial_callbacks(experiment, phase=1, phase_name="explore", run_dir=run_dir, outcome_key="k") == []
    wandb_sink.log_phase_summary(experiment, phase_state=None, trials=pd.DataFrame(), run_dir=run_dir)
    assert not run_dir.exists()


def test_auto_mode_is_online_only_with_credentials_found_without_network(monkeypatch, tmp_path):
    for name in ("WANDB_API_KEY", "WANDB_IDENTITY_TOKEN_FILE", "WANDB_MODE", "WANDB_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    auto = WandbSpec()
    assert wandb_sink.resolve_mode(auto) == "offline"
    for mode in ("online", "offline", "disabled"):
        assert wandb_sink.resolve_mode(WandbSpec(mode=mode)) == mode

    (tmp_path / "netrc").write_text(f"machine api.wandb.ai\n  login user\n  password {FAKE_SECRET}\n")
    assert wandb_sink.resolve_mode(auto) == "online"
    monkeypatch.setenv("WANDB_BASE_URL", "https://wandb.example.internal")
    assert wandb_sink.resolve_mode(auto) == "offline"  # that login is for another server

    (tmp_path / "wandb-config").mkdir()
    (tmp_path / "wandb-config" / "settings").write_text(f"[default]\napi_key = {FAKE_SECRET}\n")
    assert wandb_sink.resolve_mode(auto) == "online"
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert wandb_sink.resolve_mode(auto) == "offline"
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert wandb_sink.resolve_mode(auto) == "disabled"

    monkeypatch.delenv("WANDB_MODE")
    os.remove(tmp_path / "wandb-config" / "settings")
    assert wandb_sink.resolve_mode(auto) == "offline"
    monkeypatch.setenv("WANDB_API_KEY", FAKE_SECRET)
    assert wandb_sink.resolve_mode(auto) == "online"


def _closed_loopback_url() -> str:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"  # nothing listens there once the socket is closed


@pytest.mark.timeout(300)
def test_an_unreachable_server_falls_back_to_offline_runs_with_one_warning(ray_local, write_experiment, monkeypatch, caplog):
    import time

    url = _closed_loopback_url()
    monkeypatch.setenv("WANDB_BASE_URL", url)
    monkeypatch.setenv("WANDB_API_KEY", FAKE_SECRET)
    monkeypatch.setattr(wandb_sink, "_reachable", {})
    experiment = _experiment(write_experiment, budget=2, wandb={"mode": "online"}, phases=[
        {"name": "explore", "searcher": "random", "trials": 2, "max_trial_time": "30s"},
    ])
    started = time.monotonic()
    with caplog.at_level("WARNING", logger=wandb_sink.__name__):
        run_dir = run_sweep(experiment)
    assert time.monotonic() - started < 90  # not minutes of wandb retrying per run
    warnings = [r.getMessage() for r in caplog.records if r.name == wandb_sink.__name__]
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith(f"W&B: {url} is unreachable (") and "writing offline runs to" in warnings[0]
    runs = offline_runs(run_dir)
    trials = pd.read_parquet(run_dir / "results" / "trials")
    assert {run.run_id for run in runs if run.job_type == "explore"} == set(trials["trial_id"])
    assert [run.job_type for run in runs].count("explore-summary") == 1


def test_a_phase_whose_every_trial_failed_still_gets_its_summary_run(ray_local, write_experiment):
    experiment = _experiment(
        write_experiment, name="wb_failed", trainable="tests.trainables.reports:raises", budget=2,
        parameters={"x": {"distribution": "uniform", "min": 0.0, "max": 1.0}},
        phases=[{"name": "explore", "searcher": "random", "trials": 2, "max_trial_time": "30s"}],
    )
    run_dir = run_sweep(experiment)
    trials = pd.read_parquet(run_dir / "results" / "trials")
    assert list(trials["status"]) == ["failed", "failed"]
    (summary,) = [run for run in offline_runs(run_dir) if run.job_type == "explore-summary"]
    assert summary.summary["trials"] == 2 and summary.summary["status/failed"] == 2
    assert "best/objective" not in summary.summary
    # texts that differ only in their numbers count as one reason
    assert summary.summary["failures/1"].startswith("2 x RuntimeError: bad config x=")
    (table_ref,) = [row["top_configs"] for row in summary.history.values() if "top_configs" in row]
    assert json.loads((summary.directory / "files" / table_ref["path"]).read_text())["data"] == []
