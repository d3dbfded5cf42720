"""The agent's BLE transport against the simulated BLE lock, on one bumble virtual radio.

Two (or three) bumble controllers share a ``LocalLink`` in this process: the lock is a
GATT peripheral (:class:`LockBleHost`), the agent a :class:`BumbleCentral`. Real bumble
SMP, ATT and GATT all the way; nothing is mocked.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from bumble import att, core
from bumble.controller import Controller
from bumble.core import UUID
from bumble.device import Device, Peer
from bumble.hci import Address
from bumble.host import Host
from bumble.link import LocalLink
from bumble.pairing import PairingConfig, PairingDelegate
from bumble.transport.common import AsyncPipeSink

from edge.devices.lock_channel import LinkStats, LockChannel
from edge.errors import LockUnreachable
from edge.lock_keys import LockKeyStore
from edge.transports import open_transport
from edge.transports.base import ReportsSignal
from edge.transports.ble import BleTransport, PasskeyPrompt
from edge.transports.ble_bumble import BumbleCentral
from firmware_sim.lock import LockFirmware
from firmware_sim.lock.ble_host import LockBleHost
from protocol.clock import SystemClock
from protocol.lock_gatt import ATT_DEFAULT_MTU, RX_CHAR_UUID, SERVICE_UUID
from protocol.lock_wire import (
    FrameType,
    LockFrame,
    SlotEntry,
    decode_events,
    decode_slots,
    encode_u32,
)
from protocol.messages import LockEventKind
from protocol.pin import pin_tag
from provisioning.pairing import PairingOptions, PairingResult, pair_lock

LOCK = "gym-a-2"
ADDRESS = "F0:F0:F0:F0:F0:02"


@dataclass
class Air:
    link: LocalLink
    lock: LockBleHost
    state: Path

    def central(self, **kwargs: object) -> BumbleCentral:
        return BumbleCentral.from_hci(self.link, bond_dir=self.state / "ble", **kwargs)  # type: ignore[arg-type]


@pytest.fixture
async def air(tmp_path: Path) -> AsyncIterator[Air]:
    link = LocalLink()  # type: ignore[no-untyped-call]  # bumble leaves it bare
    firmware = LockFirmware(SystemClock())
    async with LockBleHost(LOCK, firmware, hci=link, address=ADDRESS, tick_s=0.05) as lock:
        yield Air(link, lock, tmp_path)


def display_passkey(lock: LockBleHost, typed: list[int]) -> PasskeyPrompt:
    """What the technician does: read the code off the lock's display and type it."""

    async def prompt() -> int:
        for _ in range(200):
            match = re.fullmatch(r"PAIR (\d{6})", lock.view().display)
            if match:
                typed.append(int(match.group(1)))
                return typed[-1]
            await asyncio.sleep(0.01)
        raise AssertionError("the lock never showed a passkey")

    return prompt


async def pair_over_ble(
    air: Air, central: BumbleCentral, typed: list[int] | None = None
) -> tuple[PairingResult, list[str]]:
    said: list[str] = []

    def say(line: str) -> None:
        said.append(line)
        typed = re.search(r"type (\d+)# on the lock's keypad", line)
        if typed:  # the technician at the door types the test PIN
            asyncio.get_running_loop().call_soon(air.lock.press, typed.group(1) + "#")

    air.lock.pair_button()
    options = PairingOptions(
        say=say, passkey=display_passkey(air.lock, [] if typed is None else typed), keypad_wait_s=10
    )
    result = await pair_lock(
        LOCK,
        f"ble:{ADDRESS}",
        state_dir=air.state,
        clock=SystemClock(),
        options=options,
        ble=central,
    )
    return result, said


@contextlib.asynccontextmanager
async def channel_to(air: Air, central: BumbleCentral) -> AsyncIterator[LockChannel]:
    """The agent's request channel over a fresh BLE connection, with the stored key."""
    keys = LockKeyStore(air.state)
    record = keys.load(LOCK)
    assert record is not None
    transport = await open_transport(f"ble:{ADDRESS}", lock_id=LOCK, ble=central)
    channel = LockChannel(
        LOCK, transport, link=keys.link(record), stats=LinkStats(), timeout_s=2.0, retries=2
    )
    reader = asyncio.create_task(channel.run_reader())
    try:
        yield channel
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, LockUnreachable):
            await reader
        await transport.close()


async def test_scan_lists_the_lock_by_name(air: Air) -> None:
    central = air.central()
    try:
        found = await central.scan(0.3)
    finally:
        await central.close()
    assert [(a.name, a.address) for a in found] == [(LOCK, ADDRESS)]
    assert found[0].rssi is not None


async def test_pair_set_clock_and_slot_then_a_typed_pin_unlocks(air: Air) -> None:
    central = air.central()
    try:
        typed: list[int] = []
        result, said = await pair_over_ble(air, central, typed)
        assert result.keypad_tested
        assert any("6-digit code" in line for line in said)
        assert len(typed) == 1  # LE Secure Connections passkey entry happened, once
        assert air.lock.view().paired
        assert not air.lock.view().display.startswith("PAIR")  # gone once pairing ended
        assert f"{typed[0]:06d}" not in "".join(said), "the passkey is on the lock only"

        # the agent's path: a new connection, encrypted with the bond, no passkey asked
        async with channel_to(air, central) as channel:
            # the signal strength heard before connecting goes into the lock's telemetry
            assert isinstance(channel.transport, ReportsSignal)
            assert channel.transport.rssi is not None
            now = int(SystemClock().now())
            await channel.request(FrameType.SET_TIME, encode_u32(now), FrameType.ACK)
            tag = pin_tag(result.keys.pin_key, "482913")
            entry = SlotEntry(0, now - 60, now + 600, "0190a6a2-0000-7000-8000-000000000001", tag)
            await channel.request(FrameType.SET_SLOT, entry.encode_set(), FrameType.ACK)
            assert air.lock.press("482913#").display == "OPEN"
            reply = await channel.request(FrameType.GET_EVENTS, b"\xff", FrameType.EVENTS)
            unlocks = [e for e in decode_events(reply.payload) if e.kind is LockEventKind.UNLOCKED]
            assert [(e.slot, e.grant_id) for e in unlocks][-1] == (0, entry.grant_id)
    finally:
        await central.close()


