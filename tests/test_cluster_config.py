"""cluster.yaml, checked offline: Ray's own preparation and schema, then raysweep's rules.

``ray up`` runs ``prepare_config`` (merge with the AWS defaults file, fill in
per-type worker counts), then asks AWS for instance details, then
``validate_config`` (Ray's JSON schema and cross-field rules), then bootstraps
AWS resources. The two steps used here read only files shipped with Ray; the
AWS steps are never imported, and the network is cut off while they run.
"""

from __future__ import annotations

import copy
import re
import shutil
import socket
import subprocess
import tomllib
from typing import Any, Callable

import jsonschema
import pytest
import ray
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

from tests.conftest import ROOT

CLUSTER_FILE = ROOT / "cluster.yaml"

LOOPBACK = {"127.0.0.1", "localhost", "::1"}
WORLD = {"0.0.0.0/0", "::/0"}
DASHBOARD_PORT = 8265
START_COMMANDS = ("head_start_ray_commands", "worker_start_ray_commands")
SETUP_COMMANDS = ("initialization_commands", "setup_commands", "head_setup_commands", "worker_setup_commands")

# A literal value after WANDB_API_KEY= (a "$..." reference to the environment is fine).
_KEY_LITERAL = re.compile(r"""WANDB_API_KEY\s*[=:]\s*(?!["']?\$)["']?[A-Za-z0-9_\-]""")
_AWS_ACCESS_KEY_ID = re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b")
_DASHBOARD_HOST = re.compile(r"--dashboard-host[= ]+['\"]?([^\s'\";]+)")


