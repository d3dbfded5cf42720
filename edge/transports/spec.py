"""Transport spec strings (``serial:/dev/ttyUSB0``, ``pty:/dev/pts/3``, ``ble:AA:BB:…``).

Parsing is pure so the config loader can refuse a bad spec before anything is opened.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from edge.errors import UnsupportedTransport

_BLE_ADDRESS = re.compile(r"[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}")


class TransportKind(StrEnum):
    SERIAL = "serial"
    PTY = "pty"  # a pseudo-terminal is driven exactly like a serial port
    BLE = "ble"


@dataclass(frozen=True, slots=True)
class TransportSpec:
    kind: TransportKind
    address: str

    def __str__(self) -> str:
        return f"{self.kind.value}:{self.address}"


def parse_spec(spec: str) -> TransportSpec:
    """Split ``kind:address`` and check the address; raise ``ValueError`` saying why."""
    kind_text, sep, address = spec.partition(":")
    if not sep or not address:
        raise ValueError(f"{spec!r} is not 'kind:address' (e.g. 'serial:/dev/ttyUSB0')")
    try:
        kind = TransportKind(kind_text)
    except ValueError:
        known = ", ".join(k.value for k in TransportKind)
        raise UnsupportedTransport(f"unknown transport {kind_text!r} (known: {known})") from None
    if kind in (TransportKind.SERIAL, TransportKind.PTY) and not address.startswith("/"):
        raise ValueError(f"{kind.value} address {address!r} is not an absolute device path")
    if kind is TransportKind.BLE and not _BLE_ADDRESS.fullmatch(address):
        raise ValueError(f"ble address {address!r} is not AA:BB:CC:DD:EE:FF")
    return TransportSpec(kind, address)
