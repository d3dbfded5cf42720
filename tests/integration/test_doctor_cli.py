"""The doctor as a technician runs it: one command, one line per check, a fix under each
problem, and an exit status a script can test."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support.mosquitto import Mosquitto, free_port


def _doctor(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "provisioning.cli", "provision", "doctor", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _site(tmp_path: Path, port: int) -> Path:
    config = tmp_path / "site.toml"
    config.write_text(
        f'site = "gym-a"\ngateway = "gw-1"\nstate_dir = "{tmp_path}"\n\n'
        f'[mqtt]\nhost = "127.0.0.1"\nport = {port}\n\n'
        '[[locks]]\nid = "gym-a-1"\ntransport = "serial:/dev/ttyDENEN-MISSING"\n'
    )
    return config


def test_doctor_names_the_dead_lock_and_fails(tmp_path: Path, mosquitto: Mosquitto) -> None:
    result = _doctor(_site(tmp_path, mosquitto.port))
    assert result.returncode == 1
    assert "[  ok] broker: connected to 127.0.0.1" in result.stdout
    assert "[FAIL] lock gym-a-1" in result.stdout
    assert "fix: check the cable" in result.stdout
    assert "1 failed" in result.stdout


def test_doctor_says_when_the_broker_is_unreachable(tmp_path: Path) -> None:
    result = _doctor(_site(tmp_path, free_port()))
    assert result.returncode == 1
    assert "[FAIL] broker" in result.stdout


def test_doctor_without_a_config_says_to_enroll(tmp_path: Path) -> None:
    result = _doctor(tmp_path / "nope.toml")
    assert result.returncode == 1
    assert "denen provision enroll" in result.stdout


def test_doctor_fails_while_a_lock_keys_file_lies_on_the_pi(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    config = _site(tmp_path, mosquitto.port)
    left = tmp_path / "locks" / "gym-a-1.cloud.json"  # what an older pairing left
    left.parent.mkdir()
    left.write_text('{"lock_id": "gym-a-1", "pin_key": "' + "ab" * 32 + '"}')
    result = _doctor(config)
    assert result.returncode == 1
    assert f"[FAIL] lock secrets: lock keys lie on this Pi's disk: {left}" in result.stdout
    assert "--id gym-a-1 --config SITE.toml" in result.stdout
    assert f"then `shred -u {left}`" in result.stdout
    assert "2 failed" in result.stdout  # and the dead lock

    left.unlink()
    result = _doctor(config)
    assert "[  ok] lock secrets: no lock's PIN key or offline secret on disk" in result.stdout
    assert "1 failed" in result.stdout
