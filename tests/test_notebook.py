"""``notebooks/analyze_sweep.ipynb`` runs top to bottom on a real run directory."""

from __future__ import annotations

from pathlib import Path

import nbclient
import nbformat
import pytest
import yaml

from raysweep import sweep
from raysweep.spec import load_experiment
from tests.conftest import ROOT, synthetic_experiment

NOTEBOOK = ROOT / "notebooks" / "analyze_sweep.ipynb"
FIGURE_CELLS = ("best-so-far", "pareto", "parameters", "status")


@pytest.fixture(scope="module")
def run_dir(ray_local, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("notebook")
    data = synthetic_experiment(
        name="notebook_sweep",
        budget=6,
        storage=str(root / "run"),
        parameters={
            "x": {"distribution": "uniform", "min": 0.0, "max": 1.0},
            "lr": {"distribution": "log_uniform", "min": 1e-4, "max": 1e-2},
            "fail": {"distribution": "choice", "values": ["no", "raise"]},
        },
        phases=[{"name": "explore", "searcher": "random", "share": 1.0, "max_trial_time": "30s"}],
    )
    path = root / "exp.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return sweep.run(load_experiment(path)).run_dir


def test_notebook_is_committed_without_outputs():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.execution_count is None and cell.outputs == [], cell.id


def test_notebook_runs_on_a_run_directory(run_dir, monkeypatch):
    monkeypatch.setenv("RAYSWEEP_RUN_DIR", str(run_dir))
    monkeypatch.setenv("PYTHONPATH", str(ROOT))  # the kernel imports raysweep from this checkout
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        notebook, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK.parent)}}
    )
    client.execute()  # raises CellExecutionError on the first failing cell

    cells = {cell.id: cell for cell in notebook.cells}
    errors = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert errors == []
    assert str(run_dir) in "".join(o.get("text", "") for o in cells["load"].outputs)
    for cell_id in FIGURE_CELLS:
        kinds = [set(o.get("data", {})) for o in cells[cell_id].outputs]
        assert any("image/png" in k for k in kinds), f"cell {cell_id} showed no figure"
    top = [o for o in cells["top-configs"].outputs if o.output_type == "execute_result"]
    assert top and "text/html" in top[0]["data"]
