"""A run directory on S3: a real S3-compatible server (moto's, on loopback) and the real local Ray.

The server runs as a subprocess of this module; the driver (pyarrow, boto3 for
the lock), Ray Tune's own storage and the Ray workers all reach it through the
standard AWS environment variables, as they would reach AWS or MinIO.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from raysweep import storage, sweep
from raysweep.errors import RunDirLocked
from raysweep.sinks.parquet import ParquetSink
from raysweep.spec import load_experiment
from raysweep.state import RunDirLock, read_state
from tests.conftest import ROOT, synthetic_experiment

BUCKET = "bucket"
URI = f"s3://{BUCKET}/sweeps/x"
# Everything the AWS SDKs (pyarrow's and boto3) read, so that nothing of the machine's own AWS setup leaks in.
_AWS_VARIABLES = (
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_DEFAULT_REGION", "AWS_REGION",
    "AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_EC2_METADATA_DISABLED",
    "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE",
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def s3_server(tmp_path_factory):
    """moto's S3 server on 127.0.0.1, one bucket, and the environment pointing every client at it."""
    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    log = open(tmp_path_factory.mktemp("moto") / "server.log", "w")
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    saved = {name: os.environ.get(name) for name in _AWS_VARIABLES}
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=2).close()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"moto server did not start (exit code {server.poll()})")
                time.sleep(0.2)
        for name in _AWS_VARIABLES:
            os.environ.pop(name, None)
        empty = tmp_path_factory.mktemp("aws")
        os.environ.update(
            AWS_ACCESS_KEY_ID="testing",
            AWS_SECRET_ACCESS_KEY="testing",
            AWS_DEFAULT_REGION="us-east-1",
            AWS_ENDPOINT_URL_S3=endpoint,  # honoured by pyarrow's S3FileSystem and by boto3
            AWS_EC2_METADATA_DISABLED="true",  # never look for instance credentials off this machine
            AWS_CONFIG_FILE=str(empty / "config"),
            AWS_SHARED_CREDENTIALS_FILE=str(empty / "credentials"),
        )
        storage.clear_cache()
        fs = pafs.S3FileSystem(endpoint_override=endpoint, region="us-east-1", allow_bucket_creation=True)
        fs.create_dir(BUCKET)
        yield endpoint
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        storage.clear_cache()
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
        log.close()


@pytest.fixture(scope="module")
def ray_s3(s3_server, ray_local):
    """The session's Ray, with workers that see the S3 environment (restarted once if it was started before)."""
    ray = ray_local

    @ray.remote
    def endpoint_on_worker() -> str | None:
        return os.environ.get("AWS_ENDPOINT_URL_S3")

    if ray.get(endpoint_on_worker.remote()) != s3_server:
        # Workers inherit the environment of the Ray started by an earlier test module, which had no endpoint.
        ray.shutdown()
        sweep.connect(address=None, num_cpus=2, verbose=False)
    return ray


def _objects(prefix: str) -> dict[str, pafs.FileInfo]:
    """The objects under ``s3://bucket/<prefix>``, listed with pyarrow, keyed by their path below it."""
    fs, path = pafs.FileSystem.from_uri(f"s3://{BUCKET}/{prefix}")
    infos = fs.get_file_info(pafs.FileSelector(path, recursive=True, allow_not_found=True))
    return {info.path[len(path) + 1:]: info for info in infos if info.type == pafs.FileType.File}


def _experiment_file(write_experiment, storage_uri: str, name: str = "exp.yaml"):
    data = synthetic_experiment(
        name="s3sweep",
        storage=storage_uri,
        budget=10,
        phases=[
            {"name": "explore", "searcher": "grid", "share": 0.6, "grid_resolution": 3, "max_trial_time": "30s"},
            # No random start: the model's first suggestion already rests on phase 1's observations.
            {"name": "bayes", "searcher": "ax", "share": 0.4, "random_samples": 0, "max_trial_time": "30s",
             "narrow": {"top_fraction": 0.5, "min_top": 3}},
        ],
    )
    return write_experiment(data, name)


