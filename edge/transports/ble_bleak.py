"""The BLE central on bleak (BlueZ over D-Bus): what a Raspberry Pi runs.

Not exercised in CI (no BlueZ here); the bumble central is the tested twin. bleak is
imported when this radio is first used, so an agent without BLE locks never needs it.

Security: BlueZ keeps the bonds. :meth:`BleakCentral.connect` asks BlueZ to pair when a
passkey prompt is given (technician's pairing); BlueZ's registered agent (e.g.
``bluetoothctl`` with ``agent KeyboardOnly``) asks for the passkey the lock displays, so
``passkey`` itself is not called here. The lock refuses anything but LE Secure
Connections with MITM protection, and its characteristics need an encrypted link, so a
write on a link that is not secured fails and is reported as such.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any

from edge.transports.ble import BleAdvert, BleLinkError, BleSecurityError, PasskeyPrompt
from protocol.lock_gatt import ATT_DEFAULT_MTU, RX_CHAR_UUID, SERVICE_UUID, TX_CHAR_UUID

if TYPE_CHECKING:
    from bleak import BleakClient


def _bleak() -> Any:
    try:
        import bleak  # noqa: PLC0415 - imported only when the radio is used
    except ImportError as exc:
        raise BleLinkError(
            "bleak is not installed", "install the agent with its extras: pip install denen[edge]"
        ) from exc
    return bleak


class BleakSession:
    """One connection through BlueZ, subscribed to the lock's TX characteristic."""

    def __init__(self, client: BleakClient) -> None:
        self.client = client
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.rssi: int | None = None  # BlueZ does not report it for a connection

    @property
    def att_mtu(self) -> int:
        return max(int(self.client.mtu_size), ATT_DEFAULT_MTU)

    def on_notification(self, _char: object, value: bytearray) -> None:
        self.queue.put_nowait(bytes(value))

    def on_disconnect(self, _client: object) -> None:
        self.queue.put_nowait(None)

    async def write(self, chunk: bytes) -> None:
        bleak = _bleak()
        try:
            await self.client.write_gatt_char(RX_CHAR_UUID, chunk, response=True)
        except (bleak.exc.BleakError, OSError, TimeoutError) as exc:
            raise BleLinkError(f"write failed: {exc}") from exc

    async def notification(self) -> bytes:
        value = await self.queue.get()
        if value is None:
            self.queue.put_nowait(None)
            raise BleLinkError("the BLE link dropped")
        return value

    async def disconnect(self) -> None:
        bleak = _bleak()
        with contextlib.suppress(bleak.exc.BleakError, OSError, TimeoutError):
            await self.client.disconnect()


class BleakCentral:
    """The Pi's adapter through bleak; BlueZ shares it between processes."""

    def __init__(self, *, connect_timeout_s: float = 10.0) -> None:
        self.connect_timeout_s = connect_timeout_s
        self._sessions: set[BleakSession] = set()

    @property
    def radio(self) -> str:
        return "bleak"

    async def scan(self, timeout_s: float) -> list[BleAdvert]:
        """Denen locks heard within ``timeout_s`` (by service UUID), strongest first."""
        bleak = _bleak()
        try:
            found = await bleak.BleakScanner.discover(
                timeout=timeout_s, return_adv=True, service_uuids=[SERVICE_UUID]
            )
        except (bleak.exc.BleakError, OSError) as exc:
            raise BleLinkError(
                f"scanning failed: {exc}",
                "check that bluetoothd runs: `systemctl status bluetooth`",
            ) from exc
        adverts = [
            BleAdvert(adv.local_name or device.name or "", device.address, adv.rssi)
            for device, adv in found.values()
        ]
        return sorted(adverts, key=lambda a: -(a.rssi if a.rssi is not None else -999))

    async def connect(self, address: str, *, passkey: PasskeyPrompt | None = None) -> BleakSession:
        """Connect, pair through BlueZ when pairing, and subscribe to TX."""
        bleak = _bleak()
        session: BleakSession | None = None

        def dropped(client: object) -> None:
            if session is not None:
                session.on_disconnect(client)

        client = bleak.BleakClient(
            address, disconnected_callback=dropped, timeout=self.connect_timeout_s
        )
        try:
            await client.connect()
        except (bleak.exc.BleakError, OSError, TimeoutError) as exc:
            raise BleLinkError(f"no BLE connection ({exc or 'timeout'})") from exc
        session = BleakSession(client)
        try:
            if passkey is not None:
                try:
                    await client.pair()
                except (bleak.exc.BleakError, OSError, TimeoutError) as exc:
                    raise BleSecurityError(
                        f"BLE pairing failed ({exc})",
                        "type the 6-digit code the lock shows into the BlueZ agent",
                    ) from exc
            await client.start_notify(TX_CHAR_UUID, session.on_notification)
        except (bleak.exc.BleakError, OSError, TimeoutError) as exc:
            await session.disconnect()
            raise BleSecurityError(
                f"the lock refused the link ({exc}): it needs an LE Secure Connections bond",
                f"pair it: `denen provision lock pair --ble {address} --id LOCK_ID`",
            ) from exc
        except BleLinkError:
            await session.disconnect()
            raise
        self._sessions.add(session)
        return session

    async def close(self) -> None:
        """Disconnect every lock; BlueZ owns the adapter."""
        for session in list(self._sessions):
            await session.disconnect()
        self._sessions.clear()