async def test_a_frame_larger_than_the_att_mtu_round_trips(air: Air) -> None:
    central = air.central()
    try:
        await pair_over_ble(air, central)
    finally:
        await central.close()
    small = air.central(preferred_mtu=ATT_DEFAULT_MTU)  # same bonds and address
    try:
        async with channel_to(air, small) as channel:
            assert isinstance(channel.transport, BleTransport)
            assert channel.transport.att_mtu == ATT_DEFAULT_MTU
            now = int(SystemClock().now())
            wanted = []
            for slot in range(32):
                entry = SlotEntry(slot, now, now + 3600 + slot, None, bytes(16))
                assert len(bytes(LockFrame(FrameType.SET_SLOT, 1, entry.encode_set()))) > 20
                await channel.request(FrameType.SET_SLOT, entry.encode_set(), FrameType.ACK)
                wanted.append((slot, now, now + 3600 + slot))
            reply = await channel.request(FrameType.GET_SLOTS, b"", FrameType.SLOTS)
            assert len(bytes(reply)) > 800  # 40 notifications of 20 bytes, reassembled
            assert [(e.slot, e.start, e.end) for e in decode_slots(reply.payload)] == wanted
    finally:
        await small.close()


async def test_a_lock_that_goes_away_surfaces_as_unreachable(air: Air) -> None:
    central = air.central()
    try:
        await pair_over_ble(air, central)
        async with channel_to(air, central) as channel:
            await air.lock.stop()  # out of range, battery pulled
            with pytest.raises(LockUnreachable) as info:
                await channel.request(FrameType.GET_INFO, b"", FrameType.INFO)
    finally:
        await central.close()
    message = str(info.value)
    assert f"lock {LOCK} did not answer on ble:{ADDRESS}" in message
    assert "within range" in message
    assert "denen provision doctor" in message


async def test_an_absent_lock_says_what_to_do(air: Air) -> None:
    central = air.central(connect_timeout_s=0.5)
    try:
        with pytest.raises(LockUnreachable, match=r"no BLE connection.*within range"):
            await open_transport("ble:F0:F0:F0:F0:F0:99", lock_id="gym-a-9", ble=central)
    finally:
        await central.close()


async def test_without_a_bond_the_agent_is_told_to_pair(air: Air) -> None:
    central = air.central()
    try:
        with pytest.raises(
            LockUnreachable, match=r"no LE Secure Connections bond.*lock pair --ble"
        ):
            await open_transport(f"ble:{ADDRESS}", lock_id=LOCK, ble=central)
    finally:
        await central.close()


# ------------------------------------------------------------ the lock's side of security


@contextlib.asynccontextmanager
async def raw_client(air: Air, config: PairingConfig | None = None) -> AsyncIterator[Device]:
    controller = Controller("intruder", link=air.link)
    device = Device(
        address=Address("F2:F2:F2:F2:F2:F2"), host=Host(controller, AsyncPipeSink(controller))
    )
    if config is not None:
        device.pairing_config_factory = lambda _conn: config
    await device.power_on()
    try:
        yield device
    finally:
        for connection in list(device.connections.values()):
            await connection.disconnect()
        await device.power_off()
        air.link.remove_controller(controller)


async def test_an_unencrypted_client_cannot_write_a_frame(air: Air) -> None:
    async with raw_client(air) as device:
        connection = await device.connect(Address(ADDRESS), timeout=5)
        peer = Peer(connection)
        await peer.discover_services([UUID(SERVICE_UUID)])
        service = peer.get_services_by_uuid(UUID(SERVICE_UUID))[0]
        await service.discover_characteristics()
        rx = service.get_characteristics_by_uuid(UUID(RX_CHAR_UUID))[0]
        with pytest.raises(att.ATT_Error) as info:
            await rx.write_value(bytes(LockFrame(FrameType.GET_INFO, 1)), with_response=True)
        assert info.value.error_code == att.ErrorCode.INSUFFICIENT_ENCRYPTION
    assert air.lock.firmware.view().auth_failures == 0  # the frame never reached it


@pytest.mark.parametrize(
    ("sc", "io"),
    [
        (False, PairingDelegate.IoCapability.KEYBOARD_INPUT_ONLY),  # legacy pairing
        (True, PairingDelegate.IoCapability.NO_OUTPUT_NO_INPUT),  # LESC Just Works
    ],
)
async def test_the_lock_refuses_legacy_and_just_works_pairing(
    air: Air, sc: bool, io: PairingDelegate.IoCapability
) -> None:
    config = PairingConfig(sc=sc, mitm=True, bonding=True, delegate=PairingDelegate(io))
    async with raw_client(air, config) as device:
        connection = await device.connect(Address(ADDRESS), timeout=5)
        with pytest.raises(core.ProtocolError):  # SMP: authentication requirements not met
            await connection.pair()
        assert not connection.is_encrypted
