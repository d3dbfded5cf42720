"""A gateway-side client for a hosted lock, over a real serial port (no tests here).

Named test_* only because this layer owns the test_lock_pty* files.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import serial_asyncio_fast

from firmware_sim.lock import LockFirmware
from firmware_sim.lock.pairing import PairingRecord
from firmware_sim.lock.pty_host import LockPtyHost
from protocol.clock import ManualClock
from protocol.lock_auth import KEY_ID_LINK, Direction, LinkAuth, LockSecrets
from protocol.lock_wire import (
    FrameParser,
    FrameType,
    LockFrame,
    SlotEntry,
    WireEvent,
    decode_events,
    encode_u32,
)
from protocol.pin import pin_tag

PIN_KEY = bytes.fromhex("8f" * 32)
SECRETS = LockSecrets(bytes.fromhex("3c" * 32), PIN_KEY, bytes.fromhex("a1" * 32))
T0 = 1_800_000_000
GRANT = "0190f1d2-8a3b-7c4d-9e5f-0123456789ab"
TIMEOUT = 5.0


class SerialClient:
    """Talks frames to a lock over a serial port, the way an edge agent would: requests
    sealed with the link key, answers checked (``sent`` keeps every frame written)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.link = LinkAuth(SECRETS.link_key, Direction.TO_LOCK)
        self.sent: list[bytes] = []
        self.parser = FrameParser()
        self.wakes: list[LockFrame] = []
        self._pending: list[LockFrame] = []
        self._seq = itertools.count(1)

    async def next_frame(self) -> LockFrame:
        while not self._pending:
            chunk = await asyncio.wait_for(self.reader.read(4096), TIMEOUT)
            assert chunk, "the lock closed the port"
            self._pending += self.parser.feed(chunk)
        return self._pending.pop(0)

    async def request(self, ftype: FrameType, payload: bytes = b"") -> LockFrame:
        """Send one authenticated request and return its (checked) answer."""
        frame = self.link.seal(LockFrame(ftype, next(self._seq), payload))
        reply = await self.send(frame)
        if reply.key_id == KEY_ID_LINK:
            self.link.check(reply, bound=frame.counter)
        return reply

    async def send(self, frame: LockFrame) -> LockFrame:
        """Write ``frame`` as it is and return the answer with its seq; WAKEs are kept."""
        return await self.send_raw(bytes(frame), frame.seq)

    async def send_raw(self, data: bytes, seq: int) -> LockFrame:
        self.sent.append(data)
        self.writer.write(data)
        while True:
            frame = await self.next_frame()
            if frame.type is FrameType.WAKE:
                self.wakes.append(frame)
            elif frame.seq == seq:
                return frame

    async def wait_wake(self) -> LockFrame:
        """The next unsolicited WAKE (one already received counts)."""
        while not self.wakes:
            frame = await self.next_frame()
            if frame.type is FrameType.WAKE:
                self.wakes.append(frame)
        return self.wakes.pop(0)

    async def events(self) -> list[WireEvent]:
        reply = await self.request(FrameType.GET_EVENTS, b"\xff")
        assert reply.type is FrameType.EVENTS
        return decode_events(reply.payload)

    async def load_pin(self, pin: str, *, now: int = T0) -> None:
        """Set the lock's clock and put ``pin`` in slot 0, valid for an hour around now."""
        ack = await self.request(FrameType.SET_TIME, encode_u32(now))
        assert ack.type is FrameType.ACK
        entry = SlotEntry(0, now - 3600, now + 3600, GRANT, pin_tag(PIN_KEY, pin))
        ack = await self.request(FrameType.SET_SLOT, entry.encode_set())
        assert ack.type is FrameType.ACK


@asynccontextmanager
async def hosted_lock(
    lock_id: str = "lock-1", *, link: Path | None = None, tick_s: float = 0.05
) -> AsyncIterator[tuple[LockPtyHost, ManualClock]]:
    clock = ManualClock(T0)
    firmware = LockFirmware(clock, PairingRecord(SECRETS))
    async with LockPtyHost(lock_id, firmware, link=link, tick_s=tick_s) as host:
        yield host, clock


@asynccontextmanager
async def serial_client(path: str, link: LinkAuth | None = None) -> AsyncIterator[SerialClient]:
    """A client on ``path``; pass the ``link`` of an earlier one to keep its counters."""
    reader, writer = await serial_asyncio_fast.open_serial_connection(url=path, baudrate=115200)
    client = SerialClient(reader, writer)
    if link is not None:
        client.link = link
    try:
        yield client
    finally:
        writer.close()
        await writer.wait_closed()
