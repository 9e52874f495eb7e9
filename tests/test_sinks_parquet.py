"""The Parquet sink's promises after crashes and failed writes (real files, no Ray)."""

from __future__ import annotations

import shutil
import time

import pandas as pd
import pytest

from raysweep.records import ProgressRecord, TrialRecord, TrialStatus
from raysweep.sinks.parquet import ParquetSink
from raysweep.space import SearchSpace
from raysweep.spec import ParameterSpec
from raysweep.storage import WriteFailed
from tests.conftest import fill

SPACE = SearchSpace((ParameterSpec(distribution="uniform", min=0.0, max=1.0).to_parameter("x"),))


def record(trial_id: str, x: float) -> TrialRecord:
    now = time.time()
    return TrialRecord(
        sweep="s", phase=1, phase_name="p", trial_id=trial_id, status=TrialStatus.COMPLETED, params={"x": x},
        objective=x, best_objective=x, metrics={"score": x}, cost_s=1.0, gpu_s=0.0, iterations=2,
        started_at=now - 1, ended_at=now,
    )


def progress(trial_id: str, x: float) -> list[ProgressRecord]:
    return [ProgressRecord(trial_id=trial_id, iteration=i, time_s=0.5 * i, metrics={"score": x * i / 2}) for i in (1, 2)]


def test_a_commit_cut_short_and_repeated_keeps_one_row_per_trial_and_per_report(tmp_path):
    sink = ParquetSink(tmp_path, SPACE)
    for trial_id, x in (("a", 0.1), ("b", 0.2)):
        sink.stage(record(trial_id, x), progress(trial_id, x))
    staging = tmp_path / "results" / ".staging" / "phase=1"
    shutil.copytree(staging, tmp_path / "kept")
    assert sink.commit_phase(1) == 2
    shutil.copytree(tmp_path / "kept", staging)  # as if the driver died before the staged files were removed

    assert sink.recorded_trial_ids(1) == {"a", "b"}
    assert sink.commit_phase(1) == 2
    trials = pd.read_parquet(tmp_path / "results" / "trials")
    progress_rows = pd.read_parquet(tmp_path / "results" / "progress")
    assert sorted(trials["trial_id"]) == ["a", "b"]
    assert len(progress_rows) == 4 and not progress_rows.duplicated(["trial_id", "iteration"]).any()
    assert sink.recorded_trial_ids(1) == {"a", "b"}  # committed rows count once staging is gone


def test_staging_on_a_full_disk_raises_write_failed_naming_the_file_and_leaves_no_part(small_disk):
    sink = ParquetSink(small_disk / "run", SPACE)
    sink.stage(record("a", 0.1), progress("a", 0.1))
    fill(small_disk)
    staging = small_disk / "run" / "results" / ".staging" / "phase=1"
    with pytest.raises(WriteFailed, match=rf"^cannot write {staging}/b\.progress\.parquet: no space left on device$"):
        sink.stage(record("b", 0.2), progress("b", 0.2))
    assert sorted(p.name for p in staging.iterdir()) == ["a.progress.parquet", "a.trials.parquet"]
    assert sink.staged_trial_ids(1) == {"a"}


def test_observations_read_back_hold_a_resample_origin_only_where_the_row_has_one(tmp_path):
    import dataclasses

    sink = ParquetSink(tmp_path, SPACE)
    sink.stage(record("a", 0.1), progress("a", 0.1))
    sink.stage(dataclasses.replace(record("b", 0.1), resampled_from="a"), progress("b", 0.1))
    for include_staged, committed in ((True, False), (False, True)):
        if committed:
            sink.commit_phase(1)
        origins = {o.trial_id: o.resampled_from for o in sink.read_observations([1], include_staged=include_staged)}
        assert origins == {"a": None, "b": "a"}  # not NaN, which a missing string reads back as
