"""The cloud's MQTT side: connection, batching and acknowledgement, nothing of any domain.

What arrives goes to the routes the domains registered (:mod:`cloud.mqtt_routes`): the
fleet's, the gym's and the clinic's, each told the site and gateway of the message's topic.
What goes out is published by the domains' outlets (:class:`~cloud.gym.link.AccessLink`,
:class:`~cloud.clinic.link.ClinicLink`, :class:`~cloud.fleet.link.FleetLink`), run on each
connection. Reconnects with capped, fully jittered backoff.

At least once, end to end: a QoS 1 delivery is acknowledged (PUBACK) only after the
transaction holding it committed. Until then the broker keeps it in the cloud's persistent
session and sends it again after a reconnect, so a cloud process killed between receiving
and committing loses nothing; each durable route stores under a unique key, so the
redelivery is a no-op.

The connection is the cloud's own MQTT 5 client (:mod:`cloud.mqtt_client`, on the
sans-IO codec :mod:`protocol.mqtt5`): deliveries reach :meth:`_Inbox.put` in arrival
order, one call each, and are acknowledged by ``ack_all(batch)``, one write per committed
batch. (aiomqtt acknowledges on arrival and has no manual-ack option; bending it to do
otherwise meant patching private methods of aiomqtt and paho.)

Deliveries are taken in batches of at most ``batch_max``; the broker may hold at most
``receive_maximum`` deliveries unacknowledged (MQTT 5 Receive Maximum, sent in CONNECT;
Mosquitto 2.0 honours it in place of its ``max_inflight_messages``, default 20), which is
two batches: one being committed while the next one arrives. A broker that grants fewer
still works, as a batch is also cut when ``batch_window_s`` has passed.

Routes of :attr:`~cloud.mqtt_routes.Storage.LATEST` (telemetry: QoS 0, every minute from
every gateway, most of the traffic of a large fleet) do not wait in those batches: only
each gateway's newest message is kept, and stored in large transactions of their own
between the batches, so a cloud behind on health still stores lock events at once."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Literal

from pydantic import BaseModel, ValidationError
from sqlalchemy.exc import SQLAlchemyError

from cloud.db.batches import store_many
from cloud.mqtt_client import Endpoint, MqttClient, MqttError, tls_context
from cloud.mqtt_routes import Arrival, Outlet, Route, Routes, Storage
from cloud.settings import CloudSettings
from protocol import topics
from protocol.errors import ProtocolError
from protocol.messages import Envelope, LockEventData, MessageType, parse
from protocol.mqtt5 import Publish, Subscription
from protocol.topics import Channel, GatewayTopic

log = logging.getLogger(__name__)

RECEIVE_MAXIMUM_LIMIT = 65_535  # the largest value MQTT 5 can express


@dataclass
class BridgeStats:
    """Counters a dashboard or a test can read."""

    connects: int = 0
    malformed: int = 0
    # messages taken, by message type (``lock_event``, ``checkin`` …)
    received: Counter[str] = field(default_factory=Counter)
    # what the routes said was new, by route name (``lock events`` …)
    stored: Counter[str] = field(default_factory=Counter)


@dataclass(frozen=True, slots=True)
class BridgeTuning:
    """Batching and reconnect knobs (defaults suit one process serving a city)."""

    batch_window_s: float = 0.05
    batch_max: int = 1000
    # latest-only routes (telemetry) are best effort and coalesced per gateway: gathered
    # this long, stored this many gateways per transaction
    telemetry_window_s: float = 0.5
    telemetry_chunk: int = 500
    backoff_base_s: float = 0.2
    backoff_cap_s: float = 30.0

    def __post_init__(self) -> None:
        if not 1 <= self.batch_max <= RECEIVE_MAXIMUM_LIMIT // 2:
            raise ValueError(f"batch_max must be 1..{RECEIVE_MAXIMUM_LIMIT // 2}")

    @property
    def receive_maximum(self) -> int:
        """Deliveries the broker may send unacknowledged: the batch being committed and
        the next one."""
        return 2 * self.batch_max


Delivery = Publish
"""One received message, as the codec decoded it (topic, payload, QoS, packet id)."""


@dataclass(eq=False)
class _Inbox:
    """Deliveries of one connection in arrival order, not yet acknowledged.

    Filled by the client's ``on_delivery``, emptied a batch at a time. It belongs to one connection:
    a message id means nothing on the next one, where the broker sends again whatever
    was left unacknowledged."""

    batch_max: int
    messages: list[Delivery] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    full: asyncio.Event = field(default_factory=asyncio.Event)

    def put(self, delivery: Delivery) -> None:
        self.messages.append(delivery)
        waiting = len(self.messages)
        if waiting == 1:
            self.arrived.set()
        if waiting == self.batch_max:
            self.full.set()

    async def take(self, window_s: float) -> list[Delivery]:
        """The next batch: once it is full, or ``window_s`` after it started."""
        await self.arrived.wait()
        if len(self.messages) < self.batch_max:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(window_s):
                    await self.full.wait()
        batch = self.messages[: self.batch_max]
        del self.messages[: self.batch_max]
        if not self.messages:
            self.arrived.clear()
        if len(self.messages) < self.batch_max:
            self.full.clear()
        return batch


@dataclass
class _Batch:
    """One batch's arrivals, by route, in arrival order."""

    by_route: dict[Route, list[Arrival[Any]]] = field(default_factory=dict)
    latest: list[tuple[Route, Arrival[Any]]] = field(default_factory=list)


