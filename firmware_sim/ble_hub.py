"""A virtual BLE radio for several processes: ``denen-sim ble-hub --port 9100``.

The hub owns one bumble :class:`~bumble.link.LocalLink` (the air) and listens on one TCP
port. Every client that connects gets its own virtual controller on that link and speaks
HCI (H4) to it: a simulated lock (``denen-sim lock --ble-hci tcp-client:127.0.0.1:9100``),
the agent or the technician's CLI (``[ble] hci = "tcp-client:127.0.0.1:9100"``). A client
that goes away takes its controller off the air; its peers see the link drop, as when a
device leaves radio range.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from types import TracebackType
from typing import Any

from bumble import hci, ll
from bumble.controller import Controller
from bumble.link import LocalLink
from bumble.transport.common import StreamPacketSource

from firmware_sim.errors import SimulatorError

log = logging.getLogger(__name__)


class _HciSink:
    """Controller → client: H4 packets written to the TCP stream."""

    def __init__(self, transport: asyncio.WriteTransport) -> None:
        self.transport = transport

    def on_packet(self, packet: bytes) -> None:
        if not self.transport.is_closing():
            self.transport.write(packet)


class _ClientProtocol(StreamPacketSource):
    """One client's HCI stream, bound to its own controller on the hub's link."""

    def __init__(self, hub: BleHub) -> None:
        super().__init__()
        self.hub = hub
        self.controller: Controller | None = None

    def connection_made(self, transport: Any) -> None:
        name = f"hub-{next(self.hub.counter)}"
        self.controller = Controller(
            name, host_source=self, host_sink=_HciSink(transport), link=self.hub.link
        )
        log.info("BLE hub: %s connected from %s", name, transport.get_extra_info("peername"))

    def connection_lost(self, exc: Exception | None) -> None:
        controller, self.controller = self.controller, None
        if controller is not None:
            self.hub.drop(controller)
        self.on_transport_lost()


class BleHub:
    """The virtual air; ``async with BleHub(port) as hub`` or start()/stop()."""

    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = port
        self.link = LocalLink()  # type: ignore[no-untyped-call]  # bumble leaves it bare
        self.counter = itertools.count(1)
        self._server: asyncio.Server | None = None

    @property
    def spec(self) -> str:
        """The bumble transport spec a client opens: ``tcp-client:HOST:PORT``."""
        return f"tcp-client:{self.host}:{self.port}"

    async def start(self) -> None:
        """Listen; raise SimulatorError when the port is taken."""
        loop = asyncio.get_running_loop()
        try:
            self._server = await loop.create_server(
                lambda: _ClientProtocol(self), self.host, self.port
            )
        except OSError as exc:
            raise SimulatorError(
                f"BLE hub cannot listen on {self.host}:{self.port} ({exc}): choose another --port"
            ) from exc
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("BLE hub listening on %s", self.spec)

    async def stop(self) -> None:
        """Stop listening and drop every controller."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
            with contextlib.suppress(Exception):
                await server.wait_closed()
        for controller in list(self.link.controllers):
            self.drop(controller)

    def drop(self, controller: Controller) -> None:
        """Take ``controller`` off the air; its peers see their links drop."""
        for connection in list(controller.le_connections.values()):
            # what a peer's controller sees when this one leaves radio range
            with contextlib.suppress(Exception):
                connection.send_ll_control_pdu(ll.TerminateInd(hci.HCI_CONNECTION_TIMEOUT_ERROR))
        controller.le_connections.clear()
        controller.le_legacy_advertiser.stop()  # its timer would keep it on the air
        with contextlib.suppress(KeyError):
            self.link.remove_controller(controller)
        log.info("BLE hub: %s left", controller.name)

    async def __aenter__(self) -> BleHub:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
