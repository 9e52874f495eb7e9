"""Whether Tune's saved state of an interrupted phase can be restored (raysweep.resuming)."""

from __future__ import annotations

import json

import ray.cloudpickle as cloudpickle

from raysweep.resuming import unrestorable_reason
from raysweep.searchers.ax.state import STATE_FORMAT


def tune_state(path, searcher_bytes: bytes) -> None:
    path.mkdir()
    (path / "experiment_state-2026.json").write_text(json.dumps({"trial_data": [["{}", "{}"]]}))
    (path / "tuner.pkl").write_bytes(cloudpickle.dumps({"tuner": 1}))
    (path / "searcher-state-2026.pkl").write_bytes(searcher_bytes)


def test_a_searcher_that_saves_itself_as_json_is_restorable(tmp_path):
    tune_state(tmp_path / "ax", json.dumps({"format": STATE_FORMAT, "settings": {}}).encode())
    assert unrestorable_reason(tmp_path / "ax") is None
    tune_state(tmp_path / "pickled", cloudpickle.dumps({"searcher": 1}))
    assert unrestorable_reason(tmp_path / "pickled") is None


def test_a_cut_short_searcher_state_is_not_restorable(tmp_path):
    tune_state(tmp_path / "cut", b'{"format": "raysweep.AxSearcher/2", "sett')
    assert unrestorable_reason(tmp_path / "cut").startswith("JSONDecodeError: ")
    tune_state(tmp_path / "other", b"{}")
    assert unrestorable_reason(tmp_path / "other") == "searcher-state-2026.pkl holds no searcher state"
    assert unrestorable_reason(tmp_path / "missing") == "Tune saved no experiment state"


def test_a_searcher_state_an_earlier_raysweep_saved_is_not_restorable(tmp_path):
    # Tune would log the searcher's refusal and start the phase over instead of raising it
    tune_state(tmp_path / "old", json.dumps({"format": "raysweep.AxSearcher/2", "settings": {}}).encode())
    assert unrestorable_reason(tmp_path / "old") == (
        f"searcher-state-2026.pkl was saved by another raysweep (format 'raysweep.AxSearcher/2', not {STATE_FORMAT!r})"
    )