@lru_cache(maxsize=4096)
def _parse_topic(topic: str) -> GatewayTopic:
    # a city has a few thousand topics; an unparsable one raises and is not cached
    return topics.parse(topic)


class _LockEventMessage(Envelope):
    """The envelope of :mod:`protocol.messages` typed for a lock event, so that one pass of
    pydantic's JSON parser over the bytes checks the whole message."""

    type: Literal[MessageType.LOCK_EVENT]
    data: LockEventData  # type: ignore[assignment]  # narrowed on purpose


def parse_payload(
    channel: Channel, payload: bytes | bytearray | str
) -> tuple[MessageType, BaseModel]:
    """:func:`protocol.messages.parse`, about twice as fast for a lock event on the events
    channel (the bulk of the traffic): one validation of the raw bytes instead of
    ``json.loads`` and two model validations. Whatever that rejects goes through
    ``parse``, so errors (:class:`~protocol.errors.MessageError`) read the same."""
    _id, kind, data = parse_with_id(channel, payload)
    return kind, data


def parse_with_id(
    channel: Channel, payload: bytes | bytearray | str
) -> tuple[str, MessageType, BaseModel]:
    """:func:`parse_payload` with the envelope id (a clinic request's idempotency key)."""
    if channel is Channel.EVENTS:
        try:
            message = _LockEventMessage.model_validate_json(payload)
        except ValidationError:
            pass  # parse() says what is wrong, in its own words
        else:
            return message.id, MessageType.LOCK_EVENT, message.data
    envelope, data = parse(payload)
    return envelope.id, envelope.type, data


