"""Puts a :class:`LockFirmware` on a BLE GATT peripheral (bumble), as the pty host does on a
pseudo-terminal: the host only moves bytes.

The lock's service (:mod:`protocol.lock_gatt`) has an RX characteristic the agent writes
frame chunks to and a TX characteristic the lock notifies frame chunks on, each chunk at
most ``ATT_MTU - 3`` bytes; a :class:`~protocol.lock_wire.FrameParser` per connection
reassembles what arrives. Both characteristics require an encrypted link, and the lock
pairs only with LE Secure Connections and MITM protection: it refuses legacy pairing and
Just Works, and shows a 6-digit passkey on its display (``PAIR 123456`` on the control
page) for the technician to type. It bonds only inside its pairing-button window: outside
it a pairing request is refused (``PAIRING_NOT_SUPPORTED``) and counted with the refused
frames, so nobody in radio range can bond while the lock hangs on the wall; a bonded
gateway reconnects with its bond and needs no window. Notifications go only to encrypted
subscribers.

The radio is a bumble transport spec (``tcp-client:127.0.0.1:9100`` for the simulator hub,
``usb:0`` for a dongle) or, in tests, a :class:`bumble.link.LocalLink` in this process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace
from functools import partial
from pathlib import Path
from types import TracebackType

from bumble import core, smp
from bumble.controller import Controller
from bumble.core import UUID, AdvertisingData
from bumble.device import Connection, Device
from bumble.gatt import Characteristic, CharacteristicValue, Service
from bumble.hci import Address
from bumble.host import Host
from bumble.keys import JsonKeyStore, KeyStore, MemoryKeyStore
from bumble.link import LocalLink
from bumble.pairing import PairingConfig, PairingDelegate
from bumble.transport import open_transport
from bumble.transport.common import AsyncPipeSink

from firmware_sim.errors import SimulatorError, UnknownKeyError
from firmware_sim.lock.firmware import KEYS, LockFirmware, LockView
from firmware_sim.lock.state_file import save_pairing
from protocol.lock_gatt import RX_CHAR_UUID, SERVICE_UUID, TX_CHAR_UUID, split_for_att
from protocol.lock_wire import FrameParser, LockFrame

log = logging.getLogger(__name__)

_BUMBLE_ERRORS = (core.BaseError, core.BaseBumbleError, TimeoutError, OSError)
STOP_TIMEOUT_S = 2.0
MAX_NAME_IN_ADV = 8  # what is left of 31 bytes after the flags and the service UUID
MAX_NAME_IN_SCAN_RESPONSE = 29  # 31 bytes, less the field's length and type


class _LescOnlySession(smp.Session):
    """SMP as the lock plays it: LE Secure Connections with MITM protection, or nothing."""

    async def on_smp_pairing_request_command_async(
        self, command: smp.SMP_Pairing_Request_Command
    ) -> None:
        if not command.auth_req & smp.AuthReq.SC:
            log.warning("refused legacy BLE pairing from %s", self.connection.peer_address)
            self.send_pairing_failed(smp.ErrorCode.AUTHENTICATION_REQUIREMENTS)
            return
        self.decide_pairing_method(command.auth_req, command.io_capability, self.io_capability)
        if self.pairing_method == smp.PairingMethod.JUST_WORKS:
            log.warning("refused Just Works BLE pairing from %s", self.connection.peer_address)
            self.send_pairing_failed(smp.ErrorCode.AUTHENTICATION_REQUIREMENTS)
            return
        await super().on_smp_pairing_request_command_async(command)


class _PasskeyDisplay(PairingDelegate):
    """The lock has a display and no way to confirm: it shows the passkey, the peer types.
    It bonds only while its pairing window is open (``may_bond``)."""

    def __init__(self, show: Callable[[int], None], may_bond: Callable[[], bool]) -> None:
        super().__init__(io_capability=PairingDelegate.IoCapability.DISPLAY_OUTPUT_ONLY)
        self._show = show
        self._may_bond = may_bond

    async def accept(self) -> bool:
        return self._may_bond()

    async def display_number(self, number: int, digits: int) -> None:
        self._show(number)


class LockBleHost:
    """One lock as a BLE peripheral; ``async with LockBleHost(...)`` or start()/stop()."""

    def __init__(
        self,
        lock_id: str,
        firmware: LockFirmware,
        *,
        hci: str | LocalLink,
        address: str,
        tick_s: float = 0.2,
        state_file: Path | None = None,
        bond_file: Path | None = None,
    ) -> None:
        self.lock_id = lock_id
        self.firmware = firmware
        self.hci = hci
        self.ble_address = address
        self.tick_s = tick_s
        self.state_file = state_file
        if state_file is not None:  # the lock's flash: counters stored before it acts
            firmware.pairing.flash = partial(save_pairing, state_file)
        self.bond_file = bond_file
        self.passkey: int | None = None  # shown on the display while SMP pairing runs
        self._device: Device | None = None
        self._close_radio: Callable[[], Awaitable[None]] | None = None
        self._tx: Characteristic[bytes] | None = None
        self._parsers: dict[int, FrameParser] = {}
        self._outgoing: asyncio.Queue[tuple[Connection | None, bytes]] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def path(self) -> str:
        """Where the agent finds the lock: ``ble:AA:BB:CC:DD:EE:FF``."""
        return f"ble:{self.ble_address}"

    @property
    def connections(self) -> list[Connection]:
        """The centrals connected now."""
        return [] if self._device is None else list(self._device.connections.values())

    # ------------------------------------------------------------ life cycle

    async def start(self) -> None:
        """Open the radio, serve the lock service and advertise."""
        device = await self._open_radio()
        self._device = device
        rx: Characteristic[bytes] = Characteristic(
            UUID(RX_CHAR_UUID),
            Characteristic.Properties.WRITE,
            Characteristic.WRITEABLE | Characteristic.WRITE_REQUIRES_ENCRYPTION,
            CharacteristicValue(write=self._on_rx),
        )
        self._tx = Characteristic(
            UUID(TX_CHAR_UUID),
            Characteristic.Properties.NOTIFY,
            Characteristic.READABLE | Characteristic.READ_REQUIRES_ENCRYPTION,
            b"",
        )
        device.add_service(Service(UUID(SERVICE_UUID), [rx, self._tx]))
        device.keystore = self._keystore()
        device.pairing_config_factory = lambda _conn: PairingConfig(
            sc=True,
            mitm=True,
            bonding=True,
            delegate=_PasskeyDisplay(self._show_passkey, self._may_bond),
        )
        device.smp_session_proxy = _LescOnlySession
        device.on("connection", self._on_connection)
        await device.power_on()
        await device.start_advertising(
            auto_restart=True,
            advertising_data=bytes(self._advertising_data()),
            scan_response_data=bytes(self._scan_response()),
            advertising_interval_min=20,
            advertising_interval_max=20,
        )
        self._tasks = [
            asyncio.create_task(self._send_loop(), name=f"lock-{self.lock_id}-ble-tx"),
            asyncio.create_task(self._tick_loop(), name=f"lock-{self.lock_id}-tick"),
        ]
        log.info("lock %s advertising on BLE as %s", self.lock_id, self.ble_address)

    async def stop(self) -> None:
        """Stop ticking, drop every central, stop advertising and close the radio."""
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        device, self._device = self._device, None
        if device is not None:
            # a dead radio (or a peer gone from the air) cannot be told anything
            with contextlib.suppress(*_BUMBLE_ERRORS):
                async with asyncio.timeout(STOP_TIMEOUT_S):
                    await device.stop_advertising()
                    for connection in list(device.connections.values()):
                        await connection.disconnect()
                    await device.power_off()
        if self._close_radio is not None:
            await self._close_radio()
            self._close_radio = None
        log.info("lock %s stopped", self.lock_id)

    async def __aenter__(self) -> LockBleHost:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def _open_radio(self) -> Device:
        address = Address(self.ble_address)
        if isinstance(self.hci, LocalLink):
            link = self.hci
            controller = Controller(f"lock-{self.lock_id}", link=link)

            async def remove() -> None:
                with contextlib.suppress(KeyError):
                    link.remove_controller(controller)

            self._close_radio = remove
            host = Host(controller, AsyncPipeSink(controller))
            return Device(name=self.lock_id, address=address, host=host)
        try:
            transport = await open_transport(self.hci)
        except (OSError, ValueError) as exc:
            raise SimulatorError(
                f"lock {self.lock_id}: BLE radio {self.hci} did not open ({exc}): "
                "is `denen-sim ble-hub` running on that port?"
            ) from exc
        self._close_radio = transport.close
        return Device.with_hci(self.lock_id, address, transport.source, transport.sink)

    def _keystore(self) -> KeyStore:
        if self.bond_file is None:
            return MemoryKeyStore()
        return JsonKeyStore(self.ble_address, str(self.bond_file))

    def _advertising_data(self) -> AdvertisingData:
        # flags (3) + service UUID (18) leave 10 bytes: a name of up to 8 characters. The
        # full name is in the scan response; bumble's virtual controller echoes the
        # advertising data as scan response, so in simulation long ids arrive shortened.
        return AdvertisingData(
            [
                (AdvertisingData.FLAGS, bytes([0x06])),  # LE general discoverable, no BR/EDR
                (
                    AdvertisingData.COMPLETE_LIST_OF_128_BIT_SERVICE_CLASS_UUIDS,
                    bytes(UUID(SERVICE_UUID)),
                ),
                _name_field(self.lock_id, MAX_NAME_IN_ADV),
            ]
        )

    def _scan_response(self) -> AdvertisingData:
        return AdvertisingData([_name_field(self.lock_id, MAX_NAME_IN_SCAN_RESPONSE)])

    # ------------------------------------------------- what a person does at the door

    def press(self, keys: str) -> LockView:
        """Press ``keys`` in order (all checked first); return what the lock shows after."""
        for key in keys:
            if key not in KEYS:
                raise UnknownKeyError(key)
        for key in keys:
            self.firmware.press(key)
        self.flush()
        return self.view()

    def door(self, *, open_: bool, from_inside: bool = False) -> bool:
        """Open or close the door; False when it did not move."""
        if open_:
            moved = self.firmware.open_door(from_inside=from_inside)
        else:
            moved = self.firmware.close_door()
        self.flush()
        return moved

    def view(self) -> LockView:
        """What the lock shows now; the BLE passkey while pairing runs."""
        view = self.firmware.view()
        if self.passkey is not None:
            return replace(view, display=f"PAIR {self.passkey:06d}")
        return view

    def pair_button(self) -> LockView:
        """Press the pairing button: the lock bonds and takes PAIR in the next 60 s."""
        self.firmware.press_pair_button()
        return self.view()

    # ------------------------------------------------------------ bytes

    def flush(self) -> None:
        """Send the WAKE the firmware owes the agent, if any, to every encrypted central."""
        frames = self.firmware.take_unsolicited()
        self._persist()
        for frame in frames:
            self._outgoing.put_nowait((None, bytes(frame)))

    def _persist(self) -> None:
        # before the frames go out: a counter on the air is never one the file lacks
        pairing = self.firmware.pairing
        if pairing.persist_due:
            pairing.persist_due = False
            record = pairing.record()
            if self.state_file is not None and record is not None:
                save_pairing(self.state_file, record)

    def _may_bond(self) -> bool:
        if self.firmware.pairing.window_remaining() > 0:
            return True
        log.warning("lock %s: refused BLE bonding outside the pairing window", self.lock_id)
        self.firmware.pairing.refuse()
        return False

    def _show_passkey(self, number: int) -> None:
        self.passkey = number  # never logged: it is what makes the pairing MITM-safe

    def _on_connection(self, connection: Connection) -> None:
        handle = connection.handle
        self._parsers[handle] = FrameParser()

        def done(*_: object) -> None:
            self.passkey = None

        def gone(_reason: int) -> None:
            self._parsers.pop(handle, None)
            done()

        connection.on("pairing", done)
        connection.on("pairing_failure", done)
        connection.on("disconnection", gone)

    def _on_rx(self, connection: Connection, value: bytes) -> None:
        parser = self._parsers.setdefault(connection.handle, FrameParser())
        for frame in parser.feed(bytes(value)):
            replies = self.firmware.receive(frame)
            self._persist()
            for reply in replies:
                self._reply(connection, reply)
        self.flush()

    def _reply(self, connection: Connection, frame: LockFrame) -> None:
        self._outgoing.put_nowait((connection, bytes(frame)))

    async def _send_loop(self) -> None:
        # one sender keeps each frame's chunks together and frames in order
        while True:
            target, data = await self._outgoing.get()
            device, tx = self._device, self._tx
            if device is None or tx is None:
                continue
            targets = [target] if target is not None else list(device.connections.values())
            for connection in targets:
                if not connection.is_encrypted or connection.handle not in self._parsers:
                    continue  # nothing leaves the lock on a link that is not encrypted
                try:
                    for chunk in split_for_att(data, connection.att_mtu):
                        await device.notify_subscriber(connection, tx, chunk)
                except _BUMBLE_ERRORS as exc:  # a central that vanished mid-frame
                    log.debug("lock %s: notification lost: %s", self.lock_id, exc)

    async def _tick_loop(self) -> None:
        while True:
            await asyncio.sleep(self.tick_s)
            self.firmware.tick()
            self.flush()


def _name_field(lock_id: str, room: int) -> tuple[int, bytes]:
    name = lock_id.encode()
    if len(name) <= room:
        return AdvertisingData.COMPLETE_LOCAL_NAME, name
    return AdvertisingData.SHORTENED_LOCAL_NAME, name[:room]


def bond_file_for(state_file: Path | None) -> Path | None:
    """Where a lock with ``state_file`` keeps its BLE bonds (next to it), if anywhere."""
    if state_file is None:
        return None
    return state_file.with_name(state_file.stem + ".bonds.json")
