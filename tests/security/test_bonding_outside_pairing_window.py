"""Attack: bonding with a lock over BLE while it hangs on the wall, its pairing window shut.

A bond is what lets a central reach the lock's GATT service at all. The lock bonds only in
the 60 s after someone pressed its pairing button: outside them an LE Secure Connections
pairing request is refused before any passkey shows, and counted with the refused frames,
even for an attacker who could read the display. Real bumble SMP on a virtual radio: the
lock is :class:`LockBleHost`, the attacker the agent's own :class:`BumbleCentral`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from bumble.link import LocalLink

from edge.errors import LockUnreachable
from edge.transports import open_transport
from edge.transports.ble import PasskeyPrompt
from edge.transports.ble_bumble import BumbleCentral
from firmware_sim.lock import LockFirmware
from firmware_sim.lock.ble_host import LockBleHost
from protocol.clock import ManualClock

LOCK = "gym-a-2"
ADDRESS = "F0:F0:F0:F0:F0:02"
NOW = 1_799_971_200  # the lock's own clock: its pairing window runs on it


@pytest.fixture
async def radio() -> AsyncIterator[tuple[LocalLink, LockBleHost, ManualClock]]:
    link = LocalLink()  # type: ignore[no-untyped-call]  # bumble leaves it bare
    clock = ManualClock(NOW)
    async with LockBleHost(LOCK, LockFirmware(clock), hci=link, address=ADDRESS) as lock:
        yield link, lock, clock


def reads_the_display(lock: LockBleHost, shown: list[str]) -> PasskeyPrompt:
    """A passkey prompt that types whatever the lock shows (the strongest attacker)."""

    async def prompt() -> int:
        for _ in range(200):
            text = lock.view().display
            if text.startswith("PAIR "):
                shown.append(text)
                return int(text.removeprefix("PAIR "))
            await asyncio.sleep(0.01)
        raise AssertionError("the lock never showed a passkey")

    return prompt


async def test_the_lock_refuses_to_bond_outside_its_pairing_window(
    tmp_path: Path, radio: tuple[LocalLink, LockBleHost, ManualClock]
) -> None:
    link, lock, clock = radio
    lock.pair_button()
    clock.advance(61)  # pressed a while ago (or never): the window is shut
    central = BumbleCentral.from_hci(link, bond_dir=tmp_path / "attacker", connect_timeout_s=5)
    shown: list[str] = []
    try:
        with pytest.raises(LockUnreachable) as info:
            await open_transport(
                f"ble:{ADDRESS}",
                lock_id=LOCK,
                ble=central,
                passkey=reads_the_display(lock, shown),
            )
    finally:
        await central.close()
    assert "pairing window is closed" in str(info.value)
    assert "press the pairing button on the lock" in str(info.value)
    assert shown == []  # no passkey was ever shown
    assert lock.view().auth_failures == 1  # the refused bonding is counted
    assert not (tmp_path / "attacker" / "bonds.json").exists()


async def test_inside_the_window_the_same_central_bonds(
    tmp_path: Path, radio: tuple[LocalLink, LockBleHost, ManualClock]
) -> None:
    link, lock, clock = radio
    lock.pair_button()  # the technician at the door
    central = BumbleCentral.from_hci(link, bond_dir=tmp_path / "gateway", connect_timeout_s=5)
    shown: list[str] = []
    try:
        transport = await open_transport(
            f"ble:{ADDRESS}",
            lock_id=LOCK,
            ble=central,
            passkey=reads_the_display(lock, shown),
        )
        await transport.close()
        assert len(shown) == 1
        clock.advance(61)
        assert lock.view().pairing_open_s == 0
        # the bonded gateway reconnects with its bond, window or not
        again = await open_transport(f"ble:{ADDRESS}", lock_id=LOCK, ble=central)
        await again.close()
    finally:
        await central.close()
    assert lock.view().auth_failures == 0
