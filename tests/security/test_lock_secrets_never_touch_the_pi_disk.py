"""Attack: someone who gets at a gateway's SD card (a stolen Pi, a backup, a shell on it).
A lock's PIN key with a retained access snapshot gives every 6-digit PIN of that lock in
seconds, and its offline secret mints offline codes for any window. Pairing used to leave
both in ``STATE_DIR/locks/ID.cloud.json`` for a hand-over to the cloud. Now the pairing
command sends them straight to the cloud, sealed to its pairing key, as the gateway (real
broker, production config, the gateway's own certificate): the cloud stores them in the
lock's row and confirms, and neither key is anywhere on the Pi's disk or in /tmp, in hex,
raw or base64. The broker never sees them in the clear either."""

from __future__ import annotations

import base64
import os
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from cloud.gym.models import Lock
from firmware_sim.lock import LockFirmware
from firmware_sim.lock.pty_host import LockPtyHost
from protocol.clock import SystemClock
from tests.support.secure_cloud import World, pair_at_the_door, site_config

LOCK = "gym-a-1"
MAX_FILE = 20 * 1024 * 1024


@pytest.fixture
async def fresh_lock() -> AsyncIterator[LockPtyHost]:
    async with LockPtyHost(LOCK, LockFirmware(SystemClock()), tick_s=0.05) as host:
        yield host


def _forms(secret: bytes) -> list[bytes]:
    """How a key could lie in a file."""
    return [
        secret,
        secret.hex().encode(),
        secret.hex().upper().encode(),
        base64.b64encode(secret).rstrip(b"="),
        base64.urlsafe_b64encode(secret).rstrip(b"="),
    ]


def _files(roots: list[Path], since: float, skip: Path) -> Iterator[Path]:
    """Regular files under ``roots`` written since ``since`` (not under ``skip``)."""
    for root in roots:
        for folder, dirs, names in os.walk(root, onerror=lambda _e: None):
            if Path(folder).is_relative_to(skip):
                dirs.clear()
                continue
            for name in names:
                path = Path(folder, name)
                try:
                    info = path.lstat()
                except OSError:
                    continue
                if path.is_file() and info.st_mtime >= since and info.st_size <= MAX_FILE:
                    yield path


def _holding(roots: list[Path], since: float, skip: Path, secrets: list[bytes]) -> list[str]:
    found = []
    for path in _files(roots, since, skip):
        try:
            data = path.read_bytes()
        except OSError:
            continue  # another user's file, or gone: not ours
        found += [str(path) for s in secrets for form in _forms(s) if form in data]
    return found


async def test_pairing_sends_the_keys_to_the_cloud_and_leaves_none_on_disk(
    world: World, tmp_path: Path, fresh_lock: LockPtyHost
) -> None:
    started = time.time() - 1
    pi = tmp_path / "pi"
    config = site_config(world, pi)

    done = await pair_at_the_door(fresh_lock, LOCK, config, keypad=True)

    assert done.returncode == 0, done.stderr + done.stdout
    assert "keypad test: ok" in done.stdout
    assert "the cloud stored lock gym-a-1's PIN key and offline secret" in done.stdout
    pin_key = fresh_lock.firmware.pairing.pin_key
    offline_secret = fresh_lock.firmware.pairing.offline_secret
    assert pin_key is not None
    assert offline_secret is not None
    with world.app.state.sessions() as session:
        row = session.scalars(select(Lock).where(Lock.lock_id == LOCK)).one()
        assert (row.pin_key, row.offline_secret) == (pin_key.hex(), offline_secret.hex())

    assert list((pi / "state" / "locks").glob("*.cloud.json")) == []
    assert (pi / "state" / "locks" / f"{LOCK}.key.json").exists()  # the agent's link key
    world.broker.broker.stop()  # the broker writes its store (queued messages) on the way out
    roots = [pi, tmp_path / "secure", Path(tempfile.gettempdir())]
    leaks = _holding(roots, started, world.cloud_dir, [pin_key, offline_secret])
    assert leaks == []
    for text in (done.stdout, done.stderr):
        assert pin_key.hex() not in text
        assert offline_secret.hex() not in text
