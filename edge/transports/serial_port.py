"""Serial (and pty) lock transport over pyserial-asyncio-fast.

The only module of the agent that imports ``serial``: ``SerialException`` and ``OSError``
become :class:`edge.errors.LockUnreachable` here.
"""

from __future__ import annotations

import asyncio
import contextlib

import serial
import serial_asyncio_fast

from edge.errors import LockUnreachable

READ_CHUNK = 4096


class SerialTransport:
    """A lock on a serial line; ``address`` is the device path."""

    def __init__(self, lock_id: str, address: str, baudrate: int = 115200) -> None:
        self.lock_id = lock_id
        self._address = address
        self.baudrate = baudrate
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    @property
    def address(self) -> str:
        return self._address

    def _unreachable(self, exc: BaseException) -> LockUnreachable:
        return LockUnreachable(self.lock_id, self._address, str(exc) or type(exc).__name__)

    async def open(self) -> None:
        """Open the port; a missing device or a busy port raises ``LockUnreachable``."""
        try:
            self._reader, self._writer = await serial_asyncio_fast.open_serial_connection(
                url=self._address, baudrate=self.baudrate
            )
        except (serial.SerialException, OSError) as exc:
            raise self._unreachable(exc) from exc

    async def send(self, data: bytes) -> None:
        """Write ``data`` and wait until the driver took it."""
        if self._writer is None:
            raise LockUnreachable(self.lock_id, self._address, "not open")
        try:
            self._writer.write(data)
            await self._writer.drain()
        except (serial.SerialException, OSError) as exc:
            raise self._unreachable(exc) from exc

    async def receive(self) -> bytes:
        """The next chunk the line delivered; ``LockUnreachable`` on hang-up."""
        if self._reader is None:
            raise LockUnreachable(self.lock_id, self._address, "not open")
        try:
            data = await self._reader.read(READ_CHUNK)
        except (serial.SerialException, OSError) as exc:
            raise self._unreachable(exc) from exc
        if not data:
            raise LockUnreachable(self.lock_id, self._address, "the line was hung up")
        return data

    async def close(self) -> None:
        """Close the port; errors while closing a dead line are not worth raising."""
        writer, self._writer, self._reader = self._writer, None, None
        if writer is None:
            return
        writer.close()
        with contextlib.suppress(serial.SerialException, OSError):
            await writer.wait_closed()
