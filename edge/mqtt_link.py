"""The gateway's MQTT 5 session: birth and will, the access, display, clinic and config
subscriptions, fleet commands (``req/+``), the outbox pump.

One persistent session per gateway (client id ``{site}-{gateway}``, ``clean_start=False``
with a session expiry) so the broker queues access updates while the site is offline.
Reconnects use capped exponential backoff with full jitter. ``on_link_change(True)`` is
called once the session is ready (subscribed), ``on_link_change(False)`` as soon as it is
gone, before the backoff delay: the clinic desk takes over the queue at once.

Every message is handled under a trace id (:func:`protocol.tracing.traced`): its envelope
id once it parsed, so the log lines it causes carry the id it was born with. Commands and
the config twin are handed over as bytes: their services answer or report a malformed one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Callable

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge.backoff import Backoff
from edge.config import SiteConfig
from edge.errors import OutboxError, StoreError
from edge.outbox import Outbox, OutboxRow
from protocol import messages, topics
from protocol.clock import Clock
from protocol.errors import MessageError, TopicError
from protocol.messages import (
    AccessSnapshotData,
    ClinicStateData,
    DisplayStateData,
    GatewayState,
    MessageType,
    StatusData,
)
from protocol.tracing import traced

log = logging.getLogger(__name__)

PUBLISH_BATCH = 50  # rows in flight at once; paho sends them in order
OFFLINE_TIMEOUT_S = 5.0
OUTBOX_RETRY_S = 1.0
SnapshotHandler = Callable[[AccessSnapshotData], None]
DisplayStateHandler = Callable[[DisplayStateData], None]
ClinicStateHandler = Callable[[ClinicStateData], None]
LinkChangeHandler = Callable[[bool], None]
ConfigHandler = Callable[[bytes], None]
CommandHandler = Callable[[str, bytes], None]  # verb, payload
CertificateHandler = Callable[[bytes], bool]  # True: reconnect with the new TLS files
ConnectMessages = Callable[[], list[tuple[str, bytes]]]  # (topic, payload) at each connect


def client_tls(config: SiteConfig) -> ssl.SSLContext | None:
    """The gateway's TLS to the broker (its CA, its certificate as its identity), or None
    for a plain connection; shared with provisioning's tools that speak as this gateway."""
    tls = config.mqtt.tls
    if tls is None:
        return None
    ctx = ssl.create_default_context(cafile=str(tls.ca))
    if tls.cert is not None:
        ctx.load_cert_chain(str(tls.cert), None if tls.key is None else str(tls.key))
    return ctx


