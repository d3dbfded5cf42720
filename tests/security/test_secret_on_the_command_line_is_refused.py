"""Attack: reading secrets off the process list or the shell history. Any user of the
cloud host or the Pi sees every command's arguments (``ps``, ``/proc/PID/cmdline``), and
the shell keeps them. A lock's PIN key, its offline secret and a gateway's enrollment
token typed as arguments are refused, with how to pass them (a file or standard input),
and nothing is done with them; from a file or standard input they work."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from cloud.gym.models import Lock

KEY = "ab" * 32
SECRET = "cd" * 32


def _env(tmp_path: Path) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", ""),
        "DENEN_CLOUD_DATABASE_URL": f"sqlite:///{tmp_path}/cloud.db",
        "DENEN_CLOUD_SECRET_KEY": "s" * 40,
        "DENEN_CLOUD_METRICS_TOKEN": "m" * 32,
        "DENEN_CLOUD_MQTT_ENABLED": "0",
    }


def _run(
    tmp_path: Path, module: str, *args: str, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        env=_env(tmp_path),
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def _locks(tmp_path: Path) -> dict[str, tuple[str, str | None]]:
    engine = create_engine(f"sqlite:///{tmp_path}/cloud.db")
    try:
        with Session(engine) as session:
            return {
                lock.lock_id: (lock.pin_key, lock.offline_secret)
                for lock in session.scalars(select(Lock))
            }
    finally:
        engine.dispose()


def test_lock_keys_as_arguments_are_refused_and_taken_from_a_file_or_stdin(
    tmp_path: Path,
) -> None:
    made = _run(
        tmp_path, "cloud.main", "add-facility", "Gym A", "--site", "gym-a", "--gateway", "gw-1"
    )
    assert made.returncode == 0, made.stderr

    for flag, value, instead in (
        ("--pin-key", KEY, "--pin-key-file"),
        ("--offline-secret", SECRET, "--offline-secret-file"),
    ):
        refused = _run(
            tmp_path, "cloud.main", "add-lock", "gym-a-1", "--facility", "1", flag, value
        )
        assert refused.returncode == 2
        assert f"{flag}: a" in refused.stderr  # a PIN key, an offline secret
        assert "seen by every user" in refused.stderr
        assert f"{instead} PATH" in refused.stderr
        assert f"{instead} -" in refused.stderr
        assert value not in refused.stdout + refused.stderr
        assert _locks(tmp_path) == {}  # nothing was registered with it

    secret_file = tmp_path / "offline-secret"
    secret_file.write_text(SECRET + "\n")
    secret_file.chmod(0o600)
    taken = _run(
        tmp_path,
        "cloud.main",
        "add-lock", "gym-a-1", "--facility", "1",
        "--pin-key-file", "-", "--offline-secret-file", str(secret_file),
        stdin=KEY + "\n",
    )  # fmt: skip
    assert taken.returncode == 0, taken.stderr
    assert KEY not in taken.stdout
    assert _locks(tmp_path) == {"gym-a-1": (KEY, SECRET)}

    missing = _run(
        tmp_path, "cloud.main", "add-lock", "gym-a-2", "--facility", "1",
        "--pin-key-file", str(tmp_path / "nowhere"),
    )  # fmt: skip
    assert missing.returncode == 1
    assert "cannot be read" in missing.stderr
    assert "gym-a-2" not in _locks(tmp_path)


def test_an_enrollment_token_as_an_argument_is_refused(tmp_path: Path) -> None:
    token = "denen-enroll-" + "x" * 32
    refused = _run(
        tmp_path, "provisioning.cli", "provision", "enroll", "--token", token,
        "--cloud", "http://127.0.0.1:9", "--out", str(tmp_path / "etc"),
        "--state-dir", str(tmp_path / "state"),
    )  # fmt: skip
    assert refused.returncode == 2
    assert "--token: an enrollment token on the command line" in refused.stderr
    assert "--token-file PATH" in refused.stderr
    assert token not in refused.stderr
    assert not (tmp_path / "etc").exists()  # nothing made: no key, no request
