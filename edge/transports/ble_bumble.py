"""The BLE central on bumble: a USB HCI dongle (``usb:0``), the simulator hub
(``tcp-client:127.0.0.1:9100``), any bumble transport spec, or a virtual radio in the same
process (a :class:`bumble.link.LocalLink`, for tests).

Security: before a lock's characteristics are touched the link is encrypted, either with
the bond kept from an earlier pairing (``bond_dir/bonds.json``, in a 0700 directory) or,
when the caller gives a passkey prompt (pairing), by SMP pairing with LE Secure
Connections and MITM protection: the lock shows a 6-digit passkey, the technician types
it. A bond that is not an authenticated LE Secure Connections key is refused, so the lock's
keys never travel on a Just Works or legacy link. The central's own random static address
is kept in ``bond_dir/address`` so the lock recognises the same gateway across restarts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
from pathlib import Path

from bumble import hci, smp
from bumble.core import UUID
from bumble.device import Advertisement, Connection, Device, Peer
from bumble.keys import JsonKeyStore, KeyStore, MemoryKeyStore, PairingKeys
from bumble.link import LocalLink
from bumble.pairing import PairingConfig, PairingDelegate

from edge.transports.ble import BleAdvert, BleLinkError, BleSecurityError, PasskeyPrompt
from edge.transports.ble_bumble_link import (
    BUMBLE_ERRORS,
    BumbleSession,
    Closer,
    DeviceOpener,
    PasskeyEntry,
    advertised_name,
    in_process_radio,
    service_uuids,
    transport_radio,
)
from protocol.lock_gatt import (
    ATT_DEFAULT_MTU,
    ATT_PREFERRED_MTU,
    RX_CHAR_UUID,
    SERVICE_UUID,
    TX_CHAR_UUID,
)

log = logging.getLogger(__name__)

_REPAIR = "pair the lock again: `denen provision lock pair --ble {address} --id LOCK_ID`"


class BumbleCentral:
    """The gateway's radio on bumble; one :class:`bumble.device.Device`, opened lazily."""

    def __init__(
        self,
        open_device: DeviceOpener,
        *,
        radio: str,
        bond_dir: Path | None,
        own_address: str | None = None,
        connect_timeout_s: float = 10.0,
        preferred_mtu: int = ATT_PREFERRED_MTU,
    ) -> None:
        self._open_device = open_device
        self._radio = radio
        self.bond_dir = bond_dir
        self.own_address = own_address
        self.connect_timeout_s = connect_timeout_s
        self.preferred_mtu = preferred_mtu
        self._device: Device | None = None
        self._closer: Closer | None = None
        self._start_lock = asyncio.Lock()
        self._connect_lock = asyncio.Lock()  # one LE connection attempt at a time
        self._prompts: dict[int, PasskeyPrompt] = {}
        self._sessions: set[BumbleSession] = set()

    @classmethod
    def from_hci(
        cls,
        hci_spec: str | LocalLink,
        *,
        bond_dir: Path | None,
        own_address: str | None = None,
        connect_timeout_s: float = 10.0,
        preferred_mtu: int = ATT_PREFERRED_MTU,
    ) -> BumbleCentral:
        """A central on a bumble transport spec, or on a virtual ``LocalLink``."""
        if isinstance(hci_spec, LocalLink):
            opener, radio = in_process_radio(hci_spec, "denen-agent"), "local-link"
        else:
            opener, radio = transport_radio(hci_spec, "denen-agent"), hci_spec
        return cls(
            opener,
            radio=radio,
            bond_dir=bond_dir,
            own_address=own_address,
            connect_timeout_s=connect_timeout_s,
            preferred_mtu=preferred_mtu,
        )

    @property
    def radio(self) -> str:
        return self._radio

    # ------------------------------------------------------------ radio

    async def _started(self) -> Device:
        async with self._start_lock:
            if self._device is not None:
                return self._device
            address = hci.Address(self._address())
            try:
                device, closer = await self._open_device(address)
            except BUMBLE_ERRORS as exc:
                raise BleLinkError(
                    f"the BLE radio {self._radio} did not open: {exc}",
                    "check [ble] hci in the site config (and that the dongle or hub is there)",
                ) from exc
            device.keystore = self._keystore(str(address))
            device.pairing_config_factory = self._pairing_config
            try:
                await device.power_on()
            except BUMBLE_ERRORS as exc:
                await closer()
                raise BleLinkError(f"the BLE radio {self._radio} did not start: {exc}") from exc
            self._device, self._closer = device, closer
            return device

    def _address(self) -> str:
        if self.own_address is not None:
            return self.own_address
        if self.bond_dir is None:
            return "F1:00:00:00:00:01"
        path = self.bond_dir / "address"
        if path.exists():
            return path.read_text().strip()
        raw = bytearray(secrets.token_bytes(6))
        raw[0] |= 0xC0  # a random static address has its two top bits set
        address = ":".join(f"{b:02X}" for b in raw)
        self._bond_dir_ready()
        path.write_text(address + "\n")
        return address

    def _bond_dir_ready(self) -> Path:
        assert self.bond_dir is not None
        self.bond_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.bond_dir, 0o700)  # bonds are secrets: nobody else may read them
        return self.bond_dir

    def _keystore(self, namespace: str) -> KeyStore:
        if self.bond_dir is None:
            return MemoryKeyStore()
        return JsonKeyStore(namespace, str(self._bond_dir_ready() / "bonds.json"))

    def _pairing_config(self, connection: Connection) -> PairingConfig:
        prompt = self._prompts.get(connection.handle)
        if prompt is None:
            # not pairing on purpose: a delegate that cannot type makes MITM pairing fail
            return PairingConfig(sc=True, mitm=True, bonding=True, delegate=PairingDelegate())
        return PairingConfig(sc=True, mitm=True, bonding=True, delegate=PasskeyEntry(prompt))

    async def close(self) -> None:
        """Drop every connection and close the HCI transport."""
        for session in list(self._sessions):
            await session.disconnect()
        self._sessions.clear()
        device, closer, self._device, self._closer = self._device, self._closer, None, None
        if device is not None:
            with contextlib.suppress(*BUMBLE_ERRORS):
                await device.power_off()
        if closer is not None:
            await closer()

    # ------------------------------------------------------------ scan

    async def scan(self, timeout_s: float) -> list[BleAdvert]:
        """Listen for ``timeout_s`` and return the Denen locks heard, strongest first."""
        device = await self._started()
        found: dict[str, BleAdvert] = {}
        names: dict[str, str] = {}
        lock_service = UUID(SERVICE_UUID)

        def on_advertisement(adv: Advertisement) -> None:
            address = str(adv.address).split("/")[0]
            heard = advertised_name(adv)
            if heard is not None and (heard[1] or address not in names):
                names[address] = heard[0] if heard[1] else heard[0] + "…"
            if lock_service in service_uuids(adv) or address in found:
                found[address] = BleAdvert(names.get(address, ""), address, adv.rssi)

        device.on("advertisement", on_advertisement)
        try:
            await device.start_scanning(filter_duplicates=False)
            await asyncio.sleep(timeout_s)  # a scan window is real radio time
            await device.stop_scanning()
        except BUMBLE_ERRORS as exc:
            raise BleLinkError(f"scanning failed: {exc}") from exc
        finally:
            device.remove_listener("advertisement", on_advertisement)
        adverts = [
            BleAdvert(names.get(a.address, a.name), a.address, a.rssi) for a in found.values()
        ]
        return sorted(adverts, key=lambda a: -(a.rssi if a.rssi is not None else -999))

    # ------------------------------------------------------------ connect

    async def connect(self, address: str, *, passkey: PasskeyPrompt | None = None) -> BumbleSession:
        """Find the lock at ``address`` advertising, connect, secure and subscribe."""
        device = await self._started()
        async with self._connect_lock:
            target, rssi = await self._find(device, address)
            try:
                connection = await device.connect(target, timeout=self.connect_timeout_s)
            except BUMBLE_ERRORS as exc:
                raise BleLinkError(
                    f"no BLE connection within {self.connect_timeout_s:g} s ({exc or 'timeout'})"
                ) from exc
        try:
            session = await self._secure_session(connection, address, passkey)
        except BleLinkError:
            with contextlib.suppress(*BUMBLE_ERRORS):
                await connection.disconnect()
            raise
        except BUMBLE_ERRORS as exc:
            with contextlib.suppress(*BUMBLE_ERRORS):
                await connection.disconnect()
            raise BleLinkError(f"GATT setup failed: {exc}") from exc
        session.rssi = rssi
        self._sessions.add(session)
        connection.on("disconnection", lambda _reason: self._sessions.discard(session))
        return session

    async def _find(self, device: Device, address: str) -> tuple[hci.Address, int | None]:
        """Wait until ``address`` advertises; its advertisement gives the address type.

        Connecting only to a lock heard advertising also keeps a connection attempt from
        hanging: bumble's virtual controller never completes a cancelled one.
        """
        heard: asyncio.Future[tuple[hci.Address, int | None]] = (
            asyncio.get_running_loop().create_future()
        )
        wanted = address.upper()

        def on_advertisement(adv: Advertisement) -> None:
            if str(adv.address).split("/")[0].upper() == wanted and not heard.done():
                heard.set_result((adv.address, adv.rssi))

        device.on("advertisement", on_advertisement)
        try:
            await device.start_scanning(filter_duplicates=False)
            async with asyncio.timeout(self.connect_timeout_s):
                return await heard
        except TimeoutError as exc:
            raise BleLinkError(
                f"no BLE connection: {address} not heard advertising "
                f"within {self.connect_timeout_s:g} s"
            ) from exc
        except BUMBLE_ERRORS as exc:
            raise BleLinkError(f"scanning for {address} failed: {exc}") from exc
        finally:
            device.remove_listener("advertisement", on_advertisement)
            with contextlib.suppress(*BUMBLE_ERRORS):
                await device.stop_scanning()

    async def _secure_session(
        self, connection: Connection, address: str, passkey: PasskeyPrompt | None
    ) -> BumbleSession:
        peer = Peer(connection)
        if self.preferred_mtu > ATT_DEFAULT_MTU:
            await peer.request_mtu(self.preferred_mtu)
        await self._encrypt(connection, address, passkey)
        await peer.discover_services([UUID(SERVICE_UUID)])
        services = peer.get_services_by_uuid(UUID(SERVICE_UUID))
        if not services:
            raise BleLinkError(
                f"{address} has no Denen lock service",
                "check the address: `denen provision lock scan` lists the Denen locks nearby",
            )
        await services[0].discover_characteristics()
        rx = services[0].get_characteristics_by_uuid(UUID(RX_CHAR_UUID))
        tx = services[0].get_characteristics_by_uuid(UUID(TX_CHAR_UUID))
        if not rx or not tx:
            raise BleLinkError(f"{address}: the lock service lacks its RX/TX characteristics")
        session = BumbleSession(connection, rx[0])
        connection.on("disconnection", session.on_disconnection)
        await tx[0].subscribe(session.on_notification)
        return session

    async def _encrypt(
        self, connection: Connection, address: str, passkey: PasskeyPrompt | None
    ) -> None:
        keystore = connection.device.keystore
        if keystore is None:
            raise BleSecurityError("the radio has no bond store", "report this as a bug")
        bond: PairingKeys | None = await keystore.get(str(connection.peer_address))
        if bond is not None and bond.ltk is not None and bond.ltk.authenticated:
            try:
                await connection.encrypt()
            except BUMBLE_ERRORS as exc:
                if passkey is None:
                    raise BleSecurityError(
                        f"the lock refused this gateway's BLE bond ({exc})",
                        "the lock was reset or bonded elsewhere; "
                        + _REPAIR.format(address=address),
                    ) from exc
                await keystore.delete(str(connection.peer_address))
            else:
                return
        if passkey is None:
            raise BleSecurityError(
                "no LE Secure Connections bond with this lock", _REPAIR.format(address=address)
            )
        await self._pair(connection, passkey)

    async def _pair(self, connection: Connection, passkey: PasskeyPrompt) -> None:
        paired: asyncio.Future[PairingKeys] = asyncio.get_running_loop().create_future()

        def on_pairing(keys: PairingKeys) -> None:
            if not paired.done():
                paired.set_result(keys)

        connection.on("pairing", on_pairing)
        self._prompts[connection.handle] = passkey
        try:
            await connection.pair()
            keys = await asyncio.wait_for(paired, self.connect_timeout_s)
        except BUMBLE_ERRORS as exc:
            if getattr(exc, "error_code", None) == smp.ErrorCode.PAIRING_NOT_SUPPORTED:
                raise BleSecurityError(
                    "the lock refused BLE bonding: its pairing window is closed",
                    "press the pairing button on the lock, then pair within 60 s",
                ) from exc
            raise BleSecurityError(
                f"BLE pairing failed ({exc or type(exc).__name__})",
                "type the 6-digit code the lock shows on its display, within 30 s; "
                "press the pairing button again if the lock stopped showing it",
            ) from exc
        finally:
            self._prompts.pop(connection.handle, None)
            connection.remove_listener("pairing", on_pairing)
        # an LTK (not ltk_central/ltk_peripheral) only exists with Secure Connections;
        # authenticated means passkey or numeric comparison, not Just Works
        if keys.ltk is None or not keys.ltk.authenticated or not connection.is_encrypted:
            raise BleSecurityError(
                "the lock paired without LE Secure Connections and MITM protection",
                "this lock's BLE is not safe for pairing keys: pair it over --serial",
            )
