"""The agent's lock key store and frame authentication, against a lock peer on a real pty
and a real Mosquitto."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from edge.errors import KeyStoreError
from edge.lock_keys import LockKeyRecord, LockKeyStore
from edge.main import build_agent
from protocol.clock import SystemClock
from protocol.lock_wire import FrameType, LockFrame
from protocol.messages import LockEventKind
from tests.integration.test_edge_agent import (
    LINK_KEY,
    LOCK,
    LockPeer,
    eventually,
    running,
    site_config,
)
from tests.support.mosquitto import Mosquitto


@pytest.fixture
async def peer() -> AsyncIterator[LockPeer]:
    lock = LockPeer(slot_count=2)
    yield lock
    lock.close()


async def test_a_lock_without_a_key_is_not_driven_and_the_log_says_how_to_pair(
    tmp_path: Path, mosquitto: Mosquitto, peer: LockPeer, caplog: pytest.LogCaptureFixture
) -> None:
    config = site_config(tmp_path, mosquitto, peer.path, pair=False)
    agent = build_agent(config, SystemClock())
    async with running(agent):
        coordinator = agent.coordinators[LOCK]
        await eventually("the key store looked at", lambda: coordinator.paired is not None)
        await asyncio.sleep(0.2)
    assert coordinator.paired is False
    assert not coordinator.reachable
    assert peer.received == []  # not a single frame went to the lock
    assert any(
        f"lock {LOCK} is not paired: run `denen provision lock pair --serial {peer.path}" in m
        for m in caplog.messages
    )


async def test_a_restarted_agent_goes_on_with_fresh_counters(
    tmp_path: Path, mosquitto: Mosquitto, peer: LockPeer
) -> None:
    config = site_config(tmp_path, mosquitto, peer.path)
    for _ in range(2):
        async with running(build_agent(config, SystemClock())) as agent:
            lock = agent.coordinators[LOCK]
            await eventually("lock reachable", lambda: lock.reachable)  # noqa: B023 - awaited here
    assert peer.refused == 0  # the second agent reused no counter of the first
    stored = LockKeyStore(config.state_dir).load(LOCK)
    assert stored is not None
    assert stored.send_counter > peer.link.recv_counter
    mode = (config.state_dir / "locks" / f"{LOCK}.key.json").stat().st_mode & 0o777
    assert mode == 0o600


async def test_forged_and_replayed_frames_from_the_line_are_dropped_and_counted(
    tmp_path: Path, mosquitto: Mosquitto, peer: LockPeer
) -> None:
    agent = build_agent(site_config(tmp_path, mosquitto, peer.path), SystemClock())
    async with running(agent):
        coordinator = agent.coordinators[LOCK]
        await eventually("lock reachable", lambda: coordinator.reachable)
        old_wake = peer.link.seal(LockFrame(FrameType.WAKE, 0))
        peer.write_raw(bytes(old_wake))
        peer.write_raw(bytes(old_wake))  # replayed
        peer.write_raw(bytes(LockFrame(FrameType.WAKE, 0, key_id=1, counter=9999)))  # forged
        await eventually("two refusals counted", lambda: coordinator.stats.auth_failures == 2)
        event = peer.add_event(LockEventKind.UNLOCKED)
        peer.wake()
        await peer.wait_until("the event acknowledged", lambda: event.seq in peer.acks)
        assert coordinator.reachable
        assert agent.telemetry().frames_dropped >= 2


def test_a_key_file_others_can_read_is_refused(tmp_path: Path) -> None:
    store = LockKeyStore(tmp_path)
    store.save(LockKeyRecord(LOCK, LINK_KEY, 0, 1))
    path = store.path(LOCK)
    assert path.stat().st_mode & 0o777 == 0o600
    assert LINK_KEY.hex() not in repr(store.load(LOCK))
    path.chmod(0o644)
    with pytest.raises(KeyStoreError, match="chmod 600"):
        store.load(LOCK)
