"""An agent-side client for a hosted display over a real serial port, and the fixtures'
building blocks (no tests here; named test_* only because this layer owns the files)."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import serial_asyncio_fast
import uvicorn
from fastapi import FastAPI

from firmware_sim.display.firmware import DisplayFirmware
from firmware_sim.display.pairing import DisplayPairingRecord
from firmware_sim.display.pty_host import DisplayPtyHost
from protocol import display_wire as dw
from protocol.clock import ManualClock
from protocol.display_auth import DisplayDirection, DisplayLinkAuth

T0 = 1_800_000_000
TIMEOUT = 5.0
F = dw.DisplayFrameType


class DisplayClient:
    """Talks frames to a display the way the agent's display coordinator would."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        key: bytes | None = None,
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.link = None if key is None else DisplayLinkAuth(key, DisplayDirection.TO_DISPLAY)
        self.parser = dw.DisplayFrameParser()
        self.hellos: list[dw.Hello] = []
        self._pending: list[dw.DisplayFrame] = []
        self._seq = itertools.count(1)

    async def next_frame(self) -> dw.DisplayFrame:
        while not self._pending:
            chunk = await asyncio.wait_for(self.reader.read(4096), TIMEOUT)
            assert chunk, "the display closed the port"
            self._pending += self.parser.feed(chunk)
        return self._pending.pop(0)

    async def request(self, ftype: F, payload: bytes = b"") -> dw.DisplayFrame:
        """Send one request (sealed when the client has a key); return its answer."""
        frame = dw.DisplayFrame(ftype, next(self._seq), payload)
        if self.link is not None:
            frame = self.link.seal(frame)
        self.writer.write(bytes(frame))
        while True:
            reply = await self.next_frame()
            if reply.type is F.HELLO:
                self.hellos.append(dw.Hello.decode(reply.payload))
            elif reply.seq == frame.seq:
                if self.link is not None and reply.key_id:
                    self.link.check(reply, bound=frame.counter)
                return reply

    async def show(self, state: dw.DisplayState) -> None:
        reply = await self.request(F.SHOW_STATE, state.encode())
        assert reply.type is F.ACK, dw.decode_nack(reply.payload)

    async def wait_hello(self) -> dw.Hello:
        """The next HELLO (one already received counts)."""
        while not self.hellos:
            frame = await self.next_frame()
            if frame.type is F.HELLO:
                self.hellos.append(dw.Hello.decode(frame.payload))
        return self.hellos.pop(0)


@asynccontextmanager
async def hosted_display(
    display_id: str = "clinic-a-disp-1", *, key: bytes | None = None, tick_s: float = 0.05
) -> AsyncIterator[tuple[DisplayPtyHost, ManualClock]]:
    clock = ManualClock(T0)
    firmware = DisplayFirmware(clock, None if key is None else DisplayPairingRecord(key))
    async with DisplayPtyHost(display_id, firmware, tick_s=tick_s) as host:
        yield host, clock


@asynccontextmanager
async def display_client(path: str, key: bytes | None = None) -> AsyncIterator[DisplayClient]:
    reader, writer = await serial_asyncio_fast.open_serial_connection(url=path, baudrate=115200)
    try:
        yield DisplayClient(reader, writer, key)
    finally:
        writer.close()
        await writer.wait_closed()


@asynccontextmanager
async def served(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """``app`` on uvicorn on a free port, and an HTTP client pointed at it."""
    server = uvicorn.Server(uvicorn.Config(app, port=0, lifespan="off", log_level="warning"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        assert not task.done(), "uvicorn did not start"
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            yield client
    finally:
        server.should_exit = True
        await task
