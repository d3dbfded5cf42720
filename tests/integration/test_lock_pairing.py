"""``denen provision lock pair`` as a process, against the simulated lock on a real pty,
speaking as its gateway to the real cloud behind the production broker config."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import select

from cloud.gym.models import Lock
from edge.config import load_config
from edge.lock_keys import LockKeyStore
from firmware_sim.lock import LockFirmware
from firmware_sim.lock.pty_host import LockPtyHost
from protocol.clock import ManualClock, SystemClock
from provisioning.pairing import PairingError, PairingOptions, pair_lock
from tests.support.secure_cloud import World, pair_at_the_door, running_world, site_config

LOCK = "gym-a-1"
NOW = 1_799_971_200


@pytest.fixture
async def fresh_lock() -> AsyncIterator[LockPtyHost]:
    """A lock straight from the factory: no keys."""
    async with LockPtyHost(LOCK, LockFirmware(SystemClock()), tick_s=0.05) as host:
        yield host


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    async with running_world(tmp_path, NOW) as running:
        yield running


def cloud_keys(world: World, lock_id: str = LOCK) -> tuple[str, str | None]:
    with world.app.state.sessions() as session:
        lock = session.scalars(select(Lock).where(Lock.lock_id == lock_id)).one()
        return lock.pin_key, lock.offline_secret


async def start_pairing(config: Path, serial: str, *extra: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "provisioning.cli", "provision", "lock", "pair",
        "--serial", serial, "--id", LOCK, "--config", str(config), *extra,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def test_without_the_button_pairing_fails_saying_to_press_it(
    world: World, tmp_path: Path, fresh_lock: LockPtyHost
) -> None:
    config = site_config(world, tmp_path / "pi")
    proc = await start_pairing(config, fresh_lock.path, "--wait", "1.5")
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 1
    assert "press the pairing button on the lock" in err.decode()
    assert "press the pairing button" in out.decode()  # the progress line while waiting
    assert not fresh_lock.view().paired
    assert fresh_lock.view().auth_failures >= 1
    assert not (tmp_path / "pi" / "state" / "locks" / f"{LOCK}.key.json").exists()


async def test_pairing_with_the_button_and_the_keypad_test(
    world: World, tmp_path: Path, fresh_lock: LockPtyHost
) -> None:
    before = cloud_keys(world)
    done = await pair_at_the_door(
        fresh_lock, LOCK, site_config(world, tmp_path / "pi"), keypad=True
    )
    assert done.returncode == 0, done.stderr
    assert "keypad test: ok" in done.stdout
    assert "test PIN cleared" in done.stdout
    view = fresh_lock.view()
    assert view.paired
    assert view.clock_set
    assert view.slots_used == 0
    assert view.auth_failures == 1  # the PAIR offered before the button was pressed

    record = LockKeyStore(tmp_path / "pi" / "state").load(LOCK)
    assert record is not None
    assert (record.model, record.send_counter > 0) == ("denen-sim-lock", True)
    pin_key, offline_secret = cloud_keys(world)
    assert (pin_key, offline_secret) != before
    assert bytes.fromhex(pin_key) == fresh_lock.firmware.pairing.pin_key
    assert offline_secret is not None
    assert bytes.fromhex(offline_secret) == fresh_lock.firmware.pairing.offline_secret
    for secret in (record.link_key.hex(), pin_key, offline_secret):
        assert secret not in done.stdout + done.stderr  # keys are never printed or logged


async def test_pairing_again_replaces_the_keys(
    world: World, tmp_path: Path, fresh_lock: LockPtyHost
) -> None:
    config = site_config(world, tmp_path / "pi")
    keys = []
    for _ in range(2):
        # the technician presses the button for each pairing: a new window (a second
        # PAIR in one window would need the code the lock shows)
        fresh_lock.pair_button()
        done = await pair_at_the_door(fresh_lock, LOCK, config)
        assert done.returncode == 0, done.stderr
        record = LockKeyStore(tmp_path / "pi" / "state").load(LOCK)
        assert record is not None
        keys.append((record.link_key, cloud_keys(world)))
    assert keys[0][0] != keys[1][0]
    assert keys[0][1] != keys[1][1]
    assert bytes.fromhex(keys[1][1][0]) == fresh_lock.firmware.pairing.pin_key


async def test_a_lock_the_cloud_does_not_know_is_paired_and_says_to_register_it(
    world: World, tmp_path: Path
) -> None:
    async with LockPtyHost("gym-a-9", LockFirmware(SystemClock()), tick_s=0.05) as lock:
        done = await pair_at_the_door(lock, "gym-a-9", site_config(world, tmp_path / "pi"))
    assert done.returncode == 1
    assert "the cloud did not store the lock's keys" in done.stderr
    assert "lock gym-a-9 is not registered at gym-a/gw-1" in done.stderr
    assert "denen-cloud add-lock gym-a-9 --facility FACILITY_ID" in done.stderr
    assert "pair again:\n  denen provision lock pair --serial" in done.stderr


async def test_while_the_cloud_is_away_the_keys_are_pending_then_stored(
    world: World, tmp_path: Path, fresh_lock: LockPtyHost
) -> None:
    bridge = world.app.state.bridge
    before = cloud_keys(world)
    await bridge.stop()  # the cloud is down; its pairing key stays retained at the broker
    config = site_config(world, tmp_path / "pi")
    done = await pair_at_the_door(fresh_lock, LOCK, config, "--cloud-wait", "2")
    assert done.returncode == 2, done.stderr
    assert "PENDING: the lock's keys went to the broker for the cloud" in done.stdout
    assert "nothing of them is kept on this Pi" in done.stdout
    assert f"--id {LOCK} --config {config}" in done.stdout  # how to pair again
    assert cloud_keys(world) == before
    await bridge.start()  # back: its persistent session still holds the keys
    async with asyncio.timeout(15):
        while cloud_keys(world) == before:  # noqa: ASYNC110 - the cloud says nothing
            await asyncio.sleep(0.05)
    assert bytes.fromhex(cloud_keys(world)[0]) == fresh_lock.firmware.pairing.pin_key


async def test_without_the_cloud_the_lock_is_not_touched(
    tmp_path: Path, fresh_lock: LockPtyHost
) -> None:
    site = tmp_path / "site.toml"
    site.write_text(  # a broker that is not there
        f'site = "gym-a"\ngateway = "gw-1"\nstate_dir = "{tmp_path}"\n\n'
        '[mqtt]\nhost = "127.0.0.1"\nport = 9\ntimeout_s = 2\n'
    )
    fresh_lock.pair_button()
    proc = await start_pairing(site, fresh_lock.path)
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 1
    assert "the lock was not touched" in err.decode()
    assert "denen provision doctor" in err.decode()
    assert not fresh_lock.view().paired


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


async def test_ble_and_missing_config_say_what_to_do(world: World, tmp_path: Path) -> None:
    config = site_config(world, tmp_path / "pi")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "provisioning.cli", "provision", "lock", "pair",
        "--ble", "AA:BB:CC:DD:EE:FF", "--id", LOCK, "--config", str(config),
        "--hci", "tcp-client:127.0.0.1:1",  # no BLE radio (hub) listens there
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 1
    assert "did not open" in err.decode()
    assert "check [ble] hci" in err.decode()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "provisioning.cli", "provision", "lock", "pair",
        "--serial", "/dev/ttyUSB0", "--id", LOCK, "--state-dir", str(tmp_path),
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 1
    assert "straight to the cloud as this gateway" in err.decode()
    assert "--config /etc/denen/site.toml" in err.decode()


async def test_pairing_with_a_site_config_adds_the_lock_to_it(
    world: World, tmp_path: Path, fresh_lock: LockPtyHost
) -> None:
    site = site_config(world, tmp_path / "pi")
    done = await pair_at_the_door(fresh_lock, LOCK, site)
    assert done.returncode == 0, done.stderr
    assert f"added lock {LOCK} to {site}" in done.stdout
    config = load_config(site)
    assert [(lock.id, lock.transport) for lock in config.locks] == [
        (LOCK, f"serial:{fresh_lock.path}")
    ]
    assert LockKeyStore(config.state_dir).load(LOCK) is not None
    # pairing it again (new keys, a new press of the button) does not add it twice
    fresh_lock.pair_button()
    assert (await pair_at_the_door(fresh_lock, LOCK, site)).returncode == 0
    assert len(load_config(site).locks) == 1
