"""Trial results as Parquet, hive-partitioned by phase.

Layout under a run directory::

    results/trials/phase=N/part-0.parquet     one row per finished trial
    results/progress/phase=N/part-0.parquet   one row per report
    results/.staging/phase=N/<trial>.*.parquet  rows of a phase still running

The sink's contract: append-only per trial, idempotent per trial id (staging
the same trial twice keeps the last copy), and safe after a crash: every file
appears whole or not at all (written to a temporary name, then renamed), and
committing a phase can be repeated until it succeeds. Readers of
``results/trials`` see only committed phases; every committed file carries the
same columns, so ``pandas.read_parquet(".../results/trials")`` reads all phases
as one table (``phase`` comes from the partition and arrives as a category).

The run directory may be a cloud URI (:mod:`raysweep.storage`): the layout is
the same, and "written to a temporary name, then renamed" becomes one upload
of the complete file, which appears whole or not at all.
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from datetime import datetime, timezone
from typing import Any, Iterable, Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from raysweep.records import Observation, ProgressRecord, TrialRecord, TrialStatus
from raysweep.space import SearchSpace
from raysweep.storage import RemotePath, StoragePath, WriteFailed, arrow_location, as_path

TRIALS = "trials"
PROGRESS = "progress"
_STAGING = ".staging"
_PART = "part-0.parquet"

_FIXED_COLUMNS: list[tuple[str, pa.DataType]] = [
    ("sweep", pa.string()),
    ("phase_name", pa.string()),
    ("trial_id", pa.string()),
    ("status", pa.string()),
    ("objective", pa.float64()),
    ("best_objective", pa.float64()),
    ("cost_s", pa.float64()),
    ("gpu_s", pa.float64()),
    ("iterations", pa.int64()),
    ("started_at", pa.timestamp("ms", tz="UTC")),
    ("ended_at", pa.timestamp("ms", tz="UTC")),
    ("error", pa.string()),
    ("seed", pa.int64()),
    ("resampled_from", pa.string()),
    ("fidelity", pa.float64()),
    ("curve_fidelity", pa.list_(pa.float64())),
    ("curve_objective", pa.list_(pa.float64())),
]


def param_type(space: SearchSpace, name: str) -> pa.DataType:
    parameter = space[name]
    if parameter.is_choice:
        values = parameter.values
        if all(isinstance(v, bool) for v in values):
            return pa.bool_()
        if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            return pa.int64()
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            return pa.float64()
        return pa.string()
    return pa.int64() if parameter.is_int else pa.float64()


def _timestamp(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=timezone.utc)


def trial_table(records: Sequence[TrialRecord], space: SearchSpace) -> pa.Table:
    """Rows of finished trials, with a schema fixed by the space."""
    fields = list(_FIXED_COLUMNS)
    fields += [(f"param.{name}", param_type(space, name)) for name in space.names]
    metric_names = sorted({m for r in records for m in r.metrics})
    fields += [(f"metric.{m}", metric_type([r.metrics.get(m) for r in records])) for m in metric_names]
    extra_names = sorted({k for r in records for k in r.extra})
    columns: dict[str, list[Any]] = {name: [] for name, _ in fields}
    extra_columns: dict[str, list[Any]] = {name: [] for name in extra_names}
    for r in records:
        columns["sweep"].append(r.sweep)
        columns["phase_name"].append(r.phase_name)
        columns["trial_id"].append(r.trial_id)
        columns["status"].append(TrialStatus(r.status).value)
        columns["objective"].append(r.objective)
        columns["best_objective"].append(r.best_objective)
        columns["cost_s"].append(r.cost_s)
        columns["gpu_s"].append(r.gpu_s)
        columns["iterations"].append(r.iterations)
        columns["started_at"].append(_timestamp(r.started_at))
        columns["ended_at"].append(_timestamp(r.ended_at))
        columns["error"].append(r.error)
        columns["seed"].append(r.seed)
        columns["resampled_from"].append(r.resampled_from)
        columns["fidelity"].append(r.fidelity)
        columns["curve_fidelity"].append([float(level) for level, _ in r.curve])
        columns["curve_objective"].append([float(value) for _, value in r.curve])
        for name in space.names:
            value = r.params.get(name)
            columns[f"param.{name}"].append(str(value) if value is not None and param_type(space, name) == pa.string() else value)
        for m in metric_names:
            columns[f"metric.{m}"].append(r.metrics.get(m))
        for k in extra_names:
            value = r.extra.get(k)
            extra_columns[k].append(json.dumps(value) if isinstance(value, (dict, list)) else value)
    arrays = [pa.array(columns[name], type=dtype) for name, dtype in fields]
    names = [name for name, _ in fields]
    for k in extra_names:
        arrays.append(pa.array(extra_columns[k]))
        names.append(k)
    return pa.Table.from_arrays(arrays, names=names)


def progress_table(trial_id: str, rows: Sequence[ProgressRecord]) -> pa.Table:
    metric_names = sorted({m for r in rows for m in r.metrics})
    data: dict[str, pa.Array] = {
        "trial_id": pa.array([trial_id] * len(rows), pa.string()),
        "iteration": pa.array([r.iteration for r in rows], pa.int64()),
        "time_s": pa.array([r.time_s for r in rows], pa.float64()),
    }
    for m in metric_names:
        values = [r.metrics.get(m) for r in rows]
        data[f"metric.{m}"] = pa.array(values, metric_type(values))
    return pa.table(data)


def metric_type(values: Sequence[Any]) -> pa.DataType:
    """int64 for a metric whose every value is an integer, else float64.

    Files that disagree (ints in one trial or phase, floats in another) are
    promoted to float64 when merged and unified, so all read as one table.
    """
    present = [v for v in values if v is not None]
    if present and all(isinstance(v, int) and not isinstance(v, bool) for v in present):
        return pa.int64()
    return pa.float64()


# ----------------------------------------------------------------------------
# files
# ----------------------------------------------------------------------------
def write_atomically(table: pa.Table, path: StoragePath) -> None:
    """Write ``table`` so that ``path`` holds the whole file or nothing new.

    Raises :class:`~raysweep.storage.WriteFailed` (naming ``path``) when the
    storage refuses the write, e.g. a full disk; ``path`` keeps its old content.
    """
    if isinstance(path, RemotePath):  # no rename on object stores: one upload of the finished file
        buffer = pa.BufferOutputStream()
        pq.write_table(table, buffer)
        try:
            path.write_bytes(buffer.getvalue())
        except OSError as exc:
            raise WriteFailed(path, exc) from exc
        return
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, tmp)
        os.replace(tmp, path)
    except OSError as exc:
        raise WriteFailed(path, exc) from exc
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


class ParquetSink:
    """Results of one run directory."""

    def __init__(self, run_dir: "str | os.PathLike[str] | RemotePath", space: SearchSpace) -> None:
        self.root = as_path(run_dir) / "results"
        self.space = space

    # -- paths ------------------------------------------------------------------
    def _committed(self, kind: str, phase: int) -> StoragePath:
        return self.root / kind / f"phase={phase}" / _PART

    def _staging_dir(self, phase: int) -> StoragePath:
        return self.root / _STAGING / f"phase={phase}"

    # -- writing ----------------------------------------------------------------
    def stage(self, record: TrialRecord, progress: Sequence[ProgressRecord]) -> None:
        """Persist one finished trial of a running phase (idempotent per trial id)."""
        staging = self._staging_dir(record.phase)
        write_atomically(progress_table(record.trial_id, progress), staging / f"{record.trial_id}.{PROGRESS}.parquet")
        # The trial row goes last: its presence marks the trial as recorded.
        write_atomically(trial_table([record], self.space), staging / f"{record.trial_id}.{TRIALS}.parquet")

    def staged_trial_ids(self, phase: int) -> set[str]:
        staging = self._staging_dir(phase)
        suffix = f".{TRIALS}.parquet"
        if not staging.is_dir():
            return set()
        return {p.name[: -len(suffix)] for p in staging.iterdir() if p.name.endswith(suffix)}

    def recorded_trial_ids(self, phase: int) -> set[str]:
        """Ids of the trials of ``phase`` that have a row, staged or committed.

        A phase whose commit was cut short (a crash, a full disk) has some of
        its rows in the committed file and perhaps none left staged; both count.
        """
        ids = self.staged_trial_ids(phase)
        target = self._committed(TRIALS, phase)
        if target.exists():
            ids |= set(_read_table(target).column("trial_id").to_pylist())
        return ids

    def has_committed(self, phase: int) -> bool:
        return self._committed(TRIALS, phase).exists()

    def commit_phase(self, phase: int) -> int:
        """Merge a phase's staged trials into its committed files; return its row count.

        Repeatable: if a crash interrupts it, running it again gives the same result.
        """
        staging = self._staging_dir(phase)
        trials = self._merge(TRIALS, phase, staging)
        self._merge(PROGRESS, phase, staging, keep_ids={*trials.column("trial_id").to_pylist()})
        if staging.is_dir():
            if isinstance(staging, RemotePath):
                staging.rmtree()  # one batched delete instead of a request per staged object
            else:
                for path in staging.iterdir():
                    path.unlink()
                staging.rmdir()
        if (self.root / _STAGING).is_dir() and not any((self.root / _STAGING).iterdir()):
            (self.root / _STAGING).rmdir()
        self._unify(TRIALS)
        self._unify(PROGRESS)
        return trials.num_rows

    def _merge(self, kind: str, phase: int, staging: StoragePath, keep_ids: set[str] | None = None) -> pa.Table:
        tables: list[pa.Table] = []
        target = self._committed(kind, phase)
        if target.exists():
            tables.append(_read_table(target))
        if staging.is_dir():
            staged = sorted(staging.glob(f"*.{kind}.parquet"), key=lambda p: p.stat().st_mtime)
            tables += _read_tables(staged)
        if not tables:
            tables = [trial_table([], self.space) if kind == TRIALS else progress_table("", [])]
        table = _concat(tables)
        if kind == TRIALS:
            table = _last_row_per_trial(table)
        else:
            if keep_ids is not None:
                mask = [tid in keep_ids for tid in table.column("trial_id").to_pylist()]
                table = table.filter(pa.array(mask, pa.bool_()))
            # A commit cut short after this file was written merges the same staged rows again.
            table = _last_row_per_report(table)
        write_atomically(table, target)
        return table

    def _unify(self, kind: str) -> None:
        """Give every committed phase file of ``kind`` the same columns."""
        paths = sorted((self.root / kind).glob(f"phase=*/{_PART}"))
        if len(paths) < 2:
            return
        schemas = [_read_schema(p) for p in paths]
        unified = pa.unify_schemas(schemas, promote_options="permissive")
        for path, schema in zip(paths, schemas):
            if schema.equals(unified, check_metadata=False):
                continue
            table = _read_table(path)
            write_atomically(_conform(table, unified), path)

    # -- reading ----------------------------------------------------------------
    def committed_phases(self) -> list[int]:
        base = self.root / TRIALS
        if not base.is_dir():
            return []
        return sorted(int(p.name.split("=", 1)[1]) for p in base.glob("phase=*") if (p / _PART).exists())

    def read_trials(self, phases: Iterable[int] | None = None, include_staged: bool = False):
        """Trials as a pandas DataFrame with an int ``phase`` column."""
        import pandas as pd

        wanted = None if phases is None else set(phases)
        frames = []
        for phase in self.committed_phases():
            if wanted is None or phase in wanted:
                frame = _read_table(self._committed(TRIALS, phase)).to_pandas()
                frame.insert(1, "phase", phase)
                frames.append(frame)
        if include_staged and (self.root / _STAGING).is_dir():
            for staging in sorted((self.root / _STAGING).glob("phase=*")):
                phase = int(staging.name.split("=", 1)[1])
                if wanted is not None and phase not in wanted:
                    continue
                for table in _read_tables(list(staging.glob(f"*.{TRIALS}.parquet"))):
                    frame = table.to_pandas()
                    frame.insert(1, "phase", phase)
                    frames.append(frame)
        if not frames:
            return pd.DataFrame(columns=["sweep", "phase", "trial_id", "status", "objective"])
        return pd.concat(frames, ignore_index=True, sort=False)

    def read_observations(
        self, phases: Iterable[int] | None = None, limit: int | None = None, include_staged: bool = False
    ) -> list[Observation]:
        """Finished trials of committed phases as observations, oldest first.

        Values are the raw values the trainables got; nothing is clipped to any
        phase's box. ``limit`` keeps the most recent ``limit`` of them.
        ``include_staged`` adds the staged trials of phases not yet committed
        (an interrupted phase's finished trials).
        """
        frame = self.read_trials(phases, include_staged=include_staged)
        if frame.empty:
            return []
        frame = frame.sort_values(["phase", "ended_at"], kind="stable")
        if limit is not None:
            frame = frame.tail(limit)
        observations = []
        for row in frame.to_dict("records"):
            params = {}
            for name in self.space.names:
                value = row.get(f"param.{name}")
                if self.space[name].is_choice:
                    value = _restore_choice(self.space[name].values, value)
                elif self.space[name].is_int:
                    value = int(value)
                else:
                    value = float(value)
                params[name] = value
            objective = row.get("objective")
            seed = row.get("seed")
            observations.append(
                Observation(
                    trial_id=str(row["trial_id"]),
                    phase=int(row["phase"]),
                    params=params,
                    status=TrialStatus(row["status"]),
                    objective=None if objective is None or objective != objective else float(objective),
                    cost_s=float(row.get("cost_s") or 0.0),
                    gpu_s=float(row.get("gpu_s") or 0.0),
                    iterations=int(row.get("iterations") or 0),
                    seed=None if seed is None or seed != seed else int(seed),
                    # a missing id reads back as NaN in pandas, which is no trial id
                    resampled_from=origin if isinstance(origin := row.get("resampled_from"), str) and origin else None,
                    fidelity=_float_or_none(row.get("fidelity")),
                    curve=_curve(row.get("curve_fidelity"), row.get("curve_objective")),
                )
            )
        return observations


def _curve(levels: Any, values: Any) -> tuple[tuple[float, float], ...]:
    """A trial's learning-curve points from its two list cells (absent in files written before them)."""
    if levels is None or values is None or isinstance(levels, float) or isinstance(values, float):
        return ()
    return tuple((float(level), float(value)) for level, value in zip(levels, values))


def _float_or_none(value: Any) -> float | None:
    """A float cell as a float, or None for a null (NaN in pandas) or a missing column."""
    if value is None or value != value:
        return None
    return float(value)


def _restore_choice(values: Sequence[Any], stored: Any) -> Any:
    """The declared choice value a stored cell holds.

    A choice of mixed types is stored as text (``None`` as a null, which pandas
    reads as NaN); a value of the same type as stored wins over one that only
    prints the same.
    """
    if stored is None or (isinstance(stored, float) and stored != stored):
        if any(value is None for value in values):
            return None
    for value in values:
        if type(value) is type(stored) and value == stored:
            return value
    for value in values:
        if value is not None and str(value) == str(stored):
            return value
    return stored


def _read_table(path: StoragePath) -> pa.Table:
    where, filesystem = arrow_location(path)
    return pq.read_table(where, partitioning=None, filesystem=filesystem)


def _read_tables(paths: list[StoragePath]) -> list[pa.Table]:
    """Tables of ``paths`` in order; remote objects are fetched a few at a time (one request each)."""
    if len(paths) > 1 and isinstance(paths[0], RemotePath):
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=8) as pool:
            return list(pool.map(_read_table, paths))
    return [_read_table(p) for p in paths]


def _read_schema(path: StoragePath) -> pa.Schema:
    where, filesystem = arrow_location(path)
    return pq.read_schema(where, filesystem=filesystem)


def _concat(tables: list[pa.Table]) -> pa.Table:
    unified = pa.unify_schemas([t.schema for t in tables], promote_options="permissive")
    return pa.concat_tables([_conform(t, unified) for t in tables])


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    arrays = []
    for field in schema:
        if field.name in table.column_names:
            arrays.append(table.column(field.name).cast(field.type))
        else:
            arrays.append(pa.nulls(table.num_rows, field.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def _last_row_per_report(table: pa.Table) -> pa.Table:
    keys = list(zip(table.column("trial_id").to_pylist(), table.column("iteration").to_pylist()))
    last = {key: i for i, key in enumerate(keys)}
    if len(last) == len(keys):
        return table
    return table.take(pa.array(sorted(last.values()), pa.int64()))


def _last_row_per_trial(table: pa.Table) -> pa.Table:
    ids = table.column("trial_id").to_pylist()
    last = {tid: i for i, tid in enumerate(ids)}
    keep = sorted(last.values())
    return table.take(pa.array(keep, pa.int64()))
