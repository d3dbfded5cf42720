"""The small interface every lock transport implements. Domain code sees only this."""

from __future__ import annotations

from typing import Protocol


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