def test_two_phase_sweep_keeps_everything_in_the_bucket(ray_s3, write_experiment, monkeypatch):
    path = _experiment_file(write_experiment, URI)
    experiment = load_experiment(path)

    loaded: list[tuple[str, list[int] | None, set[str]]] = []
    read_observations = ParquetSink.read_observations

    def recording_read_observations(self, phases=None, *args, **kwargs):
        observations = read_observations(self, phases, *args, **kwargs)
        loaded.append((str(self.root), None if phases is None else list(phases), {o.trial_id for o in observations}))
        return observations

    monkeypatch.setattr(ParquetSink, "read_observations", recording_read_observations)
    result = sweep.run(experiment)
    monkeypatch.undo()

    assert isinstance(result.run_dir, storage.RemotePath) and str(result.run_dir) == URI
    assert not (ROOT / "s3:").exists()  # nothing went to a local directory named after the URI

    # The results and the state are objects in the bucket; staging and the lock are gone.
    objects = _objects("sweeps/x")
    for key in ("state.json", "results/trials/phase=1/part-0.parquet", "results/trials/phase=2/part-0.parquet",
                "results/progress/phase=1/part-0.parquet", "results/progress/phase=2/part-0.parquet"):
        assert key in objects and objects[key].size > 0, sorted(objects)
    assert not [k for k in objects if k.startswith("results/.staging/") or k.endswith(".tmp")]
    assert ".lock" not in objects
    assert any(k.startswith("tune/phase1-explore/") for k in objects)  # Ray Tune's own storage_path
    assert any(k.startswith("tune/phase2-bayes/") for k in objects)

    # What the bucket holds agrees with the state and with what run() returned.
    fs, root = pafs.FileSystem.from_uri(URI)
    frames = {
        phase: pq.read_table(f"{root}/results/trials/phase={phase}/part-0.parquet", filesystem=fs).to_pandas()
        for phase in (1, 2)
    }
    assert len(frames[1]) == 6 and len(frames[2]) == 4
    state = read_state(URI)
    assert state is not None and state.sweep == "s3sweep"
    for phase_state in state.phases:
        rows = frames[phase_state.index]
        assert phase_state.status == "done"
        assert phase_state.trials_done == len(rows) == phase_state.trials_planned
        assert phase_state.tune_path.startswith(f"{URI}/tune/")
    assert result.state.to_json() == state.to_json()
    assert result.total_trials == 10
    every = [row for frame in frames.values() for row in frame.to_dict("records")]
    usable = [row for row in every if row["status"] != "failed"]
    top = max(row["objective"] for row in usable)
    assert result.best is not None and result.best.objective == pytest.approx(top)
    assert result.best.trial_id in {row["trial_id"] for row in usable if row["objective"] == top}

    # Warm start: phase 2's Ax searcher got phase 1's observations, read from the bucket.
    assert (f"{URI}/results", [1], set(frames[1]["trial_id"])) in loaded
    assert state.phase(2).box and frames[2]["narrow_box"].notna().all()  # narrowed around those observations

    # A Ray worker reaches the same bucket (the environment reached it too).
    def state_on_worker(uri: str) -> dict:
        return read_state(uri).to_json()

    assert ray_s3.get(ray_s3.remote(state_on_worker).remote(URI)) == state.to_json()

    # Running again finds every phase done and runs nothing.
    before = {key: info.mtime for key, info in _objects("sweeps/x").items()}

    def no_phase_may_run(*args, **kwargs):
        raise AssertionError("a done phase ran again")

    monkeypatch.setattr(sweep, "run_phase", no_phase_may_run)
    again = sweep.run(load_experiment(path), phase=None)
    monkeypatch.undo()
    assert again.total_trials == 10 and again.best == result.best
    assert all(p.status == "done" for p in again.state.phases)
    after = {key: info.mtime for key, info in _objects("sweeps/x").items()}
    assert after == before

    # The CLI's status reads the same run from the experiment file.
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "raysweep", "status", str(path)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"s3sweep: max score ({URI})" in proc.stdout
    assert re.search(r"phase 1 explore\s+done\s+6/6 done", proc.stdout), proc.stdout
    assert re.search(r"phase 2 bayes\s+done\s+4/4 done", proc.stdout), proc.stdout
    proc = subprocess.run([sys.executable, "-m", "raysweep", "validate", str(path)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"results in {URI}" in proc.stdout and "phase 2 narrowed box" in proc.stdout  # read from the bucket

    # W&B appends to its files in place: its offline runs stay on the driver's disk.
    from raysweep.sinks.wandb import RunTarget

    assert RunTarget.of(experiment, result.run_dir).run_dir == str((ROOT / "runs" / "s3sweep").resolve())

    # And the report goes to the bucket as well.
    from raysweep.report import write_report

    page = write_report(URI)
    assert str(page) == f"{URI}/report/index.html"
    report = _objects("sweeps/x/report")
    assert report["index.html"].size > 1000 and any(k.endswith(".png") for k in report)


def test_second_driver_is_refused_while_the_first_holds_the_lock(s3_server, write_experiment):
    uri = f"s3://{BUCKET}/sweeps/locked"
    path = _experiment_file(write_experiment, uri)
    with RunDirLock(uri):
        assert ".lock" in _objects("sweeps/locked")
        with pytest.raises(RunDirLocked, match=r"is in use by another raysweep driver \(pid \d+"):
            sweep.run(load_experiment(path))
        # another process: the real second driver
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        proc = subprocess.run([sys.executable, "-m", "raysweep", "run", str(path), "--num-cpus", "1"], cwd=ROOT,
                              env=env, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert f"raysweep: error: {uri} is in use by another raysweep driver (pid {os.getpid()}" in proc.stderr
    assert ".lock" not in _objects("sweeps/locked")  # released: deleted
    assert read_state(uri) is None  # the refused drivers wrote nothing


def test_lease_of_a_killed_driver_lapses_and_is_taken_over(s3_server):
    uri = f"s3://{BUCKET}/sweeps/killed"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom raysweep.state import RunDirLock\n"
         "RunDirLock(sys.argv[1], lease_s=3).acquire()\nprint('held', flush=True)\ntime.sleep(600)\n", uri],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        time.sleep(1.5)  # past a renewal (every lease_s / 4): the lease is alive
        with pytest.raises(RunDirLocked, match=r"lease renewed \d+ s ago.*lapses 3 s after its last renewal"):
            RunDirLock(uri).acquire()
    finally:
        os.killpg(holder.pid, signal.SIGKILL)
        holder.wait()
    deadline = time.monotonic() + 30
    while True:
        try:
            lock = RunDirLock(uri).acquire()
            break
        except RunDirLocked:
            assert time.monotonic() < deadline, "the killed driver's lease never lapsed"
            time.sleep(0.5)
    try:
        assert b'"pid": %d' % os.getpid() in storage.as_path(f"{uri}/.lock").read_bytes()
    finally:
        lock.release()
    assert ".lock" not in _objects("sweeps/killed")


def test_check_then_write_objects_refuse_a_second_create_and_a_stale_replace(s3_server):
    from raysweep.storage import CheckThenWriteObject

    slot = CheckThenWriteObject(storage.as_path(f"s3://{BUCKET}/slots/a"), settle_s=0.1)
    first = slot.create(b"one")
    assert first is not None and slot.create(b"two") is None
    second = slot.replace(b"three", first)
    assert second is not None and slot.replace(b"four", first) is None
    assert slot.read().data == b"three"
    assert not slot.delete(first) and slot.delete(second) and slot.read() is None
