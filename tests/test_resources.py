"""Per-trial resources no node could ever give are refused before a phase starts."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from raysweep.errors import SpecError
from raysweep.resources import check_feasible
from raysweep.spec import Resources
from tests.conftest import ROOT, synthetic_experiment

TWO_CPUS = [{"CPU": 2.0, "memory": 1e9}]


@pytest.mark.parametrize(
    "request_, nodes, message",
    [
        ({"cpu": 1, "gpu": 1}, TWO_CPUS,
         r"^resources\.gpu: each trial asks for 1 GPU but no node of the Ray cluster has that many; got 1$"),
        ({"cpu": 64}, TWO_CPUS,
         r"^resources\.cpu: each trial asks for 64 CPUs but no node of the Ray cluster has that many; got 64$"),
        ({"cpu": 0.5, "gpu": 0.5}, TWO_CPUS,
         r"^resources\.gpu: each trial asks for 0\.5 GPU but no node .* got 0\.5$"),
        ({"cpu": 4, "gpu": 1}, [{"CPU": 8.0}, {"CPU": 1.0, "GPU": 1.0}],
         r"^resources: each trial asks for 4 CPUs and 1 GPU on one node but no node of the Ray cluster has both; "
         r"got \{'cpu': 4, 'gpu': 1\}$"),
    ],
)
def test_a_request_no_node_can_hold_names_the_field_the_rule_and_the_value(request_, nodes, message):
    with pytest.raises(SpecError, match=message):
        check_feasible(Resources(**request_), nodes)


def test_a_request_some_node_or_autoscaler_node_type_can_hold_passes():
    check_feasible(Resources(cpu=2, gpu=0), TWO_CPUS)
    # a GPU node type the autoscaler may start counts as much as a live node
    check_feasible(Resources(cpu=1, gpu=4), [{"CPU": 2.0}, {"CPU": 16.0, "GPU": 4.0}])


@pytest.mark.timeout(180)
@pytest.mark.parametrize("override", ["resources.gpu=1", "resources.cpu=64"])
def test_the_cli_refuses_before_writing_anything(tmp_path, override):
    data = synthetic_experiment(storage=str(tmp_path / "run"))
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    done = subprocess.run(
        [sys.executable, "-m", "raysweep", "run", str(path), "--num-cpus", "2", "--set", override],
        cwd=ROOT, capture_output=True, text=True, timeout=150,
    )
    assert done.returncode == 2, done.stderr[-3000:]
    field, value = override.split("=")
    unit = "1 GPU" if field.endswith("gpu") else "64 CPUs"
    assert done.stderr.strip().splitlines()[-1] == (
        f"raysweep: error: {field}: each trial asks for {unit} but no node of the Ray cluster has that many; got {value}"
    )
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "run").exists()  # no run directory, no lock
