"""The kiosk card reader on a real pty: a tap on the control API becomes a line the
agent's parser decodes; a misread is refused by the check digit; no log holds a number."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import serial_asyncio_fast

from firmware_sim.card_reader.control import create_reader_app
from firmware_sim.card_reader.firmware import CardReaderFirmware
from firmware_sim.card_reader.pty_host import CardReaderPtyHost
from protocol.clock import ManualClock
from protocol.patient_card import (
    CardLine,
    CardLineParser,
    CardRead,
    PatientCardNumber,
    RejectedLine,
    RejectReason,
)
from tests.integration.test_display_pty_support import served

ID = "clinic-a-kiosk-1"
CARD = PatientCardNumber.issue(2, 42)
T0 = 1_800_000_000


class Agent:
    """The agent's side of the reader: a serial port and the line parser."""

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self.reader = reader
        self.parser = CardLineParser()
        self._lines: list[CardLine] = []

    async def next_line(self) -> CardLine:
        while not self._lines:
            chunk = await asyncio.wait_for(self.reader.read(256), 5)
            assert chunk, "the reader closed the port"
            self._lines += self.parser.feed(chunk)
        return self._lines.pop(0)


@pytest.fixture
async def reader_host() -> AsyncIterator[CardReaderPtyHost]:
    async with CardReaderPtyHost(ID, CardReaderFirmware(ManualClock(T0))) as host:
        yield host


@pytest.fixture
async def agent(reader_host: CardReaderPtyHost) -> AsyncIterator[Agent]:
    reader, writer = await serial_asyncio_fast.open_serial_connection(
        url=reader_host.path, baudrate=9600
    )
    try:
        yield Agent(reader)
    finally:
        writer.close()
        await writer.wait_closed()


@pytest.fixture
async def control(reader_host: CardReaderPtyHost) -> AsyncIterator[httpx.AsyncClient]:
    async with served(create_reader_app([reader_host])) as client:
        yield client


async def test_a_tap_reaches_the_agent_as_a_card_number(
    agent: Agent, control: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    response = await control.post(f"/api/readers/{ID}/tap", json={"card": CARD.grouped})
    assert response.status_code == 200
    view = response.json()
    assert (view["taps"], view["last_tap_at"], view["bytes_sent"]) == (1, T0, 18)
    assert await agent.next_line() == CardRead(CARD)
    assert CARD.digits not in response.text
    assert CARD.digits not in caplog.text  # logs carry no card number


async def test_a_misread_is_refused_by_the_check_digit(
    agent: Agent, control: httpx.AsyncClient
) -> None:
    await control.post(f"/api/readers/{ID}/tap", json={"card": CARD.digits, "misread": True})
    assert await agent.next_line() == RejectedLine(RejectReason.BAD_CHECK_DIGIT, 16)
    wrong_digit = CARD.digits[:-1] + str((int(CARD.digits[-1]) + 1) % 10)
    await control.post(f"/api/readers/{ID}/tap", json={"card": wrong_digit})
    assert await agent.next_line() == RejectedLine(RejectReason.BAD_CHECK_DIGIT, 16)
    await control.post(f"/api/readers/{ID}/tap", json={"card": "HELLO"})
    assert await agent.next_line() == RejectedLine(RejectReason.NOT_DIGITS, 5)
    await control.post(f"/api/readers/{ID}/tap", json={"card": CARD.digits})
    assert await agent.next_line() == CardRead(CARD)  # the next good tap still works


async def test_what_a_reader_cannot_send_is_refused_by_the_api(
    control: httpx.AsyncClient,
) -> None:
    assert (await control.post(f"/api/readers/{ID}/tap", json={"card": "診察券"})).status_code == (
        422
    )
    assert (await control.post(f"/api/readers/{ID}/tap", json={"card": ""})).status_code == 422
    assert (await control.post("/api/readers/nope/tap", json={"card": "1"})).status_code == 404
    assert (await control.get(f"/api/readers/{ID}")).json()["taps"] == 0


async def test_the_tap_page_carries_the_test_ids(control: httpx.AsyncClient) -> None:
    page = await control.get(f"/readers/{ID}")
    assert page.status_code == 200
    for test_id in ["card-input", "misread", "tap-card", "tap-result", "tap-count", "last-tap"]:
        assert f'data-testid="{test_id}"' in page.text
    assert 'data-testid="sample-card-0"' in page.text
    assert f'data-testid="reader-link-{ID}"' in (await control.get("/")).text


async def test_cli_hosts_a_reader(tmp_path: Path) -> None:
    link = tmp_path / "kiosk-1"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from firmware_sim.main import main; raise SystemExit(main())",
        "card-reader",
        f"--id={ID}",
        f"--link={link}",
        "--control-port=0",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 10)).decode()
        assert line.startswith(f"card-reader {ID} on /dev/pts/")
        api = line.rsplit("control ", 1)[1].strip().replace("/readers/", "/api/readers/")
        reader, writer = await serial_asyncio_fast.open_serial_connection(url=str(link))
        try:
            async with httpx.AsyncClient() as http:
                tapped = await http.post(f"{api}/tap", json={"card": CARD.grouped})
                assert tapped.status_code == 200
            assert await Agent(reader).next_line() == CardRead(CARD)
        finally:
            writer.close()
            await writer.wait_closed()
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(proc.communicate(), 10)
    assert proc.returncode == 0, stderr.decode()
    assert CARD.digits.encode() not in stderr
    assert not link.is_symlink()
