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

from ray.tune.search import Searcher

from raysweep.fidelity import FidelityScale
from raysweep.narrowing import Box
from raysweep.records import Observation, TrialStatus
from raysweep.searchers.ax.coding import codings_for
from raysweep.searchers.ax.model import AmortizedSurrogate, quiet, quiet_ax_logs
from raysweep.space import Parameter, RawValue, SearchSpace
from raysweep.trust_region import TrustRegion

#: 2: float parameters cross to Ax in unit coordinates; no Ax snapshot (rebuilt from the records).
#: 3: the fidelity scale, learning-curve points and the event order of suggestions and reports.
STATE_FORMAT = "raysweep.AxSearcher/3"


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
    data["curve"] = tuple((float(level), float(value)) for level, value in data.get("curve", ()))
    return Observation(**data)


class SavedState:
    """The saved-state half of :class:`~raysweep.searchers.ax.searcher.AxSearcher` (a mixin).

    Tune pickles searchers into its experiment state and ``Tuner.restore``
    unpickles them; both go through one JSON document (:meth:`_state`), so
    nothing unpicklable (torch models, Ax internals) is involved.
    """

    def save(self, checkpoint_path: str) -> None:
        """Write the searcher's full state to ``checkpoint_path`` (temp file, then ``os.replace``)."""
        write_json_atomically(self._state(), checkpoint_path)

    def restore(self, checkpoint_path: str) -> None:
        """Load the state :meth:`save` wrote; the space, metric and mode must match.

        Raises ValueError (or what reading the file raised) when it cannot.
        Tune does not pass that on: it logs it and starts the experiment over
        with this searcher as it was, so a failed restore also makes the
        searcher suggest nothing more (:meth:`suggest` returns FINISHED) and
        the run ends at once; raysweep then runs the phase's missing trials in
        a fresh Tune run from its staged rows.
        """
        try:
            self._restore(checkpoint_path)
        except BaseException:
            self._restore_failed = True
            raise

    def _restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path) as handle:
            state = json.load(handle)
        if state.get("format") != STATE_FORMAT:
            raise ValueError(f"{checkpoint_path} is not an AxSearcher checkpoint (format {state.get('format')!r})")
        saved = state["settings"]
        for key, ours in (("metric", self._metric), ("mode", self._mode)):
            if saved[key] != ours:
                raise ValueError(f"checkpoint {checkpoint_path} was saved for {key}={saved[key]!r}; this searcher has {ours!r}")
        saved_space = space_from_json(saved["space"])
        if [bounds_of(p) for p in saved_space] != [bounds_of(p) for p in self._space]:
            raise ValueError(
                f"checkpoint {checkpoint_path} was saved for another search space "
                f"({[bounds_of(p) for p in saved_space]}); this searcher has {[bounds_of(p) for p in self._space]}"
            )
        self._load_state(state)

    def __getstate__(self) -> dict[str, Any]:
        # Ray pickles searchers (Tuner.restore); go through the same JSON state
        # so that nothing unpicklable (torch models, Ax internals) is involved.
        return {"state": self._state()}

    def __setstate__(self, pickled: dict[str, Any]) -> None:
        state = pickled["state"]
        # a state an earlier raysweep saved in another format is refused, as restore() refuses it, so that
        # the phase continues in a fresh Tune run from its staged rows instead of from a misread state
        if state.get("format") != STATE_FORMAT:
            raise ValueError(f"a pickled AxSearcher of another raysweep (format {state.get('format')!r}, not {STATE_FORMAT!r})")
        self._load_state(state)


    def _state(self) -> dict[str, Any]:
        """What a restore needs: settings, counters, the observations and this
        phase's trials, GP hyperparameters. No Ax snapshot: Ax's experiment is
        rebuilt from these records (:meth:`_rebuild_ax`), which costs less than
        serialising it (at 1,000 observations about 0.1 s against 3 s and 2 MB)."""
        return {
            "format": STATE_FORMAT,
            "settings": {
                "space": space_to_json(self._space),
                "metric": self._metric,
                "mode": self._mode,
                "num_trials": self._num_trials,
                "random_samples": self._random_samples,
                "resample_every": self._resample_every,
                "max_suggestion_cost": self._max_suggestion_cost,
                "cost_field": self._cost_field,
                "box": None if self._box is None else self._box.to_dict(),
                "seed": self._seed,
                "outcome_key": self._outcome_key,
                "gpus_per_trial": self._gpus_per_trial,
                "hyperparameters_path": self._hyperparameters_path,
                "history_source": self._history_source,
                "fidelity_scale": None if self._scale is None else dataclasses.asdict(self._scale),
            },
            **self._history_state(),
            "history_ax_index": self._history_ax_index,
            "absorbed": sorted(self._absorbed),
            "trials": {trial_id: entry.to_json() for trial_id, entry in self._trials.items()},
            "suggested": self._suggested,
            "events": self._events,
            "random_drawn": self._random_drawn,
            "n_random": self._n_random,
            "phase": self._phase,
            "surrogate": None if self._surrogate is None else self._surrogate.hyperparameters(),
            "trust_region": None if self._region is None else self._region.to_dict(),
        }

    def _load_state(self, state: dict[str, Any]) -> None:
        from raysweep.searchers.ax.trials import TrialEntry  # it reads its own JSON with this module's helpers

        settings = state["settings"]
        space = space_from_json(settings["space"])
        Searcher.__init__(self, metric=settings["metric"], mode=settings["mode"])
        quiet_ax_logs()
        self._space = space
        self._num_trials = settings["num_trials"]
        self._random_samples = settings["random_samples"]
        self._resample_every = settings["resample_every"]
        self._max_suggestion_cost = settings["max_suggestion_cost"]
        self._cost_field = settings["cost_field"]
        self._box = None if settings["box"] is None else Box.from_dict(settings["box"])
        self._seed = settings["seed"]
        self._outcome_key = settings["outcome_key"]
        self._gpus_per_trial = settings["gpus_per_trial"]
        self._hyperparameters_path = settings.get("hyperparameters_path")
        self._codings = codings_for(space)
        self._history_source = settings.get("history_source")
        self._scale = None if settings.get("fidelity_scale") is None else FidelityScale(**settings["fidelity_scale"])
        self._restore_failed = False
        self._events = int(state.get("events", 0))
        self._history = self._history_from_state(state, space)
        self._history_ax_index = {k: int(v) for k, v in state["history_ax_index"].items()}
        self._absorbed = set(state.get("absorbed", ()))
        self._trials = {k: TrialEntry.from_json(v, space) for k, v in state["trials"].items()}
        self._suggested = int(state["suggested"])
        self._random_drawn = int(state["random_drawn"])
        self._n_random = int(state["n_random"])
        self._phase = int(state["phase"])
        self._surrogate = (
            AmortizedSurrogate.resumed(state["surrogate"], self._model_config()) if state.get("surrogate") else None
        )
        self._last_adapter = None
        self._region = TrustRegion.from_dict(space, state["trust_region"]) if state.get("trust_region") else None
        if self._region is not None:
            self._box = self._region.box
        self._rebuild_ax()
        self._gen_space, self._fixed, self._excluded = self._generation_space()
        self._note_boxes([trial_id for trial_id, entry in self._trials.items() if entry.observation is None])

    def _history_state(self) -> dict[str, Any]:
        """The history as the saved state holds it: trial ids when the run
        directory can give the observations back, else the observations."""
        if self._history_source is None:
            return {"history": [observation_to_json(o) for o in self._history]}
        return {
            "history_ids": [o.trial_id for o in self._history],
            "history_phases": sorted({o.phase for o in self._history}),
        }

    def _history_from_state(self, state: dict[str, Any], space: SearchSpace) -> list[Observation]:
        """The history observations of a saved state (read back from the run
        directory's Parquet results when the state holds only their ids).

        Raises ValueError naming the first trial id the results do not hold.
        """
        if "history" in state:
            return [observation_from_json(o, space) for o in state["history"]]
        from raysweep.sinks.parquet import ParquetSink

        sink = ParquetSink(self._history_source, space)
        found = {
            o.trial_id: o for o in sink.read_observations(state["history_phases"], include_staged=True)
        }
        missing = [trial_id for trial_id in state["history_ids"] if trial_id not in found]
        if missing:
            raise ValueError(
                f"the results in {self._history_source} hold no trial {missing[0]!r} "
                f"({len(missing)} of the searcher's {len(state['history_ids'])} history observations are missing)"
            )
        return [found[trial_id] for trial_id in state["history_ids"]]

    def _rebuild_ax(self) -> None:
        """Ax's experiment from the searcher's records: the history attached
        again, then this phase's suggestions and reports replayed in the order
        they happened (so Ax trial indices come out as they were), the pending
        trials left RUNNING."""
        self._client = self._new_client()
        self._points = {}
        history, self._history, self._history_ax_index = self._history, [], {}
        events: list[tuple[int, int, Any]] = []
        for entry in self._trials.values():
            events.append((entry.suggested_at, 0, entry))
            if entry.observation is not None:
                events.append((entry.reported_at if entry.reported_at is not None else entry.suggested_at, 1, entry))
        with quiet():
            self._attach_history(history)
            for _, kind, entry in sorted(events, key=lambda event: (event[0], event[1], event[2].position)):
                if kind == 0:
                    entry.ax_index = self._client.attach_trial(parameters=self._to_ax(entry.params))
                else:
                    self._report_to_ax([(entry.ax_index, entry.observation, "failed")])
