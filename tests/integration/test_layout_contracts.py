"""The layout's import contracts (``make check`` runs ``lint-imports``) hold on the tree and
catch an import against them: a copy of the tree with one bad import fails the check and
names the contract."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("protocol", "edge", "cloud", "firmware_sim", "provisioning")
LINT = Path(sys.executable).parent / "lint-imports"


def _tree(tmp_path: Path) -> Path:
    for package in PACKAGES:
        shutil.copytree(
            ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def _lint(tree: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(tree), "COLUMNS": "300"}  # one line a contract
    return subprocess.run(
        [str(LINT), "--no-cache"], cwd=tree, env=env, capture_output=True, text=True, check=False
    )


def _append(path: Path, line: str) -> None:
    path.write_text(path.read_text() + f"\n{line}  # noqa\n")


def test_the_tree_keeps_every_contract(tmp_path: Path) -> None:
    result = _lint(_tree(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "bad_import", "contract"),
    [
        # the fleet asks the gym through cloud/fleet/ports.py, never by importing it
        ("cloud/fleet/rules.py", "from cloud.gym import models", "domains depend one way"),
        ("cloud/gym/rules.py", "from cloud.clinic import models", "domains depend one way"),
        ("cloud/core/scope.py", "import cloud.dashboard.i18n", "domains depend one way"),
        # the bridge is connection, batching and acknowledgement: no domain in it
        ("cloud/mqtt_bridge.py", "from cloud.gym import link", "domains depend one way"),
        ("protocol/topics.py", "import sqlalchemy", "protocol is sans-IO"),
        ("edge/agent.py", "import cloud.settings", "never import each other"),
        ("edge/agent.py", "import serial", "only the edge's transports"),
    ],
)
def test_an_import_against_the_layout_breaks_the_check(
    tmp_path: Path, module: str, bad_import: str, contract: str
) -> None:
    tree = _tree(tmp_path)
    _append(tree / module, bad_import)
    result = _lint(tree)
    assert result.returncode != 0
    broken = [line for line in result.stdout.splitlines() if " BROKEN" in line]
    assert len(broken) == 1, result.stdout
    assert contract in broken[0]
    assert bad_import.rsplit(maxsplit=1)[-1] in result.stdout  # the report names the import
