"""bumble plumbing for :mod:`edge.transports.ble_bumble`: one GATT session, the passkey
delegate, advertisement parsing, and the two ways to get a bumble device (a transport spec,
or a virtual controller in this process)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from bumble import core, hci
from bumble.controller import Controller
from bumble.core import UUID, AdvertisingData
from bumble.device import Advertisement, Connection, Device
from bumble.gatt_client import CharacteristicProxy
from bumble.host import Host
from bumble.link import LocalLink
from bumble.pairing import PairingDelegate
from bumble.transport import open_transport
from bumble.transport.common import AsyncPipeSink

from edge.transports.ble import BleLinkError, PasskeyPrompt

# what bumble raises at its boundary: HCI, ATT and SMP errors, timeouts, a dead transport
BUMBLE_ERRORS = (core.BaseError, core.BaseBumbleError, TimeoutError, OSError)

Closer = Callable[[], Awaitable[None]]
DeviceOpener = Callable[[hci.Address], Awaitable[tuple[Device, Closer]]]


def service_uuids(adv: Advertisement) -> list[UUID]:
    out: list[UUID] = []
    for kind in (
        AdvertisingData.COMPLETE_LIST_OF_128_BIT_SERVICE_CLASS_UUIDS,
        AdvertisingData.INCOMPLETE_LIST_OF_128_BIT_SERVICE_CLASS_UUIDS,
    ):
        out += adv.data.get(kind) or []
    return out


def advertised_name(adv: Advertisement) -> tuple[str, bool] | None:
    """The advertised name and whether it is complete."""
    for kind in (AdvertisingData.COMPLETE_LOCAL_NAME, AdvertisingData.SHORTENED_LOCAL_NAME):
        name = adv.data.get(kind)
        if isinstance(name, str):
            return name, kind == AdvertisingData.COMPLETE_LOCAL_NAME
    return None


class PasskeyEntry(PairingDelegate):
    """The gateway types the passkey the lock displays (LESC passkey entry, MITM-safe)."""

    def __init__(self, prompt: PasskeyPrompt) -> None:
        super().__init__(io_capability=PairingDelegate.IoCapability.KEYBOARD_INPUT_ONLY)
        self._prompt = prompt

    async def get_number(self) -> int | None:
        return await self._prompt()


class BumbleSession:
    """One encrypted connection to a lock, subscribed to its TX characteristic."""

    def __init__(self, connection: Connection, rx: CharacteristicProxy[bytes]) -> None:
        self.connection = connection
        self.rx = rx
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.lost_reason: str | None = None
        self.rssi: int | None = None  # dBm of the advertisement heard before connecting

    @property
    def att_mtu(self) -> int:
        return int(self.connection.att_mtu)

    def on_notification(self, value: bytes) -> None:
        self.queue.put_nowait(bytes(value))

    def on_disconnection(self, reason: int) -> None:
        try:
            self.lost_reason = hci.HCI_ErrorCode(reason).name
        except ValueError:
            self.lost_reason = f"HCI error 0x{reason:02x}"
        self.queue.put_nowait(None)

    async def write(self, chunk: bytes) -> None:
        if self.lost_reason is not None:
            raise BleLinkError(f"the BLE link dropped ({self.lost_reason})")
        try:
            await self.rx.write_value(chunk, with_response=True)
        except BUMBLE_ERRORS as exc:
            raise BleLinkError(f"write failed: {exc}") from exc

    async def notification(self) -> bytes:
        value = await self.queue.get()
        if value is None:
            self.queue.put_nowait(None)  # every later call fails the same way
            raise BleLinkError(f"the BLE link dropped ({self.lost_reason})")
        return value

    async def disconnect(self) -> None:
        if self.lost_reason is None:
            with contextlib.suppress(*BUMBLE_ERRORS):
                await self.connection.disconnect()


def in_process_radio(link: LocalLink, name: str) -> DeviceOpener:
    """A virtual controller on ``link`` in this process (tests, one-process demos)."""

    async def opener(address: hci.Address) -> tuple[Device, Closer]:
        controller = Controller(name, link=link)
        device = Device(
            name=name, address=address, host=Host(controller, AsyncPipeSink(controller))
        )

        async def close() -> None:
            with contextlib.suppress(KeyError):
                link.remove_controller(controller)

        return device, close

    return opener


def transport_radio(spec: str, name: str) -> DeviceOpener:
    """A controller behind a bumble transport spec (``usb:0``, ``tcp-client:HOST:PORT``)."""

    async def opener(address: hci.Address) -> tuple[Device, Closer]:
        transport = await open_transport(spec)
        device = Device.with_hci(name, address, transport.source, transport.sink)

        async def close() -> None:
            await transport.close()

        return device, close

    return opener
