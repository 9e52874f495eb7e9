"""The command line: what is checked before anything is written, and what each command imports."""

import json
import os
import subprocess
import sys

import pandas as pd
import pytest

from tests.conftest import ROOT, synthetic_experiment

HEAVY = ("ray", "torch", "ax", "botorch")


def _cli(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "raysweep", *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def _one_error_line(proc) -> str:
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    return lines[0]


def _heavy_modules_after(argv: list[str], cwd=ROOT) -> list[str]:
    """Run the CLI in a fresh interpreter; the heavy packages it imported."""
    code = (
        "import json, sys\n"
        "from raysweep.cli import main\n"
        "try:\n"
        f"    main({argv!r})\n"
        "except SystemExit:\n"
        "    pass\n"
        f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & set({list(HEAVY)!r}))))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _state(**changes) -> dict:
    state = {
        "sweep": "s", "metric": "score", "mode": "max",
        "parameters": {"x": {"distribution": "uniform", "min": 0.0, "max": 1.0}},
        "phases": [{"index": 1, "name": "explore", "searcher": "grid", "status": "done", "trials_planned": 1, "trials_done": 1}],
        "created_at": 0.0, "format": 1,
    }
    state.update(changes)
    return state


@pytest.mark.parametrize("argv", [["--help"], ["run", "--help"], ["validate", "--help"], ["status", "--help"], ["report", "--help"]])
def test_help_imports_no_ray_ax_or_torch(argv):
    assert _heavy_modules_after(argv) == []


def test_status_imports_no_ray_ax_or_torch(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "state.json").write_text(json.dumps(_state()))
    assert _heavy_modules_after(["status", str(run_dir)]) == []


def test_report_module_imports_no_ray_ax_or_torch():
    code = "import sys, raysweep.report; print(sorted({m.split('.')[0] for m in sys.modules} & %r))" % (set(HEAVY),)
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


@pytest.mark.parametrize(
    "phase, message",
    [
        ("abc", "raysweep: error: argument --phase: must be a phase number counted from 1 (as status prints it); got 'abc' "
                "(see python -m raysweep run --help)"),
        ("0", "raysweep: error: argument --phase: must be a phase number counted from 1 (as status prints it); got '0' "
              "(see python -m raysweep run --help)"),
        ("99", "raysweep: error: --phase: the experiment has 1 phase (1 explore); got 99"),
    ],
)
def test_bad_phase_exits_2_before_the_run_directory_or_lock_exists(write_experiment, tmp_path, phase, message):
    path = write_experiment(synthetic_experiment())
    proc = _cli("run", str(path), "--phase", phase)
    assert _one_error_line(proc) == message
    assert not (tmp_path / "run").exists()  # neither the run directory nor its .lock


def test_set_value_that_is_not_yaml_exits_2_and_writes_nothing(write_experiment, tmp_path):
    path = write_experiment(synthetic_experiment())
    line = _one_error_line(_cli("run", str(path), "--set", "budget=[8"))
    assert line.startswith("raysweep: error: --set budget: not valid YAML (")
    assert not (tmp_path / "run").exists()


def test_old_bracket_phase_form_is_refused_with_the_forms_that_work(write_experiment):
    path = write_experiment(synthetic_experiment())
    line = _one_error_line(_cli("validate", str(path), "--set", "phases[0].max_trial_time=2h"))
    assert line == ("raysweep: error: --set phases[0].max_trial_time: address a phase by name or by its number counted "
                    "from 1, as --phase does, not by [index] (phases[0] would be phases.explore or phases.1); phases: 1 explore")