@pytest.fixture
def offline(monkeypatch):
    """Any attempt to open a network connection fails the test."""

    def refuse(*args: Any, **kwargs: Any):
        raise AssertionError(f"cluster config checks tried to reach the network: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


def raw_text() -> str:
    return CLUSTER_FILE.read_text()


def raw_config() -> dict:
    return yaml.safe_load(raw_text())


def ray_checked(config: dict) -> dict:
    """What ``ray up`` makes of the file before it talks to AWS; raises where Ray would."""
    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    return prepared


# ----------------------------------------------------------------------------------------
# raysweep's rules: each returns the problems it finds, [] when the config keeps it
# ----------------------------------------------------------------------------------------
def _commands(config: dict, keys: tuple[str, ...]) -> list[str]:
    found = [command for key in keys for command in config.get(key) or []]
    for node_type in config.get("available_node_types", {}).values():
        for key in ("initialization_commands", "worker_setup_commands"):
            found += node_type.get(key) or []
    return found


def secret_literals(text: str) -> list[str]:
    problems = [f"a W&B key written in the file: {m.group(0)!r}..." for m in _KEY_LITERAL.finditer(text)]
    if re.search(r"aws_secret", text, re.IGNORECASE):
        problems.append("an AWS secret key named in the file (aws_secret...)")
    if _AWS_ACCESS_KEY_ID.search(text):
        problems.append("an AWS access key id written in the file")
    return problems


def dashboard_exposure(config: dict) -> list[str]:
    problems = []
    for command in _commands(config, START_COMMANDS):
        for host in _DASHBOARD_HOST.findall(command):
            if host not in LOOPBACK:
                problems.append(f"dashboard bound to {host} (must stay on loopback): {command}")
        if "0.0.0.0" in command:
            problems.append(f"a start command binds to 0.0.0.0: {command}")
    rules = ((config.get("provider") or {}).get("security_group") or {}).get("IpPermissions") or []
    for rule in rules:
        sources = {r.get("CidrIp") for r in rule.get("IpRanges", [])} | {r.get("CidrIpv6") for r in rule.get("Ipv6Ranges", [])}
        if sources & WORLD:
            low, high = rule.get("FromPort", -1), rule.get("ToPort", -1)
            opens_dashboard = low == -1 or low <= DASHBOARD_PORT <= high
            what = "the dashboard port 8265" if opens_dashboard else f"ports {low}-{high}"
            problems.append(f"the security group opens {what} to the world")
    return problems


def head_takes_trials(config: dict) -> list[str]:
    head = config["available_node_types"][config["head_node_type"]]
    # `resources: {}` is not enough: on AWS, Ray fills in the instance's vCPUs, and trials land there.
    problems = []
    if head.get("resources", {}).get("CPU") != 0:
        problems.append(f"the head node type declares CPUs for trials: resources={head.get('resources')}")
    if head.get("resources", {}).get("GPU", 0) != 0:
        problems.append("the head node type declares GPUs")
    for command in config.get("head_start_ray_commands") or []:
        if "ray start" in command and "--num-cpus=0" not in command:
            problems.append(f"the head's ray start does not say --num-cpus=0: {command}")
    return problems


def gpu_workers_without_gpus(config: dict) -> list[str]:
    workers = {name: t for name, t in config["available_node_types"].items() if name != config["head_node_type"]}
    problems = [f"worker type {name} declares no GPU: resources={t.get('resources')}"
                for name, t in workers.items() if t.get("resources", {}).get("GPU", 0) < 1]
    problems += [f"worker type {name} keeps workers alive when idle: min_workers={t.get('min_workers')}"
                 for name, t in workers.items() if t.get("min_workers", 0) != 0]
    if not workers:
        problems.append("no worker node types")
    return problems


def install_problems(config: dict) -> list[str]:
    setup = " && ".join(_commands(config, SETUP_COMMANDS))
    problems = []
    if re.search(r"torch==\S*|download\.pytorch\.org/whl/cpu|\+cpu", setup):
        problems.append("setup installs the CPU-only torch build on GPU nodes")
    if not re.search(r"pip install\b[^&|;]*\s-e\s+~/raysweep\b", setup):
        problems.append("setup does not install the synced project (pip install -e ~/raysweep)")
    pinned = re.findall(r"ray\[[\w,]+\]==([\w.]+)", setup)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    wanted = {re.match(r"ray\[[\w,]+\]==([\w.]+)", d).group(1) for d in project if d.startswith("ray[")}  # type: ignore[union-attr]
    if set(pinned) != wanted:
        problems.append(f"setup pins ray {sorted(set(pinned))}, the project pins {sorted(wanted)}")
    return problems


def wandb_secret_problems(config: dict) -> list[str]:
    settings = (config.get("metadata") or {}).get("settings") or {}
    setup = " ".join(config.get("head_setup_commands") or [])
    problems = []
    for key in ("wandb_secret_id", "wandb_secret_region"):
        if not settings.get(key):
            problems.append(f"metadata.settings.{key} is not set")
        elif f'"{settings[key]}"' not in setup:
            problems.append(f"head_setup_commands do not read the secret with {key} {settings[key]!r}")
    if settings.get("wandb_secret_region") != config["provider"].get("region"):
        problems.append(f"the W&B secret's region {settings.get('wandb_secret_region')!r} is not the cluster's")
    return problems


RULES: list[Callable[[dict], list[str]]] = [
    dashboard_exposure, head_takes_trials, gpu_workers_without_gpus, install_problems, wandb_secret_problems,
]


def all_problems(config: dict, text: str) -> list[str]:
    return secret_literals(text) + [problem for rule in RULES for problem in rule(config)]


# ----------------------------------------------------------------------------------------
# the file as it is
# ----------------------------------------------------------------------------------------
def test_cluster_yaml_passes_rays_own_preparation_and_schema(offline):
    prepared = ray_checked(raw_config())
    assert prepared["provider"]["type"] == "aws"
    assert set(prepared["available_node_types"]) == {"head", "gpu_1x", "gpu_4x"}
    assert prepared["available_node_types"]["head"]["max_workers"] == 0  # filled in by prepare_config


def test_cluster_yaml_keeps_raysweeps_rules():
    config = ray_checked(raw_config())
    assert all_problems(config, raw_text()) == []


def test_settings_at_the_top_drive_the_node_types():
    config = raw_config()
    settings = config["metadata"]["settings"]
    types = config["available_node_types"]
    assert config["provider"]["region"] == settings["region"]
    assert types["head"]["node_config"]["InstanceType"] == settings["head_instance_type"]
    assert types["gpu_1x"]["node_config"]["InstanceType"] == settings["gpu_1x_instance_type"]
    assert types["gpu_4x"]["node_config"]["InstanceType"] == settings["gpu_4x_instance_type"]
    assert types["gpu_1x"]["resources"]["GPU"] == 1 and types["gpu_4x"]["resources"]["GPU"] == 4
    assert 0 < types["gpu_1x"]["max_workers"] + types["gpu_4x"]["max_workers"] and config["max_workers"] >= 1
    # the settings block comes before anything it feeds
    text = raw_text()
    assert text.index("metadata:") < text.index("provider:") < text.index("available_node_types:")


def test_the_installed_ray_is_the_one_the_cluster_gets():
    pinned = re.findall(r"ray\[[\w,]+\]==([\w.]+)", " ".join(raw_config()["setup_commands"]))
    assert pinned == [ray.__version__]


# ----------------------------------------------------------------------------------------
# broken edits are caught
# ----------------------------------------------------------------------------------------
def _edit(config: dict, path: str, value: Any) -> None:
    *parents, last = path.split(".")
    node = config
    for part in parents:
        node = node[part]
    node[last] = value


RAY_REJECTS = [
    pytest.param(lambda c: c.update(max_worker=4), jsonschema.ValidationError, r"'max_worker' was unexpected", id="unknown-top-level-key"),
    pytest.param(lambda c: _edit(c, "available_node_types.gpu_1x.min_worker", 0), jsonschema.ValidationError,
                 r"'min_worker' was unexpected", id="unknown-node-type-key"),
    pytest.param(lambda c: _edit(c, "max_workers", "six"), jsonschema.ValidationError, r"'six' is not of type 'integer'",
                 id="wrong-type"),
    pytest.param(lambda c: _edit(c, "available_node_types.gpu_4x.resources", {"CPU": 48, "GPU": 0.5}), jsonschema.ValidationError,
                 r"0.5 is not of type 'integer'", id="fractional-gpu-resource"),
    pytest.param(lambda c: _edit(c, "head_node_type", "cpu_head"), ValueError,
                 r"`head_node_type` must be one of `available_node_types`", id="missing-node-type"),
    pytest.param(lambda c: _edit(c, "available_node_types.gpu_4x.min_workers", 99), ValueError,
                 r"smaller than the sum of `min_workers`", id="min-workers-over-max"),
    pytest.param(lambda c: c["available_node_types"]["gpu_1x"].pop("node_config"), jsonschema.ValidationError,
                 r"'node_config' is a required property", id="node-type-without-node-config"),
]


@pytest.mark.parametrize("edit, error, match", RAY_REJECTS)
def test_ray_rejects_a_broken_edit(offline, edit, error, match):
    config = raw_config()
    edit(config)
    with pytest.raises(error, match=match):
        ray_checked(config)


def _head_start(command: str) -> Callable[[dict], None]:
    return lambda c: c["head_start_ray_commands"].__setitem__(-1, command)


RULE_VIOLATIONS = [
    pytest.param(_head_start("ray start --head --port=6379 --num-cpus=0 --dashboard-host=0.0.0.0"),
                 "dashboard bound to 0.0.0.0", id="dashboard-on-all-interfaces"),
    pytest.param(lambda c: _edit(c, "provider.security_group.IpPermissions",
                                 [{"FromPort": 8265, "ToPort": 8265, "IpProtocol": "tcp", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}]),
                 "opens the dashboard port 8265 to the world", id="public-8265"),
    pytest.param(lambda c: _edit(c, "available_node_types.head.resources", {}), "declares CPUs for trials", id="head-autodetects-cpus"),
    pytest.param(_head_start("ray start --head --port=6379 --dashboard-host=127.0.0.1"), "does not say --num-cpus=0",
                 id="head-start-without-num-cpus"),
    pytest.param(lambda c: _edit(c, "available_node_types.gpu_1x.resources", {"CPU": 4}), "worker type gpu_1x declares no GPU",
                 id="gpu-type-without-gpu"),
    pytest.param(lambda c: c["setup_commands"].append("sed -i s/x/y/ ~/.bashrc; export WANDB_API_KEY=0123abcd"),
                 "a W&B key written in the file", id="literal-wandb-key"),
    pytest.param(lambda c: c["provider"].update(aws_secret_access_key="x"), "an AWS secret key named", id="aws-secret"),
    pytest.param(lambda c: c["setup_commands"].insert(0, "pip install torch==2.13.0"), "CPU-only torch", id="cpu-torch"),
    pytest.param(lambda c: c.update(setup_commands=[s.replace("ray[default]==", "ray[default]==0.") for s in c["setup_commands"]]),
                 "setup pins ray", id="ray-pin-drift"),
    pytest.param(lambda c: _edit(c, "metadata.settings.wandb_secret_region", "eu-west-1"), "do not read the secret",
                 id="secret-region-drift"),
]


@pytest.mark.parametrize("edit, problem", RULE_VIOLATIONS)
def test_raysweeps_rules_catch_a_broken_edit(edit, problem):
    config = raw_config()
    edit(config)
    config = ray_checked(config)  # still a config Ray would accept ...
    problems = all_problems(config, yaml.safe_dump(config))
    assert any(problem in p for p in problems), problems  # ... but not one raysweep should run on


def test_the_key_rule_lets_environment_references_through():
    assert secret_literals('export WANDB_API_KEY="$(cat ~/.k)"; WANDB_API_KEY=$WANDB_API_KEY') == []
    assert secret_literals("WANDB_API_KEY: 'abc'") and secret_literals("WANDB_API_KEY=abc")


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash to parse the commands")
def test_every_command_parses_as_shell():
    # Folded YAML scalars join lines: a misplaced line break turns into a broken command on a node.
    config = ray_checked(raw_config())
    keys = SETUP_COMMANDS + START_COMMANDS
    for command in _commands(config, keys):
        parsed = subprocess.run(["bash", "-n", "-c", command], capture_output=True, text=True)
        assert parsed.returncode == 0, f"{command}\n{parsed.stderr}"
