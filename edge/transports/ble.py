"""BLE lock transport: the lock's frames over its GATT service (:mod:`protocol.lock_gatt`).

Two small interfaces keep the radio stack out of the agent:

* :class:`BleCentral`: one radio (adapter) of the gateway; scans for Denen locks and opens
  a :class:`GattSession` to one of them, encrypted, with LE Secure Connections;
* :class:`GattSession`: one connection; writes chunks to the lock's RX characteristic and
  hands over the TX notifications.

Implementations: :mod:`edge.transports.ble_bleak` (BlueZ on the Pi) and
:mod:`edge.transports.ble_bumble` (bumble: the simulator hub in CI, or a USB HCI dongle).
The site config chooses one with ``[ble] hci``: ``"bleak"``, or a bumble transport spec such
as ``"usb:0"`` or ``"tcp-client:127.0.0.1:9100"``. Each is imported only when chosen.

:class:`BleTransport` is the :class:`~edge.transports.base.LockTransport` on top: it cuts
frames to the ATT MTU on the way out, and passes notifications through on the way in (the
agent's :class:`~protocol.lock_wire.FrameParser` reassembles them). Radio errors become
:class:`~edge.errors.LockUnreachable` with a hint saying what to do.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from edge.errors import EdgeError, LockUnreachable
from protocol.lock_gatt import split_for_att

PasskeyPrompt = Callable[[], Awaitable[int]]
"""Asks the technician for the 6-digit passkey the lock shows on its display."""

BLEAK = "bleak"
REACH_HINT = (
    "check that the lock is powered and within range of the gateway's BLE radio, "
    "then `denen provision doctor`"
)


class BleLinkError(EdgeError, ConnectionError):
    """The radio, the connection or its security failed; ``hint`` says what to do."""

    def __init__(self, reason: str, hint: str = REACH_HINT) -> None:
        super().__init__(reason)
        self.reason = reason
        self.hint = hint


class BleSecurityError(BleLinkError):
    """The link could not be encrypted with LE Secure Connections (no bond, wrong passkey,
    legacy or Just Works pairing refused)."""


@dataclass(frozen=True, slots=True)
class BleAdvert:
    """A Denen lock heard in a scan."""

    name: str
    address: str
    rssi: int | None


class GattSession(Protocol):
    """One encrypted connection to a lock's GATT service."""

    @property
    def att_mtu(self) -> int:
        """The ATT MTU agreed for this connection."""
        ...

    @property
    def rssi(self) -> int | None:
        """The lock's signal strength in dBm as last heard, ``None`` when unknown."""
        ...

    async def write(self, chunk: bytes) -> None:
        """Write one chunk (at most ``att_mtu - 3`` bytes) to RX, with response."""
        ...

    async def notification(self) -> bytes:
        """The next TX notification; :class:`BleLinkError` once the link dropped."""
        ...

    async def disconnect(self) -> None:
        """Drop the connection; safe to call twice or after the link dropped."""
        ...


class BleCentral(Protocol):
    """The gateway's BLE radio, shared by every BLE lock of the site."""

    @property
    def radio(self) -> str:
        """What the radio is, for messages (``bleak``, ``tcp-client:127.0.0.1:9100``)."""
        ...

    async def scan(self, timeout_s: float) -> list[BleAdvert]:
        """Denen locks advertising nearby (by the lock service UUID), strongest first."""
        ...

    async def connect(self, address: str, *, passkey: PasskeyPrompt | None = None) -> GattSession:
        """Connect, encrypt with the stored bond (or pair with ``passkey``), subscribe."""
        ...

    async def close(self) -> None:
        """Drop every connection and release the radio."""
        ...


def open_central(
    hci: str,
    *,
    state_dir: Path | None,
    own_address: str | None = None,
    connect_timeout_s: float = 10.0,
) -> BleCentral:
    """The radio ``[ble] hci`` names; opens nothing until the first scan or connect.

    bumble keeps its bonds (the LE long-term keys) in ``state_dir/ble/``, or in memory when
    ``state_dir`` is None (a scan needs none); BlueZ keeps them itself.
    """
    if hci == BLEAK:
        from edge.transports.ble_bleak import BleakCentral  # noqa: PLC0415 - optional stack

        return BleakCentral(connect_timeout_s=connect_timeout_s)
    try:
        from edge.transports.ble_bumble import BumbleCentral  # noqa: PLC0415 - optional stack
    except ImportError as exc:
        raise BleLinkError(
            f"[ble] hci = {hci!r} needs bumble, which is not installed",
            'install it (`pip install bumble`) or set hci = "bleak"',
        ) from exc
    return BumbleCentral.from_hci(
        hci,
        bond_dir=None if state_dir is None else state_dir / "ble",
        own_address=own_address,
        connect_timeout_s=connect_timeout_s,
    )


class BleTransport:
    """A lock over BLE; ``address`` reads ``ble:AA:BB:CC:DD:EE:FF``."""

    def __init__(
        self,
        lock_id: str,
        ble_address: str,
        central: BleCentral,
        *,
        passkey: PasskeyPrompt | None = None,
    ) -> None:
        self.lock_id = lock_id
        self.ble_address = ble_address
        self.central = central
        self.passkey = passkey
        self._session: GattSession | None = None

    @property
    def address(self) -> str:
        return f"ble:{self.ble_address}"

    @property
    def att_mtu(self) -> int | None:
        """The connection's ATT MTU, ``None`` while not connected."""
        return None if self._session is None else self._session.att_mtu

    @property
    def rssi(self) -> int | None:
        """The lock's signal strength in dBm when connected, ``None`` when not known."""
        return None if self._session is None else self._session.rssi

    def _unreachable(self, exc: BleLinkError) -> LockUnreachable:
        return LockUnreachable(self.lock_id, self.address, exc.reason, hint=exc.hint)

    async def open(self) -> None:
        """Connect and secure the link; ``LockUnreachable`` says why it could not."""
        try:
            self._session = await self.central.connect(self.ble_address, passkey=self.passkey)
        except BleLinkError as exc:
            raise self._unreachable(exc) from exc

    async def send(self, data: bytes) -> None:
        """Write ``data`` as consecutive chunks that each fit one ATT write."""
        session = self._require()
        try:
            for chunk in split_for_att(data, session.att_mtu):
                await session.write(chunk)
        except BleLinkError as exc:
            raise self._unreachable(exc) from exc

    async def receive(self) -> bytes:
        """The next notification's bytes; ``LockUnreachable`` when the link dropped."""
        session = self._require()
        try:
            return await session.notification()
        except BleLinkError as exc:
            raise self._unreachable(exc) from exc

    async def close(self) -> None:
        """Disconnect; errors while dropping a dead link are not worth raising."""
        session, self._session = self._session, None
        if session is not None:
            with contextlib.suppress(BleLinkError):
                await session.disconnect()

    def _require(self) -> GattSession:
        if self._session is None:
            raise LockUnreachable(self.lock_id, self.address, "not open", hint=REACH_HINT)
        return self._session
