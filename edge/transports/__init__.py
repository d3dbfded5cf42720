"""Lock transports, chosen by a spec string (``serial:/dev/ttyUSB0``, ``ble:AA:BB:…``)."""

from __future__ import annotations

from edge.errors import UnsupportedTransport
from edge.transports.base import LockTransport
from edge.transports.ble import BleCentral, BleTransport, PasskeyPrompt, open_central
from edge.transports.serial_port import SerialTransport
from edge.transports.spec import TransportKind, TransportSpec, parse_spec

__all__ = [
    "BleCentral",
    "LockTransport",
    "TransportKind",
    "TransportSpec",
    "open_central",
    "open_transport",
    "parse_spec",
]


async def open_transport(
    spec: str | TransportSpec,
    *,
    lock_id: str,
    ble: BleCentral | None = None,
    passkey: PasskeyPrompt | None = None,
) -> LockTransport:
    """Open the transport a spec names, like bumble's ``open_transport``.

    ``ble:`` locks go through ``ble``, the gateway's radio (see ``[ble]`` in the site
    config); ``passkey`` is given only when pairing, to type the code the lock displays.
    Raises ``LockUnreachable`` when the device is not there.
    """
    parsed = parse_spec(spec) if isinstance(spec, str) else spec
    if parsed.kind in (TransportKind.SERIAL, TransportKind.PTY):
        serial = SerialTransport(lock_id, parsed.address)
        await serial.open()
        return serial
    if ble is None:
        raise UnsupportedTransport(
            f"lock {lock_id} is on BLE but this process has no BLE radio: "
            'set [ble] hci in the site config (e.g. hci = "bleak")'
        )
    transport = BleTransport(lock_id, parsed.address, ble, passkey=passkey)
    await transport.open()
    return transport
