"""One simulated gateway's MQTT 5 session as an :class:`asyncio.Protocol` (no task, no
thread: bytes in through ``data_received``, out through the transport).

The same object serves every connection of its gateway, so what outlives a connection
lives here: the outbox (QoS 1 messages not yet sent) and the in-flight messages (sent, not
acknowledged). After a reconnect the in-flight ones go again with their packet ids and the
DUP flag, as MQTT 5 asks of a client whose session survived; the cloud de-duplicates lock
events by ``(lock_id, seq)`` anyway. Like the real agent (``edge/mqtt_link.py``): CONNECT
with ``clean_start=False``, a session expiry and the retained last will ``offline``; then
the retained birth ``online`` and one SUBSCRIBE for its down topics (the broker sends the
retained snapshot again), then the outbox.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from enum import IntEnum
from typing import Protocol

from firmware_sim.fleet.model import SimGateway
from protocol.messages import GatewayState
from protocol.mqtt5 import (
    PINGREQ,
    ConnAck,
    Connect,
    Disconnect,
    MqttWireError,
    PacketParser,
    PubAck,
    Publish,
    SubAck,
    Subscribe,
    Subscription,
    Will,
    encode_publish,
)

log = logging.getLogger(__name__)

SUBSCRIBE_ID = 1  # packet id of the one SUBSCRIBE per connection; publishes start above


class Kind(IntEnum):
    """What an outgoing QoS 1 message is, for the counters."""

    BIRTH = 0
    EVENT = 1
    APPLIED = 2


Message = tuple[str, bytes, Kind]  # topic, payload, kind


class LinkOwner(Protocol):
    """What a link tells the fleet and asks of it."""

    def now(self) -> float:
        """Monotonic seconds (the loop's time, CLOCK_MONOTONIC: comparable across
        processes on Linux)."""
        ...

    def epoch(self) -> float:
        """Wall-clock UTC epoch seconds, for the wire."""
        ...

    def link_ready(self, link: GatewayLink) -> None: ...

    def link_lost(self, link: GatewayLink, *, was_ready: bool) -> None: ...

    def published(self, kind: Kind) -> None: ...

    def acknowledged(self, kind: Kind) -> None: ...

    def snapshot_taken(self, link: GatewayLink, reports: int) -> None: ...


class GatewayLink(asyncio.Protocol):
    """See the module docstring. ``enqueue`` a QoS 1 message at any time; it goes out as
    soon as the session is ready and the in-flight window has room."""

    def __init__(
        self,
        gateway: SimGateway,
        owner: LinkOwner,
        *,
        keepalive_s: int,
        session_expiry_s: int,
        inflight_max: int,
    ) -> None:
        self.gateway = gateway
        self.owner = owner
        self.keepalive_s = keepalive_s
        self.session_expiry_s = session_expiry_s
        self.inflight_max = inflight_max
        self.transport: asyncio.Transport | None = None
        self.parser = PacketParser()
        self.ready = False  # CONNACK in, SUBSCRIBE acknowledged
        self.window = inflight_max
        self.outbox: deque[Message] = deque()
        self.inflight: dict[int, Message] = {}
        self.next_id = SUBSCRIBE_ID
        self.attempt = 0  # reconnect attempts since the last session
        self.connected_at = 0.0  # loop time of the TCP connect
        self.last_sent = 0.0
        self.last_heard = 0.0
        self.pinging = False  # a PINGREQ is out and nothing was heard since
        self.next_telemetry = 0.0
        self.sessions = 0

    # ------------------------------------------------------------ asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.parser = PacketParser()
        self.ready = False
        self.pinging = False
        now = self.owner.now()
        self.connected_at = self.last_heard = now
        gw = self.gateway
        will = Will(gw.topic_status, gw.status(GatewayState.OFFLINE, self.owner.epoch()), 1, True)
        self._write(
            bytes(
                Connect(
                    gw.client_id,
                    keepalive=self.keepalive_s,
                    clean_start=False,
                    session_expiry_s=self.session_expiry_s,
                    will=will,
                )
            )
        )

    def data_received(self, data: bytes) -> None:
        self.last_heard = self.owner.now()
        self.pinging = False
        try:
            packets = self.parser.feed(data)
        except MqttWireError as exc:
            log.warning("%s: broker sent %s; dropping the connection", self.gateway.client_id, exc)
            self.abort()
            return
        for packet in packets:
            if isinstance(packet, Publish):
                self._on_publish(packet)
            elif isinstance(packet, PubAck):
                self._on_puback(packet.packet_id)
            elif isinstance(packet, ConnAck):
                self._on_connack(packet)
            elif isinstance(packet, SubAck):
                self._on_suback()
            elif isinstance(packet, Disconnect):
                log.debug(
                    "%s: broker disconnected (0x%02x)", self.gateway.client_id, packet.reason_code
                )
                self.abort()
                return
            # PINGRESP: hearing it was the point

    def connection_lost(self, exc: Exception | None) -> None:
        was_ready = self.ready
        self.transport = None
        self.ready = False
        # a birth is sent afresh on every connection; everything else goes again
        for packet_id in [i for i, m in self.inflight.items() if m[2] is Kind.BIRTH]:
            del self.inflight[packet_id]
        self.owner.link_lost(self, was_ready=was_ready)

    # ------------------------------------------------------------ public

    def enqueue(self, topic: str, payload: bytes, kind: Kind) -> None:
        """Queue a QoS 1 message; it is sent when the window allows."""
        self.outbox.append((topic, payload, kind))
        if self.ready:
            self._pump()

    def publish_now(self, topic: str, payload: bytes) -> bool:
        """QoS 0, only while the session is up (telemetry); False when it is not."""
        if not self.ready:
            return False
        self._write(encode_publish(topic, payload))
        return True

    def keepalive(self, now: float) -> None:
        """Ping when nothing was sent, or nothing heard, for a keepalive interval (QoS 0
        telemetry keeps the broker content but brings no answer); drop a connection
        that has been silent for one and a half (the broker is gone without a FIN)."""
        if self.transport is None:
            return
        silent = now - self.last_heard
        if silent > 1.5 * self.keepalive_s:
            log.debug("%s: broker silent; dropping the connection", self.gateway.client_id)
            self.abort()
        elif (
            self.ready
            and not self.pinging
            and (now - self.last_sent >= self.keepalive_s or silent >= self.keepalive_s)
        ):
            self._write(PINGREQ)
            self.pinging = True

    def close(self) -> None:
        """Clean stop, as the agent does: ``offline`` retained, then DISCONNECT (which
        suppresses the will)."""
        if self.transport is None:
            return
        if self.ready:
            offline = self.gateway.status(GatewayState.OFFLINE, self.owner.epoch())
            self._write(
                encode_publish(
                    self.gateway.topic_status, offline, qos=1, retain=True, packet_id=self._id()
                )
            )
        self._write(bytes(Disconnect()))
        self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    @property
    def outbox_depth(self) -> int:
        return len(self.outbox) + len(self.inflight)

    # ------------------------------------------------------------ session

    def _write(self, data: bytes) -> None:
        if self.transport is not None:
            self.transport.write(data)
            self.last_sent = self.owner.now()

    def _id(self) -> int:
        # 1 is the SUBSCRIBE's; publishes cycle through the rest, skipping any in flight
        while True:
            self.next_id = self.next_id + 1 if self.next_id < 0xFFFF else SUBSCRIBE_ID + 1
            if self.next_id not in self.inflight:
                return self.next_id

    def _on_connack(self, ack: ConnAck) -> None:
        if ack.reason_code != 0:
            log.warning(
                "%s: broker refused the connection (0x%02x)",
                self.gateway.client_id,
                ack.reason_code,
            )
            self.abort()
            return
        self.window = max(1, min(self.inflight_max, ack.receive_maximum))
        gw = self.gateway
        birth = gw.status(GatewayState.ONLINE, self.owner.epoch())
        packet_id = self._id()
        self.inflight[packet_id] = (gw.topic_status, birth, Kind.BIRTH)
        out = [encode_publish(gw.topic_status, birth, qos=1, retain=True, packet_id=packet_id)]
        out.append(bytes(Subscribe(SUBSCRIBE_ID, tuple(Subscription(t) for t in gw.subscriptions))))
        for old_id, (topic, payload, _kind) in self.inflight.items():
            if old_id != packet_id:
                out.append(encode_publish(topic, payload, qos=1, packet_id=old_id, dup=True))
        self._write(b"".join(out))

    def _on_suback(self) -> None:
        self.ready = True
        self.attempt = 0
        self.sessions += 1
        self.owner.link_ready(self)
        self._pump()

    def _on_puback(self, packet_id: int) -> None:
        message = self.inflight.pop(packet_id, None)
        if message is None:
            return
        self.owner.acknowledged(message[2])
        if self.outbox and self.ready:
            self._pump()

    def _on_publish(self, packet: Publish) -> None:
        if packet.qos == 1:
            self._write(bytes(PubAck(packet.packet_id)))
        gw = self.gateway
        if packet.topic == gw.topic_access:
            reports = gw.take_access(packet.payload, self.owner.epoch(), self.owner.now())
            if reports:
                self.owner.snapshot_taken(self, len(reports))
                for payload in reports:
                    self.enqueue(gw.topic_applied, payload, Kind.APPLIED)
        elif packet.topic == gw.topic_display:
            gw.take_display(packet.payload)

    def _pump(self) -> None:
        if self.transport is None:
            return
        out = []
        while self.outbox and len(self.inflight) < self.window:
            message = self.outbox.popleft()
            packet_id = self._id()
            self.inflight[packet_id] = message
            out.append(encode_publish(message[0], message[1], qos=1, packet_id=packet_id))
            self.owner.published(message[2])
        if out:
            self._write(b"".join(out))
