"""``denen provision lock pair`` as a process, against the simulated lock on a real pty."""

from __future__ import annotations

import asyncio
import json
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from edge.config import load_config
from edge.lock_keys import LockKeyStore
from firmware_sim.lock import LockFirmware
from firmware_sim.lock.pty_host import LockPtyHost
from protocol.clock import ManualClock, SystemClock
from provisioning.pairing import PairingError, PairingOptions, pair_lock

LOCK = "gym-a-1"


@pytest.fixture
async def fresh_lock() -> AsyncIterator[LockPtyHost]:
    """A lock straight from the factory: no keys."""
    async with LockPtyHost(LOCK, LockFirmware(SystemClock()), tick_s=0.05) as host:
        yield host


async def start_pairing(state: Path, serial: str, *extra: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "provisioning.cli", "provision", "lock", "pair",
        "--serial", serial, "--id", LOCK, "--state-dir", str(state), *extra,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def test_without_the_button_pairing_fails_saying_to_press_it(
    tmp_path: Path, fresh_lock: LockPtyHost
) -> None:
    proc = await start_pairing(tmp_path, fresh_lock.path, "--wait", "1.5")
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 1
    assert "press the pairing button on the lock" in err.decode()
    assert "press the pairing button" in out.decode()  # the progress line while waiting
    assert not fresh_lock.view().paired
    assert fresh_lock.view().auth_failures >= 1
    assert not (tmp_path / "locks" / f"{LOCK}.key.json").exists()


async def test_pairing_with_the_button_and_the_keypad_test(
    tmp_path: Path, fresh_lock: LockPtyHost
) -> None:
    proc = await start_pairing(tmp_path, fresh_lock.path, "--wait", "20")
    assert proc.stdout is not None
    lines: list[str] = []
    pressed = False
    while True:
        line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
        assert line, f"the command ended early: {lines}"
        lines.append(line)
        if "press the pairing button" in line and not pressed:
            fresh_lock.pair_button()  # the technician at the door
            pressed = True
        typed = re.search(r"type (\d+)# on the lock's keypad", line)
        if typed:
            assert fresh_lock.press(typed.group(1) + "#").display == "OPEN"
            break
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    text = "".join(lines) + out.decode()
    assert "keypad test: ok" in text
    assert "test PIN cleared" in text
    view = fresh_lock.view()
    assert view.paired
    assert view.clock_set
    assert view.slots_used == 0
    assert view.auth_failures == 1  # the PAIR offered before the button was pressed

    record = LockKeyStore(tmp_path).load(LOCK)
    assert record is not None
    assert (record.model, record.send_counter > 0) == ("denen-sim-lock", True)
    cloud_file = tmp_path / "locks" / f"{LOCK}.cloud.json"
    assert cloud_file.stat().st_mode & 0o777 == 0o600
    cloud = json.loads(cloud_file.read_text())
    assert bytes.fromhex(cloud["pin_key"]) == fresh_lock.firmware.pairing.pin_key
    for secret in (record.link_key.hex(), cloud["pin_key"], cloud["offline_secret"]):
        assert secret not in text + err.decode()  # keys are never printed or logged
    assert str(cloud_file) in text


async def test_pairing_again_replaces_the_keys(tmp_path: Path, fresh_lock: LockPtyHost) -> None:
    keys = []
    for _ in range(2):
        fresh_lock.pair_button()
        proc = await start_pairing(tmp_path, fresh_lock.path, "--skip-keypad-test")
        _, err = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 0, err.decode()
        record = LockKeyStore(tmp_path).load(LOCK)
        assert record is not None
        keys.append(record.link_key)
    assert keys[0] != keys[1]


async def test_an_untrusted_clock_refuses_to_pair(tmp_path: Path, fresh_lock: LockPtyHost) -> None:
    fresh_lock.pair_button()
    with pytest.raises(PairingError, match=r"1970-01-01.*not a trusted time.*doctor"):
        await pair_lock(
            LOCK,
            f"serial:{fresh_lock.path}",
            state_dir=tmp_path,
            clock=ManualClock(start=30.0),
            options=PairingOptions(say=lambda _: None),
        )
    assert not fresh_lock.view().paired


async def test_ble_and_missing_state_dir_say_what_to_do(tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "provisioning.cli", "provision", "lock", "pair",
        "--ble", "AA:BB:CC:DD:EE:FF", "--id", LOCK, "--state-dir", str(tmp_path),
        "--hci", "tcp-client:127.0.0.1:1",  # no BLE radio (hub) listens there
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 1
    assert "did not open" in err.decode()
    assert "check [ble] hci" in err.decode()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "provisioning.cli", "provision", "lock", "pair",
        "--serial", "/dev/ttyUSB0", "--id", LOCK,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 1
    assert "--config site.toml or --state-dir" in err.decode()


async def test_pairing_with_a_site_config_adds_the_lock_to_it(
    tmp_path: Path, fresh_lock: LockPtyHost
) -> None:
    site = tmp_path / "site.toml"
    site.write_text(
        f'site = "gym-a"\ngateway = "gw-1"\nstate_dir = "{tmp_path}"\n\n'
        '[mqtt]\nhost = "127.0.0.1"\n\n[sync]\nevent_poll_s = 5\n'
    )
    out = await _pair_with_config(fresh_lock, site)
    assert f"added lock {LOCK} to {site}" in out
    config = load_config(site)
    assert [(lock.id, lock.transport) for lock in config.locks] == [
        (LOCK, f"serial:{fresh_lock.path}")
    ]
    assert LockKeyStore(tmp_path).load(LOCK) is not None
    # pairing it again (new keys) does not add it twice
    await _pair_with_config(fresh_lock, site)
    assert len(load_config(site).locks) == 1


async def _pair_with_config(lock: LockPtyHost, site: Path) -> str:
    """Press the button and pair with ``--config``; the command's output."""
    lock.pair_button()
    proc = await start_pairing(site.parent, lock.path, "--config", str(site), "--skip-keypad-test")
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    return out.decode()