def test_storage_under_a_regular_file_is_refused_by_validate_and_run(write_experiment, tmp_path):
    blocker = tmp_path / "afile"
    blocker.write_text("not a directory")
    path = write_experiment(synthetic_experiment(storage=str(blocker / "run")))
    for command in ("validate", "run"):
        line = _one_error_line(_cli(command, str(path)))
        assert line == (f"raysweep: error: storage: the run directory cannot be written ({blocker} is a file, so no "
                        f"directory can be made under it); got '{blocker / 'run'}'")
    assert blocker.read_text() == "not a directory"


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into a directory without write permission")
def test_storage_in_a_read_only_directory_is_refused(write_experiment, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        path = write_experiment(synthetic_experiment(storage=str(locked / "run")))
        line = _one_error_line(_cli("validate", str(path)))
        assert line == (f"raysweep: error: storage: the run directory cannot be written ({locked} is not writable by this "
                        f"user); got '{locked / 'run'}'")
        assert not (locked / "run").exists()
    finally:
        locked.chmod(0o755)


@pytest.mark.parametrize(
    "body, reason",
    [
        ("exit", "importing module 'cli_exits_on_import' called sys.exit(0); guard its script code with "
                 "`if __name__ == \"__main__\":`"),
        ("raise", "cannot import module 'cli_exits_on_import' (ImportError: needs a GPU)"),
    ],
)
def test_trainable_that_exits_or_raises_on_import(tmp_path, body, reason):
    (tmp_path / "cli_exits_on_import.py").write_text(
        "import sys\nsys.exit(0)\n" if body == "exit" else "raise ImportError('needs a GPU')\n"
    )
    path = tmp_path / "exp.yaml"
    data = synthetic_experiment(trainable="cli_exits_on_import:train", storage=str(tmp_path / "run"))
    import yaml

    path.write_text(yaml.safe_dump(data))
    for command in ("validate", "run"):
        line = _one_error_line(_cli(command, str(path), cwd=tmp_path))
        assert line == f"raysweep: error: trainable: {reason}; got 'cli_exits_on_import:train'"
    assert not (tmp_path / "run").exists()


CORRUPT_STATES = {
    "null": (b"null", "is not a raysweep state file (it holds null, not a JSON object)"),
    "wrong type": (json.dumps(_state(phases="explore")).encode(), "is not a raysweep state file (phases: input should be a valid list; got 'explore')"),
    "wrong nested type": (json.dumps(_state(phases=[{"index": "one", "name": "a", "searcher": "grid"}])).encode(),
                          "is not a raysweep state file (phases.0.index: input should be a valid integer"),
    "not utf-8": (b'{"sweep": "\xff"}', "is not a raysweep state file (not UTF-8: byte 0xff at offset 11)"),
    "truncated": (json.dumps(_state()).encode()[:50], "is not a raysweep state file (not JSON, or cut short: "),
    "bad parameters": (json.dumps(_state(parameters={"x": {"distribution": "uniform", "min": "a"}})).encode(),
                       "is not a raysweep state file (parameters: "),
}


def _run_dir_with_trials(tmp_path):
    run_dir = tmp_path / "run"
    part = run_dir / "results" / "trials" / "phase=1"
    part.mkdir(parents=True)
    pd.DataFrame({"sweep": ["s"], "phase_name": ["explore"], "trial_id": ["t1"], "status": ["completed"],
                  "objective": [1.0], "cost_s": [1.0], "gpu_s": [0.0], "param.x": [0.5]}).to_parquet(part / "part-0.parquet")
    return run_dir


@pytest.mark.parametrize("label", list(CORRUPT_STATES))
def test_status_and_report_on_a_damaged_state_file_exit_2_naming_it(tmp_path, label):
    content, reason = CORRUPT_STATES[label]
    run_dir = _run_dir_with_trials(tmp_path)
    (run_dir / "state.json").write_bytes(content)
    commands = ["status", "report"] if label != "bad parameters" else ["status"]
    for command in commands:
        line = _one_error_line(_cli(command, str(run_dir)))
        assert line.startswith(f"raysweep: error: {run_dir / 'state.json'} {reason}"), line
    assert not (run_dir / "report").exists()


def test_status_on_a_damaged_parquet_file_exits_2_naming_it(tmp_path):
    run_dir = _run_dir_with_trials(tmp_path)
    (run_dir / "state.json").write_text(json.dumps(_state()))
    assert _cli("status", str(run_dir)).returncode == 0
    damaged = run_dir / "results" / "trials" / "phase=1" / "part-0.parquet"
    damaged.write_bytes(damaged.read_bytes()[:40])
    for command in ("status", "report"):
        line = _one_error_line(_cli(command, str(run_dir)))
        assert line.startswith(f"raysweep: error: cannot read {damaged} ("), line


def test_status_shows_cost_in_the_unit_that_fits_and_trials_on_the_narrowed_box_edges(tmp_path):
    run_dir = tmp_path / "run"
    box = {"ranges": {"x": [0.2, 0.6], "lr": [1e-4, 1e-2]}, "choices": {}}
    parameters = {"x": {"distribution": "uniform", "min": 0.0, "max": 1.0},
                  "lr": {"distribution": "log_uniform", "min": 1e-5, "max": 1e-1}}
    phases = [
        {"index": 1, "name": "explore", "searcher": "grid", "status": "done", "trials_planned": 2, "trials_done": 2},
        {"index": 2, "name": "refine", "searcher": "ax", "status": "done", "trials_planned": 4, "trials_done": 4, "box": box},
    ]
    for phase, rows in ((1, {"cost_s": [1.0, 2.5], "gpu_s": [0.0, 0.0], "x": [0.1, 0.9], "lr": [1e-3, 1e-3]}),
                        (2, {"cost_s": [3000.0, 3000.0, 3000.0, 3000.0], "gpu_s": [6000.0] * 4,
                             "x": [0.6, 0.599, 0.4, 0.2], "lr": [1e-2, 1e-3, 1e-3, 1e-3]})):
        part = run_dir / "results" / "trials" / f"phase={phase}"
        part.mkdir(parents=True)
        count = len(rows["x"])
        pd.DataFrame({"sweep": ["s"] * count, "phase_name": [phases[phase - 1]["name"]] * count,
                      "trial_id": [f"t{phase}{i}" for i in range(count)], "status": ["completed"] * count,
                      "objective": [1.0] * count, "cost_s": rows["cost_s"], "gpu_s": rows["gpu_s"],
                      "param.x": rows["x"], "param.lr": rows["lr"]}).to_parquet(part / "part-0.parquet")
    (run_dir / "state.json").write_text(json.dumps(_state(parameters=parameters, phases=phases)))
    proc = _cli("status", str(run_dir))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[1] == "  phase 1 explore    done     2/2 done, best 1, cost 3.5 s [completed 2]"
    assert lines[2] == "  phase 2 refine     done     4/4 done, best 1, cost 3.33 h (6.67 GPU-h) [completed 4]"
    assert lines[3].startswith("      narrowed box: ")
    assert lines[4] == "      box edges: x lower 1/4, x upper 2/4, lr upper 1/4"


def test_status_shows_how_a_narrowed_box_moved_and_edges_against_each_trial_s_own_box(tmp_path):
    run_dir = tmp_path / "run"
    first = {"ranges": {"x": [0.2, 0.3], "lr": [1e-4, 1e-2]}, "choices": {}}
    grown = {"ranges": {"x": [0.2, 0.45], "lr": [1e-4, 1e-2]}, "choices": {}}
    parameters = {"x": {"distribution": "uniform", "min": 0.0, "max": 1.0},
                  "lr": {"distribution": "log_uniform", "min": 1e-4, "max": 1e-2}}
    phases = [{"index": 1, "name": "follow", "searcher": "ax", "status": "done", "trials_planned": 3, "trials_done": 3,
               "box": first, "final_box": grown, "box_moves": {"growths": 2, "shrinks": 0}}]
    part = run_dir / "results" / "trials" / "phase=1"
    part.mkdir(parents=True)
    # 0.3 is the upper edge of the first box, not of the grown one; 0.45 is the grown box's upper edge
    pd.DataFrame({"sweep": ["s"] * 3, "phase_name": ["follow"] * 3, "trial_id": ["a", "b", "c"],
                  "status": ["completed"] * 3, "objective": [1.0, 2.0, 3.0], "cost_s": [1.0] * 3, "gpu_s": [0.0] * 3,
                  "param.x": [0.3, 0.3, 0.45], "param.lr": [1e-3] * 3, "started_at": [1.0, 2.0, 3.0],
                  "narrow_box": [json.dumps(first), json.dumps(grown), json.dumps(grown)]}).to_parquet(part / "part-0.parquet")
    (run_dir / "state.json").write_text(json.dumps(_state(parameters=parameters, phases=phases)))
    proc = _cli("status", str(run_dir))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[2] == "      narrowed box: " + json.dumps(first)
    assert lines[3] == "      box edges: x upper 2/3"
    assert lines[4] == "      box moved: x [0.2, 0.3] -> [0.2, 0.45]; 2 growths, 0 shrinks"

    # a phase still running has no final box yet: its latest trial's box stands in, without counts
    phases[0].update(status="running", final_box=None, box_moves=None)
    (run_dir / "state.json").write_text(json.dumps(_state(parameters=parameters, phases=phases)))
    assert _cli("status", str(run_dir)).stdout.splitlines()[4] == "      box moved: x [0.2, 0.3] -> [0.2, 0.45]"


def test_an_address_nothing_listens_on_is_refused_at_once(write_experiment, tmp_path):
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again when the block ends: nothing listens there
    path = write_experiment(synthetic_experiment())
    line = _one_error_line(_cli("run", str(path), "--address", f"127.0.0.1:{port}"))
    assert line.startswith(f"raysweep: error: --address: no Ray cluster answers at 127.0.0.1:{port} (")
    assert not (tmp_path / "run").exists()


def test_num_cpus_must_be_positive():
    assert _one_error_line(_cli("run", "--num-cpus", "0")) == (
        "raysweep: error: argument --num-cpus: must be a whole number > 0; got '0' (see python -m raysweep run --help)"
    )


def test_status_into_a_closed_pipe_ends_quietly(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    long_plan = "grid " * 100_000  # more than a pipe holds, so the writer meets the closed end
    phase = {"index": 1, "name": "explore", "searcher": "grid", "status": "done", "trials_planned": 1, "plan": long_plan}
    (run_dir / "state.json").write_text(json.dumps(_state(phases=[phase])))
    proc = subprocess.run(f"{sys.executable} -m raysweep status --json {run_dir} | head -c 10", shell=True, cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert "Traceback" not in proc.stderr and proc.stdout.startswith("{")