class MqttLink:
    """Owns the broker connection; ``run()`` until ``stop()``; thin: parse, hand over."""

    def __init__(
        self,
        config: SiteConfig,
        *,
        outbox: Outbox,
        clock: Clock,
        on_snapshot: SnapshotHandler,
        on_display_state: DisplayStateHandler | None = None,
        on_clinic_state: ClinicStateHandler | None = None,
        on_link_change: LinkChangeHandler | None = None,
        on_config: ConfigHandler | None = None,
        on_command: CommandHandler | None = None,
        on_certificate: CertificateHandler | None = None,
        connect_messages: ConnectMessages | None = None,
        agent_version: str | None = None,
    ) -> None:
        self.config = config
        self.outbox = outbox
        self.clock = clock
        self.on_snapshot = on_snapshot
        self.on_display_state = on_display_state
        self.on_clinic_state = on_clinic_state
        self.on_link_change = on_link_change
        self.on_config = on_config
        self.on_command = on_command
        self.on_certificate = on_certificate
        self.connect_messages = connect_messages
        self.agent_version = agent_version
        self.connected = asyncio.Event()
        self.connections = 0
        self._stopping = asyncio.Event()
        self._reconnecting = asyncio.Event()
        self._client: aiomqtt.Client | None = None

    # ------------------------------------------------------------ public

    def stop(self) -> None:
        """Publish ``offline``, disconnect cleanly and make ``run()`` return."""
        self._stopping.set()

    def reconnect(self) -> None:
        """Leave the current connection cleanly and connect again at once (with the TLS
        files as they are now on disk)."""
        self._reconnecting.set()

    async def publish_now(self, topic: str, payload: bytes, *, qos: int = 0) -> bool:
        """Publish without the outbox (telemetry); ``False`` when not connected."""
        client = self._client
        if client is None or not self.connected.is_set():
            return False
        try:
            await client.publish(topic, payload, qos=qos)
        except aiomqtt.MqttError:
            return False
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            # aiomqtt waits with 3.11's wait_for, which can swallow a cancellation that
            # meets the PUBACK: hand it back, or the caller's loop never stops
            raise asyncio.CancelledError
        return True

    async def run(self) -> None:
        """Connect, serve, and reconnect with backoff until ``stop()``."""
        mqtt = self.config.mqtt
        backoff = Backoff(mqtt.reconnect_base_s, mqtt.reconnect_cap_s)
        while not self._stopping.is_set():
            try:
                async with self._make_client() as client:
                    backoff.reset()
                    await self._session(client)
            except* aiomqtt.MqttError as group:
                self._down()  # before the delay: nobody should count on the link meanwhile
                delay = backoff.next_delay()
                level = logging.WARNING if backoff.attempt == 1 else logging.DEBUG
                log.log(
                    level,
                    "MQTT broker %s:%d: %s; reconnecting in %.1f s",
                    mqtt.host,
                    mqtt.port,
                    group.exceptions[0],
                    delay,
                )
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._stopping.wait()
            finally:
                self._down()

    def _down(self) -> None:
        self._client = None
        if not self.connected.is_set():
            return
        self.connected.clear()
        self._tell_link_change(up=False)

    def _tell_link_change(self, *, up: bool) -> None:
        if self.on_link_change is None:
            return
        try:
            self.on_link_change(up)
        except (StoreError, OutboxError) as exc:
            log.error("link %s: %s", "up" if up else "down", exc)  # noqa: TRY400 - expected failure, no traceback

    # ------------------------------------------------------------ session

    def _status(self, state: GatewayState) -> bytes:
        data = StatusData(
            state=state,
            agent_version=self.agent_version,
            locks=[lock.id for lock in self.config.locks],
        )
        return messages.make(MessageType.STATUS, data, ts=self.clock.now())

    def _make_client(self) -> aiomqtt.Client:
        cfg = self.config
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]  # paho: no hints
        props.SessionExpiryInterval = cfg.mqtt.session_expiry_s
        will = aiomqtt.Will(
            topics.status(cfg.site, cfg.gateway),
            self._status(GatewayState.OFFLINE),
            qos=1,
            retain=True,
        )
        return aiomqtt.Client(
            cfg.mqtt.host,
            cfg.mqtt.port,
            identifier=cfg.client_id,
            protocol=aiomqtt.ProtocolVersion.V5,
            clean_start=False,
            properties=props,
            keepalive=cfg.mqtt.keepalive,
            timeout=cfg.mqtt.timeout_s,
            will=will,
            tls_context=client_tls(cfg),
        )

    async def _session(self, client: aiomqtt.Client) -> None:
        cfg = self.config
        status_topic = topics.status(cfg.site, cfg.gateway)
        await client.publish(status_topic, self._status(GatewayState.ONLINE), qos=1, retain=True)
        await client.subscribe(topics.access(cfg.site, cfg.gateway), qos=1)
        if self.on_display_state is not None:
            await client.subscribe(self._display_topic, qos=1)
        if self.on_clinic_state is not None:
            await client.subscribe(self._clinic_topic, qos=1)
        if self.on_config is not None:
            await client.subscribe(topics.config(cfg.site, cfg.gateway), qos=1)
        if self.on_command is not None:
            await client.subscribe(topics.request_subscription(cfg.site, cfg.gateway), qos=1)
        if self.on_certificate is not None:
            await client.subscribe(topics.cert(cfg.site, cfg.gateway), qos=1)
        if self.connect_messages is not None:
            for topic, payload in self.connect_messages():
                await client.publish(topic, payload, qos=1)
        self._client = client
        self.connections += 1
        self.connected.set()
        self._tell_link_change(up=True)
        log.info(
            "agent %s/%s ready (broker %s:%d)", cfg.site, cfg.gateway, cfg.mqtt.host, cfg.mqtt.port
        )
        async with asyncio.TaskGroup() as tg:
            receiver = tg.create_task(self._receive(client), name="mqtt-receive")
            publisher = tg.create_task(self._publish_outbox(client), name="outbox-publisher")
            stopping = tg.create_task(self._stopping.wait())
            reconnecting = tg.create_task(self._reconnecting.wait())
            await asyncio.wait((stopping, reconnecting), return_when=asyncio.FIRST_COMPLETED)
            for task in (receiver, publisher, stopping, reconnecting):
                task.cancel()
        if self._reconnecting.is_set() and not self._stopping.is_set():
            self._reconnecting.clear()
            log.info("agent %s/%s reconnecting with its renewed certificate", *self._ids)
            return  # leaving `async with` disconnects cleanly; run() connects again at once
        # a clean DISCONNECT suppresses the will, so say offline ourselves first; the
        # agent is stopping, so nobody is told the link is down (rows stay for next time)
        self.connected.clear()
        await client.publish(
            status_topic,
            self._status(GatewayState.OFFLINE),
            qos=1,
            retain=True,
            timeout=OFFLINE_TIMEOUT_S,
        )
        log.info("agent %s/%s offline (clean stop)", cfg.site, cfg.gateway)

    async def _receive(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            with traced(None):  # until the envelope gives the message's own id
                self._dispatch(str(message.topic), message.payload)

    def _dispatch(self, topic: str, payload: object) -> None:
        cfg = self.config
        if topic == topics.access(cfg.site, cfg.gateway):
            self._handle_access(payload)
        elif topic == self._display_topic:
            self._handle_display(payload)
        elif topic == self._clinic_topic:
            self._handle_clinic(payload)
        elif topic == topics.config(cfg.site, cfg.gateway):
            if self.on_config is not None and isinstance(payload, bytes | bytearray):
                self.on_config(bytes(payload))
        elif topic == topics.cert(cfg.site, cfg.gateway):
            self._handle_certificate(payload)
        else:
            self._handle_request(topic, payload)

    def _handle_certificate(self, payload: object) -> None:
        if self.on_certificate is None or not isinstance(payload, bytes | bytearray):
            return
        if self.on_certificate(bytes(payload)):
            self.reconnect()

    def _handle_request(self, topic: str, payload: object) -> None:
        try:
            parsed = topics.parse(topic)
        except TopicError:
            parsed = None
        own = (self.config.site, self.config.gateway)
        if (
            parsed is None
            or parsed.channel is not topics.Channel.REQUEST
            or (parsed.site, parsed.gateway) != own
            or parsed.verb is None
            or self.on_command is None
        ):
            log.debug("ignoring a message on an unexpected topic")
            return
        if not isinstance(payload, bytes | bytearray):
            payload = b""
        self.on_command(parsed.verb, bytes(payload))

    @property
    def _ids(self) -> tuple[str, str]:
        return self.config.site, self.config.gateway

    @property
    def _display_topic(self) -> str:
        return topics.gateway_topic(self.config.site, self.config.gateway, topics.Channel.DISPLAY)

    @property
    def _clinic_topic(self) -> str:
        return topics.clinic(self.config.site, self.config.gateway)

    def _handle_clinic(self, payload: object) -> None:
        if self.on_clinic_state is None:
            return
        if not isinstance(payload, bytes | bytearray) or not payload:
            return  # an empty retained message clears the topic
        try:
            env, data = messages.parse(payload)
        except MessageError as exc:
            # the reason names fields only; the payload holds card tags
            log.warning("ignoring a malformed clinic state: %s", exc)
            return
        if not isinstance(data, ClinicStateData):
            log.warning("ignoring a %s message on the clinic topic", type(data).__name__)
            return
        with traced(env.id):
            try:
                self.on_clinic_state(data)
            except (StoreError, OutboxError) as exc:
                log.error("could not take clinic state v%d: %s", data.version, exc)  # noqa: TRY400 - expected failure, no traceback

    def _handle_display(self, payload: object) -> None:
        if self.on_display_state is None:
            return
        if not isinstance(payload, bytes | bytearray) or not payload:
            return  # an empty retained message clears the topic; nothing to show
        try:
            env, data = messages.parse(payload)
        except MessageError as exc:
            # the reason names fields only, never the payload
            log.warning("ignoring a malformed display state: %s", exc)
            return
        if not isinstance(data, DisplayStateData):
            log.warning("ignoring a %s message on the display topic", type(data).__name__)
            return
        with traced(env.id):
            try:
                self.on_display_state(data)
            except StoreError as exc:
                log.error("could not store display state v%d: %s", data.version, exc)  # noqa: TRY400 - expected failure, no traceback

    def _handle_access(self, payload: object) -> None:
        if not isinstance(payload, bytes | bytearray) or not payload:
            return  # an empty retained message clears the topic; nothing to apply
        try:
            env, data = messages.parse(payload)
        except MessageError as exc:
            # the reason names fields only; the payload may hold PIN tags
            log.warning("ignoring a malformed access snapshot: %s", exc)
            return
        if not isinstance(data, AccessSnapshotData):
            log.warning("ignoring a %s message on the access topic", type(data).__name__)
            return
        with traced(env.id):
            try:
                self.on_snapshot(data)
            except StoreError as exc:
                log.error("could not store access snapshot v%d: %s", data.version, exc)  # noqa: TRY400 - expected failure, no traceback

    async def _publish_outbox(self, client: aiomqtt.Client) -> None:
        while True:
            self.outbox.wakeup.clear()  # before peek, so a row added meanwhile is not missed
            try:
                rows = self.outbox.peek(PUBLISH_BATCH)
            except OutboxError as exc:
                log.error("%s; retrying", exc)  # noqa: TRY400 - expected failure, no traceback
                rows = []
            if not rows:
                await self.outbox.wakeup.wait()
                continue
            async with asyncio.TaskGroup() as tg:
                sent = [tg.create_task(self._publish_row(client, row)) for row in rows]
            if not all(task.result() for task in sent):
                await asyncio.sleep(OUTBOX_RETRY_S)  # do not spin re-sending on a broken disk

    async def _publish_row(self, client: aiomqtt.Client, row: OutboxRow) -> bool:
        # aiomqtt 2.5 returns from a QoS 1 publish once the broker's PUBACK arrived
        await client.publish(row.topic, row.payload, qos=row.qos)
        try:
            self.outbox.remove(row.id, now=self.clock.now())
        except OutboxError as exc:
            log.error("%s; the message will be sent again", exc)  # noqa: TRY400 - expected failure, no traceback
            return False
        return True
