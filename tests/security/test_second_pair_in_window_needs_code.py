"""Attack: racing the technician inside the lock's pairing window, over its serial line.

The technician pressed the pairing button; for 60 s the lock takes PAIR (keys in clear).
An attacker on the line sends their own PAIR in that window. Whoever comes second must
type the 6-digit code the lock then shows on its display: the attacker cannot read it,
and a technician beaten to it is told so and takes the lock back with it. Through the
real pty, the technician's ``pair_lock`` and the agent's own request channel as the
attacker's tool.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from edge.devices.lock_channel import LinkStats, LockChannel
from edge.errors import EdgeError, LockRejected
from edge.lock_keys import LockKeyRecord, LockKeyStore
from edge.transports import open_transport
from firmware_sim.lock import LockFirmware
from firmware_sim.lock.pty_host import LockPtyHost
from protocol.clock import SystemClock
from protocol.lock_auth import LockSecrets, PairRequest
from protocol.lock_wire import FrameType, NackCode
from provisioning.pairing import PairingOptions, pair_lock

LOCK = "gym-a-1"


@pytest.fixture
async def lock() -> AsyncIterator[LockPtyHost]:
    async with LockPtyHost(LOCK, LockFirmware(SystemClock()), tick_s=0.05) as host:
        yield host


@contextlib.asynccontextmanager
async def attacker_line(lock: LockPtyHost) -> AsyncIterator[LockChannel]:
    """The attacker's tool on the lock's serial line, with a key store of their own."""
    transport = await open_transport(f"serial:{lock.path}", lock_id=LOCK)
    channel = LockChannel(LOCK, transport, link=None, stats=LinkStats(), timeout_s=1.0, retries=2)
    reader = asyncio.create_task(channel.run_reader())
    try:
        yield channel
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, EdgeError):
            await reader
        await transport.close()


async def attacker_pair(lock: LockPtyHost, state: Path, confirm: int | None = None) -> int:
    """The attacker offers PAIR with their keys: 0 when taken, else the NACK code."""
    keys = LockSecrets.generate()
    async with attacker_line(lock) as channel:
        store = LockKeyStore(state)
        channel.link = store.link(LockKeyRecord(LOCK, keys.link_key, 0, 0))
        payload = PairRequest(keys, int(SystemClock().now()), confirm).encode()
        try:
            await channel.request(FrameType.PAIR, payload, FrameType.ACK, authenticated=False)
        except LockRejected as exc:
            return exc.code
        # what a silent pairing gives them: the lock obeys their key
        await channel.request(FrameType.GET_SLOTS, b"", FrameType.SLOTS)
        return 0


async def attacker_still_commands(lock: LockPtyHost, state: Path) -> bool:
    record = LockKeyStore(state).load(LOCK)
    assert record is not None
    async with attacker_line(lock) as channel:
        channel.link = LockKeyStore(state).link(record)
        try:
            await channel.request(FrameType.GET_SLOTS, b"", FrameType.SLOTS)
        except LockRejected:
            return False
        return True


def code_on_the_display(lock: LockPtyHost, typed: list[str], said: list[str]) -> PairingOptions:
    """The technician at the door: reads the code the lock shows and types it."""

    async def confirm_code() -> int:
        match = re.fullmatch(r"CODE (\d{6})", lock.view().display)
        assert match, f"the lock shows {lock.view().display!r}, not a code"
        typed.append(match.group(1))
        return int(match.group(1))

    return PairingOptions(
        say=said.append, keypad_test=False, button_wait_s=5, confirm_code=confirm_code
    )


async def test_a_technician_beaten_to_the_window_is_warned_and_takes_the_lock_back(
    tmp_path: Path, lock: LockPtyHost
) -> None:
    lock.pair_button()  # the technician at the door
    assert await attacker_pair(lock, tmp_path / "attacker") == 0  # got in first
    typed: list[str] = []
    said: list[str] = []
    result = await pair_lock(
        LOCK,
        f"serial:{lock.path}",
        state_dir=tmp_path / "technician",
        clock=SystemClock(),
        options=code_on_the_display(lock, typed, said),
    )
    assert "already paired in this pairing window" in "\n".join(said)
    assert len(typed) == 1  # the technician typed the code the lock showed
    assert lock.firmware.pairing.pin_key == result.keys.pin_key
    assert not await attacker_still_commands(lock, tmp_path / "attacker")
    assert lock.view().auth_failures >= 2  # our first PAIR, the attacker's GET_SLOTS


async def test_an_attacker_after_the_technician_needs_the_code_and_gets_one_guess(
    tmp_path: Path, lock: LockPtyHost
) -> None:
    lock.pair_button()
    result = await pair_lock(
        LOCK,
        f"serial:{lock.path}",
        state_dir=tmp_path / "technician",
        clock=SystemClock(),
        options=code_on_the_display(lock, [], []),
    )
    before = lock.view().auth_failures
    attacker = tmp_path / "attacker"
    assert await attacker_pair(lock, attacker) == NackCode.CONFIRM_CODE
    shown = re.fullmatch(r"CODE (\d{6})", lock.view().display)
    assert shown, "the lock shows the code a second PAIR needs"
    wrong = (int(shown.group(1)) + 1) % 10**6
    assert await attacker_pair(lock, attacker, confirm=wrong) == NackCode.NOT_PAIRING
    # one guess per press of the button: the right code is no use now
    assert await attacker_pair(lock, attacker, int(shown.group(1))) == NackCode.NOT_PAIRING
    assert lock.view().pairing_open_s == 0
    assert lock.firmware.pairing.pin_key == result.keys.pin_key
    assert await attacker_still_commands(lock, tmp_path / "technician")
    assert lock.view().auth_failures == before + 3
