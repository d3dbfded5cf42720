"""Firmware updates over real ptys: the agent-side updater and codecs on one end, the lock
and display simulators on the other, every frame through pyserial-asyncio-fast."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from firmware_sim.display.firmware import DisplayFirmware
from firmware_sim.display.pty_host import DisplayPtyHost
from firmware_sim.lock import LockFirmware
from firmware_sim.lock.pairing import PairingRecord
from firmware_sim.lock.pty_host import LockPtyHost
from protocol import display_wire as dw
from protocol import firmware_image as fi
from protocol.clock import ManualClock
from protocol.firmware_updater import (
    UpdateRefusedError,
    UpdateRequest,
    UpdateStep,
    display_updater,
    lock_updater,
    run_update,
)
from protocol.lock_wire import FrameType, LockFrame, LockInfo, NackCode
from protocol.messages import LockEventKind as K
from tests.integration.test_display_pty_support import DisplayClient, display_client
from tests.integration.test_lock_pty_support import SECRETS, T0, SerialClient, serial_client
from tests.strategies import TEST_RELEASE_KEY as RELEASE

MODEL = "RL-2000"
PAYLOAD = bytes(range(251)) * 20  # 5,020 bytes: five frames of chunks


@asynccontextmanager
async def updatable_lock() -> AsyncIterator[tuple[LockPtyHost, ManualClock]]:
    """A paired RL-2000 running 1.4.1 on a pty, trusting the test release key."""
    clock = ManualClock(T0)
    firmware = LockFirmware(
        clock,
        PairingRecord(SECRETS),
        model=MODEL,
        firmware="1.4.1",
        release_keys=[RELEASE.public_key()],
    )
    async with LockPtyHost("gym-a-1", firmware, tick_s=0.05) as host:
        yield host, clock


def lock_image(payload: bytes = PAYLOAD) -> fi.FirmwareImage:
    kind = fi.DeviceKind.LOCK
    return fi.build_image(RELEASE, kind=kind, model=MODEL, version="1.4.2", payload=payload)


async def update(client: SerialClient, image: fi.FirmwareImage) -> None:
    async def exchange(request: UpdateRequest[FrameType]) -> LockFrame:
        return await client.request(request.type, request.payload)

    await run_update(lock_updater(image), exchange)


async def firmware_of(client: SerialClient) -> str:
    return LockInfo.decode((await client.request(FrameType.GET_INFO)).payload).firmware


async def test_a_lock_installs_a_signed_image_and_its_pins_still_open_the_door() -> None:
    async with updatable_lock() as (host, _), serial_client(host.path) as agent:
        await agent.load_pin("482913")

        await update(agent, lock_image())

        assert await firmware_of(agent) == "1.4.2"
        await agent.wait_wake()  # the rebooted lock says it is back
        assert host.press("482913#").display == "OPEN"
        assert K.UNLOCKED in [e.kind for e in await agent.events()]


async def test_a_lock_refuses_a_forged_image_and_keeps_its_version() -> None:
    async with updatable_lock() as (host, _), serial_client(host.path) as agent:
        await agent.load_pin("482913")
        good = lock_image()
        forged = fi.FirmwareImage(good.header, good.payload, bytes(fi.SIGNATURE_LEN))

        with pytest.raises(UpdateRefusedError) as refused:
            await update(agent, forged)

        assert (refused.value.step, refused.value.code) == (
            UpdateStep.COMMIT,
            NackCode.BAD_SIGNATURE,
        )
        assert refused.value.message == "signature does not verify"
        assert await firmware_of(agent) == "1.4.1"
        assert host.press("482913#").display == "OPEN"


async def test_a_lock_refuses_an_update_while_its_door_is_open() -> None:
    async with updatable_lock() as (host, _), serial_client(host.path) as agent:
        await agent.load_pin("482913")
        host.press("482913#")
        host.door(open_=True)

        with pytest.raises(UpdateRefusedError) as refused:
            await update(agent, lock_image())

        assert refused.value.code == NackCode.DOOR_IN_USE
        assert await firmware_of(agent) == "1.4.1"


STATE = dw.DisplayState(
    21,
    dw.Calls((dw.RoomCall("1", "A-021", 4), dw.RoomCall("3", "A-023", 9)), ("A-024",)),
    dw.Announcement("番号でお呼びします"),
    brightness=80,
    time=T0,
)


async def test_a_display_reboots_into_a_signed_image_and_shows_its_state_again() -> None:
    clock = ManualClock(T0)
    firmware = DisplayFirmware(clock, release_keys=[RELEASE.public_key()])
    image = fi.build_image(
        RELEASE, kind=fi.DeviceKind.DISPLAY, model=firmware.model, version="0.2.0", payload=PAYLOAD
    )
    async with (
        DisplayPtyHost("clinic-a-disp-1", firmware, tick_s=0.05) as host,
        display_client(host.path) as agent,
    ):
        await agent.show(STATE)
        agent.hellos.clear()  # the boot HELLO, if it was still in the pty
        before = host.view()

        async def exchange(request: UpdateRequest[dw.DisplayFrameType]) -> dw.DisplayFrame:
            return await agent.request(request.type, request.payload)

        result = await run_update(display_updater(image), exchange)
        hello = await agent.wait_hello()
        await restore_on_hello(agent)

        assert result.installed
        assert (hello.firmware, hello.reason) == ("0.2.0", dw.BootReason.FIRMWARE_UPDATE)
        after = host.view()
        assert (after.state_version, after.rooms, after.next_numbers, after.announcement) == (
            before.state_version,
            before.rooms,
            before.next_numbers,
            before.announcement,
        )
        status = await agent.request(dw.DisplayFrameType.GET_STATUS)
        assert dw.DisplayStatus.decode(status.payload).firmware == "0.2.0"


async def restore_on_hello(agent: DisplayClient) -> None:
    """What the agent's display coordinator does when it hears HELLO: send the whole state."""
    await agent.show(STATE)
