"""The cloud's MQTT side: lock events in (batched into the DB), gateway status and applied
versions in, retained access snapshots out. Reconnects with capped, fully jittered backoff."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from sqlalchemy.exc import SQLAlchemyError

from cloud.services import Services
from cloud.settings import CloudSettings
from protocol import topics
from protocol.clock import Clock
from protocol.errors import ProtocolError
from protocol.messages import (
    AccessAppliedData,
    LockEventData,
    MessageType,
    StatusData,
    make,
    parse,
)
from protocol.topics import Channel

log = logging.getLogger(__name__)

SUBSCRIPTIONS = (Channel.EVENTS, Channel.STATUS, Channel.ACCESS_APPLIED)


@dataclass
class BridgeStats:
    """Counters a dashboard or a test can read."""

    connects: int = 0
    malformed: int = 0
    events_received: int = 0
    events_stored: int = 0
    snapshots_published: int = 0


@dataclass(frozen=True, slots=True)
class BridgeTuning:
    """Batching and reconnect knobs (defaults suit one process serving a city)."""

    batch_window_s: float = 0.05
    batch_max: int = 500
    backoff_base_s: float = 0.2
    backoff_cap_s: float = 30.0


class MqttBridge:
    """Moves messages between the broker and the services; ``start()`` / ``stop()``."""

    def __init__(
        self,
        settings: CloudSettings,
        services: Services,
        clock: Clock,
        tuning: BridgeTuning | None = None,
    ) -> None:
        self._settings = settings
        self._services = services
        self._clock = clock
        self._tuning = tuning or BridgeTuning()
        self.stats = BridgeStats()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._events: asyncio.Queue[LockEventData] = asyncio.Queue()
        self._dirty: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
        self._connected = asyncio.Event()

    @property
    def connected(self) -> bool:
        """True while a broker connection is up and subscribed."""
        return self._connected.is_set()

    async def wait_connected(self) -> None:
        """Wait until the bridge is connected and subscribed (wrap in ``asyncio.timeout``)."""
        await self._connected.wait()

    async def start(self) -> None:
        """Start the bridge as a named background task; returns at once."""
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.create_task(self._run(), name="mqtt-bridge")

    async def stop(self) -> None:
        """Stop: flush the events already received into the DB, then disconnect."""
        if self._task is None:
            return
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None

    def access_changed(self, site: str, gateway: str) -> None:
        """:class:`~cloud.services.AccessNotifier`: safe to call from any thread."""
        if self._loop is None or self._loop.is_closed():
            return  # not running: every snapshot is published at the next connect
        self._loop.call_soon_threadsafe(self._dirty.put_nowait, (site, gateway))

    async def publish_snapshot(self, site: str, gateway: str) -> None:
        """Queue the snapshot of ``site``/``gateway`` for publishing (now, or on connect)."""
        self._dirty.put_nowait((site, gateway))

    async def _run(self) -> None:
        async with asyncio.TaskGroup() as group:
            group.create_task(self._write_events(), name="mqtt-event-writer")
            group.create_task(self._connection_loop(), name="mqtt-connection")

    def _client(self) -> aiomqtt.Client:
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]  # paho: untyped
        props.SessionExpiryInterval = self._settings.mqtt_session_expiry_s
        return aiomqtt.Client(
            self._settings.mqtt_host,
            self._settings.mqtt_port,
            identifier=self._settings.mqtt_client_id,
            protocol=aiomqtt.ProtocolVersion.V5,
            clean_start=False,
            properties=props,
        )

    async def _connection_loop(self) -> None:
        attempt = 0
        while True:
            try:
                async with self._client() as client:
                    for channel in SUBSCRIPTIONS:
                        await client.subscribe(
                            topics.cloud_subscription(
                                channel, shared=self._settings.mqtt_shared_subscription
                            ),
                            qos=1,
                        )
                    self.stats.connects += 1
                    attempt = 0
                    self._connected.set()
                    log.info(
                        "connected to %s:%s", self._settings.mqtt_host, self._settings.mqtt_port
                    )
                    for site, gateway in await asyncio.to_thread(self._services.access.gateways):
                        self._dirty.put_nowait((site, gateway))
                    async with asyncio.TaskGroup() as group:
                        group.create_task(self._publish_snapshots(client), name="mqtt-publisher")
                        group.create_task(self._receive(client), name="mqtt-receiver")
            except* aiomqtt.MqttError as group_error:
                reason = "; ".join(str(e) for e in group_error.exceptions)
                log.warning("MQTT connection to %s:%s lost: %s", *self._where(), reason)
            finally:
                self._connected.clear()
            cap = min(self._tuning.backoff_cap_s, self._tuning.backoff_base_s * 2**attempt)
            attempt += 1
            await asyncio.sleep(random.uniform(0, cap))  # noqa: S311 - jitter, not crypto

    def _where(self) -> tuple[str, int]:
        return self._settings.mqtt_host, self._settings.mqtt_port

    async def _receive(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            await self._handle(str(message.topic), message.payload)

    async def _handle(self, topic: str, payload: object) -> None:
        try:
            where = topics.parse(topic)
            envelope, data = parse(payload if isinstance(payload, bytes | bytearray | str) else b"")
        except ProtocolError as exc:
            self._drop(topic, exc)
            return
        if where.channel is Channel.EVENTS and isinstance(data, LockEventData):
            self.stats.events_received += 1
            self._events.put_nowait(data)
        elif where.channel is Channel.STATUS and isinstance(data, StatusData):
            await self._call_db(
                self._services.gateways.update_status, where.site, where.gateway, data
            )
        elif where.channel is Channel.ACCESS_APPLIED and isinstance(data, AccessAppliedData):
            await self._call_db(self._services.gateways.record_applied, data)
        else:
            self._drop(topic, ProtocolError(f"a {envelope.type.value} message on this channel"))

    def _drop(self, topic: str, exc: Exception) -> None:
        # never the payload: it may carry a PIN tag or a citizen's name
        self.stats.malformed += 1
        log.warning("dropped a malformed message on %s: %s", topic, exc)

    async def _call_db(self, fn: Callable[..., object], *args: object) -> None:
        try:
            await asyncio.to_thread(fn, *args)
        except SQLAlchemyError:
            log.exception("could not store a message from MQTT")

    async def _write_events(self) -> None:
        batch: list[LockEventData] = []
        try:
            while True:
                batch.append(await self._events.get())
                if self._events.qsize() < self._tuning.batch_max:
                    await asyncio.sleep(self._tuning.batch_window_s)
                while len(batch) < self._tuning.batch_max and not self._events.empty():
                    batch.append(self._events.get_nowait())
                await self._store(batch)
                batch = []
        except asyncio.CancelledError:
            while not self._events.empty():
                batch.append(self._events.get_nowait())
            if batch:
                await asyncio.to_thread(self._services.events.ingest_batch, batch)
            raise

    async def _store(self, batch: list[LockEventData]) -> None:
        attempt = 0
        while True:
            try:
                stored = await asyncio.to_thread(self._services.events.ingest_batch, batch)
            except SQLAlchemyError:
                log.exception("storing %d lock events failed; retrying", len(batch))
                cap = min(self._tuning.backoff_cap_s, self._tuning.backoff_base_s * 2**attempt)
                attempt += 1
                await asyncio.sleep(random.uniform(0, cap))  # noqa: S311 - jitter
            else:
                self.stats.events_stored += stored
                return

    async def _publish_snapshots(self, client: aiomqtt.Client) -> None:
        while True:
            pending = {await self._dirty.get()}
            while not self._dirty.empty():
                pending.add(self._dirty.get_nowait())
            for site, gateway in sorted(pending):
                try:
                    await self._publish_one(client, site, gateway)
                except aiomqtt.MqttError:
                    self._dirty.put_nowait((site, gateway))  # goes out after the reconnect
                    raise

    async def _publish_one(self, client: aiomqtt.Client, site: str, gateway: str) -> None:
        snapshot = await asyncio.to_thread(self._services.access.snapshot, site, gateway)
        payload = make(MessageType.ACCESS_SNAPSHOT, snapshot, ts=self._clock.now())
        await client.publish(topics.access(site, gateway), payload, qos=1, retain=True)
        self.stats.snapshots_published += 1
        log.info("published access snapshot v%d to %s/%s", snapshot.version, site, gateway)
