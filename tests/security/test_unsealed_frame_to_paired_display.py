"""Attack: writing to a call-number display's serial line to call a patient to the wrong
room or put up a fake evacuation notice.

A display paired with ``denen provision display pair`` holds its own link key; the agent
drives it with sealed frames only, and the display refuses any frame not sealed with that
key, or sealed but played again, and counts it on its control page. Through the real pty:
the simulated display, the agent as ``edge.main.build_agent`` builds it (real Mosquitto,
the retained display state), and the attacker's own connection to the line, who also
heard every frame the agent sent.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import serial_asyncio_fast

from edge.main import build_agent
from firmware_sim.display.control import create_display_app
from firmware_sim.display.firmware import DisplayFirmware
from firmware_sim.display.pty_host import DisplayPtyHost
from protocol import display_wire as dw
from protocol.clock import SystemClock
from protocol.display_auth import KEY_ID_LINK
from tests.integration.test_edge_agent import client, eventually, running
from tests.integration.test_edge_display import DISPLAY, TOPIC, display_config, rooms, state
from tests.support.displays import pair_hosted_display
from tests.support.mosquitto import Mosquitto

F = dw.DisplayFrameType
FAKE = dw.DisplayState(
    9,
    dw.Calls((dw.RoomCall("3", "Z-999", 1),)),
    announcement=dw.Announcement("避難してください / evacuate now", dw.AnnouncementLevel.URGENT),
)


class OverheardDisplay(DisplayFirmware):
    """The display, with an eavesdropper on its line keeping every frame sent to it."""

    def __init__(self) -> None:
        super().__init__(SystemClock())
        self.overheard: list[dw.DisplayFrame] = []

    def receive(self, frame: dw.DisplayFrame) -> list[dw.DisplayFrame]:
        self.overheard.append(frame)
        return super().receive(frame)


@pytest.fixture
async def display() -> AsyncIterator[DisplayPtyHost]:
    async with DisplayPtyHost(DISPLAY, OverheardDisplay(), tick_s=0.05) as host:
        yield host


@contextlib.asynccontextmanager
async def on_the_line(path: str) -> AsyncIterator[AttackerLine]:
    reader, writer = await serial_asyncio_fast.open_serial_connection(url=path, baudrate=115200)
    try:
        yield AttackerLine(reader, writer)
    finally:
        writer.close()
        await writer.wait_closed()


class AttackerLine:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.parser = dw.DisplayFrameParser()

    async def send(self, frame: dw.DisplayFrame) -> dw.DisplayFrame:
        self.writer.write(bytes(frame))
        async with asyncio.timeout(5):
            while True:
                for reply in self.parser.feed(await self.reader.read(4096)):
                    if reply.seq == frame.seq and reply.type is not F.HELLO:
                        return reply


async def test_a_paired_display_refuses_unsealed_and_replayed_frames_and_counts_them(
    tmp_path: Path, mosquitto: Mosquitto, display: DisplayPtyHost
) -> None:
    state_dir = tmp_path / "state"
    await pair_hosted_display(display, state_dir)
    assert (state_dir / "displays" / f"{DISPLAY}.key.json").stat().st_mode & 0o777 == 0o600
    firmware = display.firmware
    assert isinstance(firmware, OverheardDisplay)
    paired_at = len(firmware.overheard)  # what the technician's tool sent is behind us

    async with client(mosquitto, "cloud") as cloud:
        await cloud.publish(
            TOPIC, state(1, ("3", "A-023", 1), next_numbers=["A-024"]), qos=1, retain=True
        )
        agent = build_agent(display_config(tmp_path, mosquitto, display.path), SystemClock())
        async with running(agent):
            await eventually("the state on the display", lambda: rooms(display) != [])
    from_agent = firmware.overheard[paired_at:]
    assert {f.key_id for f in from_agent} == {KEY_ID_LINK}  # the agent sends sealed frames only
    sent = [f for f in from_agent if f.type is F.SHOW_STATE]

    # the agent is stopped: the attacker has the line to themselves
    async with on_the_line(display.path) as line:
        plain = await line.send(dw.DisplayFrame(F.SHOW_STATE, 7, FAKE.encode()))
        replayed = await line.send(sent[0])
        status = await line.send(dw.DisplayFrame(F.GET_STATUS, 8))
    for reply in (plain, replayed):
        assert reply.type is F.NACK
        assert dw.decode_nack(reply.payload)[0] == dw.DisplayNackCode.AUTH_FAILED
    assert "replay" in dw.decode_nack(replayed.payload)[1]
    assert dw.DisplayStatus.decode(status.payload).provisioned  # readable in clear, no more
    assert rooms(display) == [("3", "A-023")]
    assert display.view().announcement != FAKE.announcement.text

    transport = httpx.ASGITransport(app=create_display_app([display]))
    async with httpx.AsyncClient(transport=transport, base_url="http://sim") as http:
        shown = (await http.get(f"/api/displays/{DISPLAY}")).json()
    assert (shown["provisioned"], shown["auth_failures"]) == (True, 2)