class MqttBridge:
    """Moves messages between the broker and the domains' routes and outlets;
    ``start()`` / ``stop()``."""

    def __init__(
        self,
        settings: CloudSettings,
        routes: Routes,
        outlets: Sequence[Outlet] = (),
        tuning: BridgeTuning | None = None,
    ) -> None:
        self._settings = settings
        self._routes = routes
        self._table = routes.table()  # routes are all registered before the bridge is built
        self._outlets = tuple(outlets)
        self._tuning = tuning or BridgeTuning()
        self.stats = BridgeStats()
        self._task: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        # the newest message of each gateway for each latest-only route, not stored yet (a
        # dict, so a cloud that falls behind stores each gateway's latest once)
        self._latest: dict[tuple[Route, str, str], Arrival[Any]] = {}
        self._latest_due = asyncio.Event()
        # one transaction at a time from this bridge: telemetry waits its turn behind a
        # batch of lock events, never the whole telemetry backlog before it
        self._db_turn = asyncio.Lock()

    @property
    def connected(self) -> bool:
        """True while a broker connection is up and subscribed."""
        return self._connected.is_set()

    async def wait_connected(self) -> None:
        """Wait until the bridge is connected and subscribed (wrap in ``asyncio.timeout``)."""
        await self._connected.wait()

    async def start(self) -> None:
        """Start the bridge as a named background task; returns at once."""
        self._task = asyncio.create_task(self._connection_loop(), name="mqtt-bridge")

    async def stop(self) -> None:
        """Stop and disconnect. Deliveries not committed yet stay unacknowledged: the broker
        sends them again at the next start (persistent session)."""
        if self._task is None:
            return
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None

    def _client(self, inbox: _Inbox) -> MqttClient:
        settings = self._settings
        tls = None
        if settings.mqtt_tls_ca is not None:  # mutual TLS: our CN is the username
            tls = tls_context(settings.mqtt_tls_ca, settings.mqtt_tls_cert, settings.mqtt_tls_key)
        endpoint = Endpoint(
            settings.mqtt_host,
            settings.mqtt_port,
            settings.mqtt_client_id,
            tls=tls,
            session_expiry_s=settings.mqtt_session_expiry_s,
            receive_maximum=self._tuning.receive_maximum,
            clean_start=False,
        )
        return MqttClient(endpoint, inbox.put)

    async def _connection_loop(self) -> None:
        attempt = 0
        shared = self._settings.mqtt_shared_subscription
        subscriptions = [
            Subscription(topics.cloud_subscription(channel, shared=shared), qos=1)
            for channel in self._routes.channels()
        ]
        while True:
            # before connecting: a persistent session's backlog arrives right after CONNACK
            inbox = _Inbox(self._tuning.batch_max)
            try:
                async with self._client(inbox) as client:
                    if subscriptions:
                        await client.subscribe(*subscriptions)
                    self.stats.connects += 1
                    attempt = 0
                    self._connected.set()
                    log.info("connected to %s:%s", *self._where())
                    async with asyncio.TaskGroup() as group:
                        for i, outlet in enumerate(self._outlets):
                            group.create_task(outlet.run(client), name=f"mqtt-outlet-{i}")
                        group.create_task(self._ingest(client, inbox), name="mqtt-ingest")
                        group.create_task(self._store_latest(), name="mqtt-latest")
                        group.create_task(client.run(), name="mqtt-watch")
            except* MqttError as group_error:
                reason = "; ".join(str(e) for e in group_error.exceptions)
                log.warning("MQTT connection to %s:%s lost: %s", *self._where(), reason)
            finally:
                self._connected.clear()
            cap = min(self._tuning.backoff_cap_s, self._tuning.backoff_base_s * 2**attempt)
            attempt += 1
            await asyncio.sleep(random.uniform(0, cap))  # noqa: S311 - jitter, not crypto

    def _where(self) -> tuple[str, int]:
        return self._settings.mqtt_host, self._settings.mqtt_port

    async def _ingest(self, client: MqttClient, inbox: _Inbox) -> None:
        """Batch by batch: parse, commit, then acknowledge, in arrival order. Latest-only
        arrivals go aside to :meth:`_store_latest` (best effort: the next repeats them)."""
        while True:
            batch = await inbox.take(self._tuning.batch_window_s)
            sorted_ = await asyncio.to_thread(self._sort, batch)
            if sorted_.latest:
                for route, arrival in sorted_.latest:
                    self._latest[(route, arrival.site, arrival.gateway)] = arrival
                self._latest_due.set()
            await self._commit(sorted_)
            client.ack_all(batch)

    async def _store_latest(self) -> None:
        """Store the waiting latest-only arrivals, ``telemetry_chunk`` per transaction.

        With thousands of gateways reporting every minute this is the cloud's steadiest
        load; lock events must not queue behind it, so it has its own path: each gateway's
        newest message only, gathered for ``telemetry_window_s``, and stored between batches
        (:attr:`_db_turn`)."""
        tuning = self._tuning
        while True:
            await self._latest_due.wait()
            await asyncio.sleep(tuning.telemetry_window_s)
            while self._latest:
                keys = list(itertools.islice(self._latest, tuning.telemetry_chunk))
                chunk: dict[Route, list[Arrival[Any]]] = {}
                for key in keys:
                    chunk.setdefault(key[0], []).append(self._latest.pop(key))
                async with self._db_turn:
                    await asyncio.to_thread(self._store_best_effort, chunk)
            self._latest_due.clear()

    def _sort(self, batch: list[Delivery]) -> _Batch:
        out = _Batch()
        received: Counter[str] = Counter()
        for delivery in batch:
            topic = delivery.topic
            try:
                where = _parse_topic(topic)
                message_id, kind, data = parse_with_id(where.channel, delivery.payload)
            except ProtocolError as exc:
                self._drop(topic, exc)
                continue
            routes = self._table.get((where.channel, type(data)), ())
            if not routes:
                self._drop(topic, ProtocolError(f"a {kind.value} message on this channel"))
                continue
            received[kind.value] += 1
            arrival = Arrival(where, message_id, data)
            for route in routes:
                if route.storage is Storage.LATEST:
                    out.latest.append((route, arrival))
                else:
                    out.by_route.setdefault(route, []).append(arrival)
        self.stats.received.update(received)
        return out

    def _drop(self, topic: str, exc: Exception) -> None:
        # never the payload: it may carry a PIN tag or a citizen's name
        self.stats.malformed += 1
        log.warning("dropped a malformed message on %s: %s", topic, exc)

    async def _commit(self, batch: _Batch) -> None:
        """Store a batch, retrying while the DB fails: nothing is acknowledged before."""
        attempt = 0
        while True:
            try:
                async with self._db_turn:
                    await asyncio.to_thread(self._store, batch)
            except SQLAlchemyError:
                sizes = ", ".join(f"{len(a)} {r.name}" for r, a in batch.by_route.items())
                log.exception("storing a batch (%s) failed; retrying", sizes)
                cap = min(self._tuning.backoff_cap_s, self._tuning.backoff_base_s * 2**attempt)
                attempt += 1
                await asyncio.sleep(random.uniform(0, cap))  # noqa: S311 - jitter
            else:
                return

    def _store(self, batch: _Batch) -> None:
        """Each route's arrivals, in the routes' order: a durable route's failure raises
        (the batch is retried), a best-effort route's is logged and its messages dropped."""
        stored: Counter[str] = Counter()
        for route in self._routes.routes:
            arrivals = batch.by_route.get(route)
            if not arrivals:
                continue
            if route.storage is Storage.DURABLE:
                new = route.store(arrivals)
                if new is not None:
                    stored[route.name] += new
            else:
                store_many(_as_list(route.store), arrivals, route.name)
        self.stats.stored.update(stored)

    def _store_best_effort(self, chunk: dict[Route, list[Arrival[Any]]]) -> None:
        for route in self._routes.routes:
            if route in chunk:
                store_many(_as_list(route.store), chunk[route], route.name)


def _as_list(
    store: Callable[[list[Arrival[Any]]], int | None],
) -> Callable[[Sequence[Arrival[Any]]], object]:
    """``store`` as :func:`~cloud.db.batches.store_many` calls it (with a sequence)."""
    return lambda arrivals: store(list(arrivals))
