"""The saved state of an AxSearcher: JSON helpers.

Resume
    :meth:`save` writes one JSON document atomically: the trial-id mapping,
    counters, resample bookkeeping, the history (its trial ids when the run
    directory's Parquet results can give the observations back, else the
    observations), the phase's own trials (raw values and how each ended) and
    the GP's hyperparameters (so the first
    suggestion after a restore starts from them instead of a cold fit). Ax's
    experiment is not saved: a restore attaches the same trials again in their
    original order, in bulk. All
    randomness is derived from ``seed`` and the trial's position (seeds, Halton
    draws, acquisition samples), so counters are the whole RNG state.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import tempfile
from typing import Any, Mapping

from raysweep.records import Observation, TrialStatus
from raysweep.space import Parameter, RawValue, SearchSpace

#: 2: float parameters cross to Ax in unit coordinates; no Ax snapshot (rebuilt from the records).
STATE_FORMAT = "raysweep.AxSearcher/2"


def write_json_atomically(data: Any, path: str) -> None:
    """Write ``data`` as JSON to ``path``: a temporary file, then ``os.replace``."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp_path = tempfile.mkstemp(prefix=".axsearcher-", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(data, handle)
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_path)
        raise


def bounds_of(parameter: Parameter) -> tuple:
    return (parameter.name, parameter.distribution, parameter.min, parameter.max, tuple(parameter.values))


def space_to_json(space: SearchSpace) -> list[dict[str, Any]]:
    return [{**dataclasses.asdict(p), "values": list(p.values)} for p in space]


def space_from_json(data: list[dict[str, Any]]) -> SearchSpace:
    return SearchSpace(tuple(Parameter(**{**item, "values": tuple(item["values"])}) for item in data))


def restore_params(params: Mapping[str, Any], space: SearchSpace) -> dict[str, RawValue]:
    """Numeric values back to their declared kind (JSON may write 3e8 as a float)."""
    restored: dict[str, RawValue] = {}
    for name, value in params.items():
        if name in space.names and not space[name].is_choice and isinstance(value, (int, float)):
            parameter = space[name]
            restored[name] = int(value) if parameter.is_int and float(value).is_integer() else value
        else:
            restored[name] = value
    return restored


def observation_to_json(observation: Observation) -> dict[str, Any]:
    data = dataclasses.asdict(observation)
    data["status"] = observation.status.value
    return data


def observation_from_json(data: dict[str, Any], space: SearchSpace) -> Observation:
    data = dict(data)
    data["status"] = TrialStatus(data["status"])
    data["params"] = restore_params(data["params"], space)
    return Observation(**data)
