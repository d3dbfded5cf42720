"""The small interface every lock transport implements. Domain code sees only this."""

from __future__ import annotations

from typing import Protocol, runtime_checkable


class LockTransport(Protocol):
    """A byte pipe to one lock. Errors surface as :class:`edge.errors.LockUnreachable`."""

    @property
    def address(self) -> str:
        """Where the lock is, for messages (``/dev/ttyUSB0``)."""
        ...

    async def open(self) -> None:
        """Connect; raise ``LockUnreachable`` when the device is not there."""
        ...

    async def send(self, data: bytes) -> None:
        """Write all of ``data``."""
        ...

    async def receive(self) -> bytes:
        """The next chunk of bytes (never empty); ``LockUnreachable`` when the line drops."""
        ...

    async def close(self) -> None:
        """Release the device; safe to call twice or after a failed ``open``."""
        ...


@runtime_checkable
class ReportsSignal(Protocol):
    """A transport that knows the lock's radio signal strength (BLE)."""

    @property
    def rssi(self) -> int | None:
        """dBm as last heard; ``None`` when not known."""
        ...
