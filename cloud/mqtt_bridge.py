"""The cloud's MQTT side: lock events in (batched into the DB), gateway status, applied
versions and telemetry in, retained access snapshots out; clinic check-ins and staff
actions in (:mod:`cloud.clinic.agent_sync`), retained clinic and display states out
(:mod:`cloud.clinic.publish`), right after each change. Reconnects with capped, fully
jittered backoff.

At least once, end to end: a QoS 1 delivery is acknowledged (PUBACK) only after the
transaction holding it committed. Until then the broker keeps it in the cloud's persistent
session and sends it again after a reconnect, so a cloud process killed between receiving
and committing loses nothing; the ``(lock_id, seq)`` key makes the redelivery a no-op.

aiomqtt 2.5 acknowledges every delivery as it arrives and has no manual-ack option, so
:class:`AckAfterCommitClient` switches on paho's own (``manual_ack``) on the paho client
aiomqtt wraps, and takes deliveries straight from paho's callback instead of aiomqtt's
per-message queue and iterator (plain PUBLISHes even before paho decodes them:
:mod:`cloud.mqtt_receive`). That is the one place the bridge leans on aiomqtt
internals (``Client._client``, ``Client._on_message``); the integration tests in
``tests/integration/test_cloud_mqtt_durability.py`` pin the behaviour (no PUBACK before
``ack()``, redelivery after a kill), so an aiomqtt upgrade that changes it fails there.
We keep aiomqtt rather than driving paho ourselves because the rest of the connection
(connect, subscribe, publish with acknowledgement, loss detection) is exactly what it does.

Deliveries are taken in batches of at most ``batch_max``; the broker may hold at most
``receive_maximum`` deliveries unacknowledged (MQTT 5 Receive Maximum, sent in CONNECT;
Mosquitto 2.0 honours it in place of its ``max_inflight_messages``, default 20), which is
two batches: one being committed while the next one arrives. A broker that grants fewer
still works, as a batch is also cut when ``batch_window_s`` has passed.

Telemetry (QoS 0, every minute from every gateway: most of the traffic of a large fleet)
does not wait in those batches: only each gateway's newest report is kept, and stored in
large transactions of its own between the batches, so a cloud behind on health still
stores lock events at once."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Literal

import aiomqtt
from paho.mqtt.client import Client as PahoClient
from paho.mqtt.client import MQTTMessage
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from pydantic import BaseModel, ValidationError
from sqlalchemy.exc import SQLAlchemyError

from cloud.clinic.agent_sync import ClinicEvent
from cloud.clinic.publish import ClinicChanged
from cloud.clinic.services import ClinicServices
from cloud.db.batches import store_many
from cloud.fleet.link import FleetBatch, FleetLink
from cloud.gym.access import AccessChanged
from cloud.mqtt_receive import Delivery, acknowledge, read_fast
from cloud.services import Services
from cloud.settings import CloudSettings
from protocol import topics
from protocol.clock import Clock
from protocol.errors import ProtocolError
from protocol.messages import (
    AccessAppliedData,
    CheckinData,
    ClinicActionData,
    CommandReplyData,
    Envelope,
    LockEventData,
    MessageType,
    StatusData,
    TelemetryData,
    make,
    parse,
)
from protocol.topics import Channel, GatewayTopic

log = logging.getLogger(__name__)

SUBSCRIPTIONS = (
    Channel.EVENTS,
    Channel.STATUS,
    Channel.ACCESS_APPLIED,
    Channel.TELEMETRY,
    Channel.RESPONSE,  # fleet command replies
)
RECEIVE_MAXIMUM_LIMIT = 65_535  # the largest value MQTT 5 can express
# when many access snapshots are due (at a connect: every gateway's), this many are built
# per transaction and published at once, each awaiting its PUBACK
SNAPSHOT_CHUNK = 200
SNAPSHOT_RETRY_S = 1.0  # a chunk that could not be built (the DB is away) is due again after
_BuiltSnapshot = tuple[str, str, int, bytes]  # site, gateway, version, payload


@dataclass
class BridgeStats:
    """Counters a dashboard or a test can read."""

    connects: int = 0
    malformed: int = 0
    events_received: int = 0
    events_stored: int = 0
    snapshots_published: int = 0
    clinic_events_received: int = 0
    clinic_states_published: int = 0


@dataclass(frozen=True, slots=True)
class BridgeTuning:
    """Batching and reconnect knobs (defaults suit one process serving a city)."""

    batch_window_s: float = 0.05
    batch_max: int = 1000
    # telemetry is best effort and coalesced per gateway: gathered this long, stored this
    # many reports per transaction
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


class AckAfterCommitClient(aiomqtt.Client):
    """An :class:`aiomqtt.Client` whose deliveries go to ``on_delivery`` (called on the
    event loop, in arrival order) and are acknowledged only by :meth:`ack`.

    aiomqtt has no manual-ack option; paho's is switched on on the client aiomqtt wraps.
    ``aiomqtt.Client._on_message`` is the callback aiomqtt registers with paho: this
    class replaces it so a delivery costs one call, not a queue item and a task.
    """

    def __init__(self, *args: Any, on_delivery: Callable[[Delivery], None], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._on_delivery = on_delivery
        self._client.manual_ack_set(True)
        read_fast(self._client, on_delivery)  # plain PUBLISHes skip paho's decoding

    def _on_message(self, client: PahoClient, userdata: Any, message: MQTTMessage) -> None:
        try:
            topic: str | None = message.topic
        except UnicodeDecodeError:
            topic = None
        self._on_delivery((message.mid, message.qos, topic, message.payload))

    def ack(self, delivery: Delivery) -> None:
        """Send the PUBACK of ``delivery`` (nothing for QoS 0): the broker forgets it."""
        self._client.ack(delivery[0], delivery[1])

    def ack_all(self, deliveries: list[Delivery]) -> None:
        """:meth:`ack` each of ``deliveries``, in one write to the broker."""
        acknowledge(self._client, deliveries)

    async def wait_disconnected(self) -> None:
        """Return never; raise :class:`aiomqtt.MqttError` when the connection is lost.

        The message iterator stays empty (deliveries go to ``on_delivery``) and raises
        when aiomqtt notices the disconnection."""
        async for _ in self.messages:
            pass


@dataclass(eq=False)
class _Inbox:
    """Deliveries of one connection in arrival order, not yet acknowledged.

    Filled by paho's callback, emptied a batch at a time. It belongs to one connection:
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
class _Sorted:
    """One batch, parsed and sorted by what it updates."""

    events: list[LockEventData] = field(default_factory=list)
    statuses: list[tuple[GatewayTopic, StatusData]] = field(default_factory=list)
    applied: list[AccessAppliedData] = field(default_factory=list)
    telemetry: list[tuple[GatewayTopic, TelemetryData]] = field(default_factory=list)
    # check-ins and staff actions of clinic agents: (topic, envelope id, data), in order
    clinic: list[tuple[GatewayTopic, str, ClinicEvent]] = field(default_factory=list)
    # the fleet's: where each lock event came from (same order as events), command replies
    event_topics: list[GatewayTopic] = field(default_factory=list)
    replies: list[tuple[GatewayTopic, CommandReplyData]] = field(default_factory=list)


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
    """Moves messages between the broker and the services; ``start()`` / ``stop()``."""

    def __init__(
        self,
        settings: CloudSettings,
        services: Services,
        clock: Clock,
        tuning: BridgeTuning | None = None,
        *,
        clinic: ClinicServices | None = None,
        fleet: FleetLink | None = None,
    ) -> None:
        self._settings = settings
        self._services = services
        self._clinic = clinic
        self._fleet = fleet
        self._clock = clock
        self._tuning = tuning or BridgeTuning()
        self.stats = BridgeStats()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._dirty: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
        # clinic sites to publish: a set, so a long broker outage holds each site once
        self._clinic_pending: set[str] = set()
        self._clinic_dirty = asyncio.Event()
        self._connected = asyncio.Event()
        # the newest telemetry report of each gateway not stored yet (a dict, so a cloud
        # that falls behind stores each gateway's latest once, never a stale queue)
        self._telemetry: dict[tuple[str, str], TelemetryData] = {}
        self._telemetry_due = asyncio.Event()
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
        self._loop = asyncio.get_running_loop()
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

    def access_changed(self, change: AccessChanged) -> None:
        """Subscribed to the change bus: safe to call from any thread."""
        if self._loop is None or self._loop.is_closed():
            return  # not running: every snapshot is published at the next connect
        self._loop.call_soon_threadsafe(self._dirty.put_nowait, (change.site, change.gateway))

    def clinic_changed(self, change: ClinicChanged) -> None:
        """Subscribed to the change bus: safe to call from any thread; the
        site's clinic and display states go out right away (no batching delay)."""
        if self._loop is None or self._loop.is_closed():
            return  # not running: every clinic state is published at the next connect
        self._loop.call_soon_threadsafe(self._clinic_due, change.site)

    def _clinic_due(self, site: str) -> None:
        self._clinic_pending.add(site)
        self._clinic_dirty.set()

    async def publish_snapshot(self, site: str, gateway: str) -> None:
        """Queue the snapshot of ``site``/``gateway`` for publishing (now, or on connect)."""
        self._dirty.put_nowait((site, gateway))

    def _client(self, inbox: _Inbox) -> AckAfterCommitClient:
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]  # paho: untyped
        props.SessionExpiryInterval = self._settings.mqtt_session_expiry_s
        props.ReceiveMaximum = self._tuning.receive_maximum
        tls = None
        if self._settings.mqtt_tls_ca is not None:  # mutual TLS: our CN is the username
            cert, key = self._settings.mqtt_tls_cert, self._settings.mqtt_tls_key
            tls = aiomqtt.TLSParameters(
                ca_certs=str(self._settings.mqtt_tls_ca),
                certfile=None if cert is None else str(cert),
                keyfile=None if key is None else str(key),
            )
        return AckAfterCommitClient(
            self._settings.mqtt_host,
            self._settings.mqtt_port,
            identifier=self._settings.mqtt_client_id,
            protocol=aiomqtt.ProtocolVersion.V5,
            clean_start=False,
            properties=props,
            on_delivery=inbox.put,
            tls_params=tls,
        )

    async def _connection_loop(self) -> None:
        attempt = 0
        while True:
            # before connecting: a persistent session's backlog arrives right after CONNACK
            inbox = _Inbox(self._tuning.batch_max)
            try:
                async with self._client(inbox) as client:
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
                    if self._clinic is not None:
                        for site, _gateway in await asyncio.to_thread(self._clinic.publisher.sites):
                            self._clinic_due(site)
                    async with asyncio.TaskGroup() as group:
                        group.create_task(self._publish_snapshots(client), name="mqtt-publisher")
                        if self._clinic is not None:
                            group.create_task(
                                self._publish_clinics(client, self._clinic), name="mqtt-clinic"
                            )
                        if self._fleet is not None:
                            group.create_task(self._fleet.run(client), name="mqtt-fleet")
                        group.create_task(self._ingest(client, inbox), name="mqtt-ingest")
                        group.create_task(self._store_health(), name="mqtt-telemetry")
                        group.create_task(client.wait_disconnected(), name="mqtt-watch")
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

    async def _ingest(self, client: AckAfterCommitClient, inbox: _Inbox) -> None:
        """Batch by batch: parse, commit, then acknowledge, in arrival order. Telemetry
        goes aside to :meth:`_store_health` (best effort: the next report repeats it)."""
        while True:
            batch = await inbox.take(self._tuning.batch_window_s)
            parsed = await asyncio.to_thread(self._sort, batch)
            if parsed.telemetry:
                for where, data in parsed.telemetry:
                    self._telemetry[(where.site, where.gateway)] = data
                self._telemetry_due.set()
            await self._commit(parsed)
            client.ack_all(batch)

    async def _store_health(self) -> None:
        """Store the waiting telemetry, ``telemetry_chunk`` gateways per transaction.

        With thousands of gateways reporting every minute this is the cloud's steadiest
        load; lock events must not queue behind it, so it has its own path: each gateway's
        newest report only, gathered for ``telemetry_window_s``, and stored between event
        batches (:attr:`_db_turn`)."""
        tuning = self._tuning
        while True:
            await self._telemetry_due.wait()
            await asyncio.sleep(tuning.telemetry_window_s)
            while self._telemetry:
                keys = list(itertools.islice(self._telemetry, tuning.telemetry_chunk))
                reports = [(site, gw, self._telemetry.pop((site, gw))) for site, gw in keys]
                async with self._db_turn:
                    await asyncio.to_thread(self._store_telemetry, reports)
            self._telemetry_due.clear()

    def _store_telemetry(self, reports: list[tuple[str, str, TelemetryData]]) -> None:
        store_many(self._services.lock_reports.record_telemetry_many, reports, "lock reports")
        if self._fleet is not None:
            self._fleet.store_telemetry(reports)

    def _sort(self, batch: list[Delivery]) -> _Sorted:
        out = _Sorted()
        for _mid, _qos, topic, payload in batch:
            if topic is None:
                self._drop("a topic that is not UTF-8", ProtocolError("topic is not UTF-8"))
                continue
            try:
                where = _parse_topic(topic)
                message_id, kind, data = parse_with_id(where.channel, payload)
            except ProtocolError as exc:
                self._drop(topic, exc)
                continue
            if where.channel is Channel.EVENTS and isinstance(data, LockEventData):
                out.events.append(data)
                out.event_topics.append(where)
            elif where.channel is Channel.RESPONSE and isinstance(data, CommandReplyData):
                out.replies.append((where, data))
            elif where.channel is Channel.EVENTS and isinstance(
                data, CheckinData | ClinicActionData
            ):
                out.clinic.append((where, message_id, data))
            elif where.channel is Channel.STATUS and isinstance(data, StatusData):
                out.statuses.append((where, data))
            elif where.channel is Channel.ACCESS_APPLIED and isinstance(data, AccessAppliedData):
                out.applied.append(data)
            elif where.channel is Channel.TELEMETRY and isinstance(data, TelemetryData):
                out.telemetry.append((where, data))
            else:
                self._drop(topic, ProtocolError(f"a {kind.value} message on this channel"))
        self.stats.events_received += len(out.events)
        self.stats.clinic_events_received += len(out.clinic)
        return out

    def _drop(self, topic: str, exc: Exception) -> None:
        # never the payload: it may carry a PIN tag or a citizen's name
        self.stats.malformed += 1
        log.warning("dropped a malformed message on %s: %s", topic, exc)

    async def _commit(self, parsed: _Sorted) -> None:
        """Store a batch, retrying while the DB fails: nothing is acknowledged before."""
        attempt = 0
        while True:
            try:
                async with self._db_turn:
                    stored = await asyncio.to_thread(self._store, parsed)
            except SQLAlchemyError:
                log.exception("storing %d lock events failed; retrying", len(parsed.events))
                cap = min(self._tuning.backoff_cap_s, self._tuning.backoff_base_s * 2**attempt)
                attempt += 1
                await asyncio.sleep(random.uniform(0, cap))  # noqa: S311 - jitter
            else:
                self.stats.events_stored += stored
                return

    def _store(self, parsed: _Sorted) -> int:
        # status and applied versions: a failure is logged and the message dropped, as
        # the next birth or report repeats it; lock events are retried until stored
        store_many(
            self._services.lock_reports.record_applied_many, parsed.applied, "applied versions"
        )
        if parsed.clinic and self._clinic is not None:
            # like lock events: retried until stored; applied once each by envelope id
            by_gateway: dict[tuple[str, str], list[tuple[str, ClinicEvent]]] = {}
            for where, message_id, data in parsed.clinic:
                by_gateway.setdefault((where.site, where.gateway), []).append((message_id, data))
            for (site, gateway), items in by_gateway.items():
                self._clinic.agent_sync.apply(site, gateway, items)
        if self._fleet is not None:  # replies are retried like lock events; health is not
            self._fleet.store(
                FleetBatch(
                    statuses=[(w.site, w.gateway, s) for w, s in parsed.statuses],
                    events=[
                        (w.site, w.gateway, e)
                        for w, e in zip(parsed.event_topics, parsed.events, strict=True)
                    ],
                    replies=[(w.site, w.gateway, w.verb or "", r) for w, r in parsed.replies],
                )
            )
        return self._services.events.ingest_batch(
            [
                (w.site, w.gateway, e)
                for w, e in zip(parsed.event_topics, parsed.events, strict=True)
            ]
        )

    async def _publish_snapshots(self, client: aiomqtt.Client) -> None:
        """Publish the snapshots due, :data:`SNAPSHOT_CHUNK` gateways at a time (a connect
        makes every gateway's due at once): the next chunk is built (in a thread) while
        this one's PUBACKs come back. Whatever is not acknowledged when this stops (the
        connection was lost) goes back to ``_dirty``, to go out after the reconnect."""
        # aiomqtt warns of more than 10 publishes awaiting their PUBACK: a chunk is many more
        client.pending_calls_threshold = max(client.pending_calls_threshold, 2 * SNAPSHOT_CHUNK)
        while True:
            pending = {await self._dirty.get()}
            while not self._dirty.empty():
                pending.add(self._dirty.get_nowait())
            unsent = set(pending)
            keys = sorted(pending)
            chunks = [keys[i : i + SNAPSHOT_CHUNK] for i in range(0, len(keys), SNAPSHOT_CHUNK)]
            building = asyncio.create_task(self._build_chunk(chunks[0]))
            try:
                for i in range(len(chunks)):
                    built = await building
                    if i + 1 < len(chunks):
                        building = asyncio.create_task(self._build_chunk(chunks[i + 1]))
                    if built is None:  # retried in a second
                        unsent.difference_update(chunks[i])
                    else:  # a snapshot that could not be built was logged; not again now
                        unsent.difference_update(set(chunks[i]) - {(s, g) for s, g, *_ in built})
                        await self._publish_chunk(client, built, unsent)
            finally:
                building.cancel()
                for key in sorted(unsent):
                    self._dirty.put_nowait(key)

    async def _build_chunk(self, keys: list[tuple[str, str]]) -> list[_BuiltSnapshot] | None:
        """The snapshots of ``keys``, built in one transaction and serialised, in a thread;
        None when the DB failed: then they are due again in :data:`SNAPSHOT_RETRY_S`."""
        try:
            return await asyncio.to_thread(self._build_snapshots, keys)
        except SQLAlchemyError:  # the DB is away: these gateways again shortly
            log.exception("could not build %d access snapshots; retrying", len(keys))
            asyncio.get_running_loop().call_later(SNAPSHOT_RETRY_S, self._snapshots_due, keys)
            return None

    def _build_snapshots(self, keys: list[tuple[str, str]]) -> list[_BuiltSnapshot]:
        access = self._services.access
        try:
            snapshots = access.snapshots(keys)
        except SQLAlchemyError:
            raise
        except Exception:  # a bad row (a bug) must cost only its own gateway
            log.exception("building %d access snapshots failed; one at a time now", len(keys))
            snapshots = {}
            for key in keys:
                try:
                    snapshots.update(access.snapshots([key]))
                except SQLAlchemyError:
                    raise
                except Exception:
                    log.exception(
                        "could not build the access snapshot of %s/%s: its gateway keeps "
                        "the last one until the next change or reconnect",
                        *key,
                    )
        now = self._clock.now()
        return [
            (site, gateway, snapshot.version, make(MessageType.ACCESS_SNAPSHOT, snapshot, ts=now))
            for (site, gateway), snapshot in snapshots.items()
        ]

    async def _publish_chunk(
        self, client: aiomqtt.Client, built: list[_BuiltSnapshot], unsent: set[tuple[str, str]]
    ) -> None:
        """Publish ``built`` all at once and await the PUBACKs together; discard each
        acknowledged key from ``unsent``; raise the first :class:`aiomqtt.MqttError`."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        results = await asyncio.gather(
            *(self._publish_one(client, *snapshot) for snapshot in built), return_exceptions=True
        )
        lost: aiomqtt.MqttError | None = None
        for (site, gateway, _version, _payload), result in zip(built, results, strict=True):
            if result is None:
                unsent.discard((site, gateway))
            elif isinstance(result, aiomqtt.MqttError):
                lost = lost or result
            else:
                raise result
        if lost is not None:
            raise lost
        elapsed_ms = (loop.time() - started) * 1000
        if len(built) == 1:  # a change (an approval, a cancellation): say where it went
            site, gateway, version, _payload = built[0]
            log.info("published access snapshot v%d to %s/%s", version, site, gateway)
        else:
            log.info("published %d access snapshots in %.0f ms", len(built), elapsed_ms)

    def _snapshots_due(self, keys: list[tuple[str, str]]) -> None:
        for key in keys:
            self._dirty.put_nowait(key)

    async def _publish_one(
        self, client: aiomqtt.Client, site: str, gateway: str, version: int, payload: bytes
    ) -> None:
        await client.publish(topics.access(site, gateway), payload, qos=1, retain=True)
        self.stats.snapshots_published += 1
        log.debug("published access snapshot v%d to %s/%s", version, site, gateway)

    async def _publish_clinics(self, client: aiomqtt.Client, clinic: ClinicServices) -> None:
        """Publish a changed clinic site's display and clinic states as soon as it changed:
        a staff call should reach the waiting room's display at once."""
        while True:
            await self._clinic_dirty.wait()
            self._clinic_dirty.clear()
            pending, self._clinic_pending = self._clinic_pending, set()
            for site in sorted(pending):
                try:
                    await self._publish_clinic(client, clinic, site)
                except aiomqtt.MqttError:
                    self._clinic_due(site)  # goes out after the reconnect
                    raise
                except SQLAlchemyError:  # the DB is away: try this site again shortly
                    log.exception("could not build the clinic state of %s; retrying", site)
                    asyncio.get_running_loop().call_later(1.0, self._clinic_due, site)
                except Exception:  # a bad site must not stop the others
                    log.exception("could not publish the clinic state of %s", site)

    async def _publish_clinic(
        self, client: aiomqtt.Client, clinic: ClinicServices, site: str
    ) -> None:
        docs = await asyncio.to_thread(clinic.publisher.documents, site)
        now = self._clock.now()
        display = make(MessageType.DISPLAY_STATE, docs.display, ts=now)
        await client.publish(topics.display(site, docs.gateway), display, qos=1, retain=True)
        state = make(MessageType.CLINIC_STATE, docs.state, ts=now)
        await client.publish(topics.clinic(site, docs.gateway), state, qos=1, retain=True)
        self.stats.clinic_states_published += 1
        log.debug("published clinic state v%d to %s/%s", docs.state.version, site, docs.gateway)
