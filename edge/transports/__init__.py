"""Lock transports, chosen by a spec string (``serial:/dev/ttyUSB0``)."""

from __future__ import annotations

from edge.errors import UnsupportedTransport
from edge.transports.base import LockTransport
from edge.transports.serial_port import SerialTransport
from edge.transports.spec import TransportKind, TransportSpec, parse_spec

__all__ = ["LockTransport", "TransportKind", "TransportSpec", "open_transport", "parse_spec"]


async def open_transport(spec: str | TransportSpec, *, lock_id: str) -> LockTransport:
    """Open the transport a spec names, like bumble's ``open_transport``.

    Raises ``LockUnreachable`` when the device is not there and ``UnsupportedTransport``
    for ``ble:`` (modelled in the config, not driven yet).
    """
    parsed = parse_spec(spec) if isinstance(spec, str) else spec
    if parsed.kind in (TransportKind.SERIAL, TransportKind.PTY):
        transport = SerialTransport(lock_id, parsed.address)
        await transport.open()
        return transport
    raise UnsupportedTransport(
        f"lock {lock_id}: transport {parsed.kind.value!r} is not supported yet"
    )
