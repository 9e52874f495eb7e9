"""Whether Tune's saved state of an interrupted phase can be restored (raysweep.resuming)."""

from __future__ import annotations

import json

import ray.cloudpickle as cloudpickle

from raysweep.resuming import unrestorable_reason


def tune_state(path, searcher_bytes: bytes) -> None:
    path.mkdir()
    (path / "experiment_state-2026.json").write_text(json.dumps({"trial_data": [["{}", "{}"]]}))
    (path / "tuner.pkl").write_bytes(cloudpickle.dumps({"tuner": 1}))
    (path / "searcher-state-2026.pkl").write_bytes(searcher_bytes)


def test_a_searcher_that_saves_itself_as_json_is_restorable(tmp_path):
    tune_state(tmp_path / "ax", json.dumps({"format": "raysweep.AxSearcher/2", "settings": {}}).encode())
    assert unrestorable_reason(tmp_path / "ax") is None
    tune_state(tmp_path / "pickled", cloudpickle.dumps({"searcher": 1}))
    assert unrestorable_reason(tmp_path / "pickled") is None


def test_a_cut_short_searcher_state_is_not_restorable(tmp_path):
    tune_state(tmp_path / "cut", b'{"format": "raysweep.AxSearcher/2", "sett')
    assert unrestorable_reason(tmp_path / "cut").startswith("JSONDecodeError: ")
    tune_state(tmp_path / "other", b"{}")
    assert unrestorable_reason(tmp_path / "other") == "searcher-state-2026.pkl holds no searcher state"
    assert unrestorable_reason(tmp_path / "missing") == "Tune saved no experiment state"
