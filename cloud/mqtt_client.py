"""The cloud's MQTT 5 client: :mod:`protocol.mqtt5` on an :class:`asyncio.Protocol`, over
TCP or TLS (mutual, with our CA, certificate and key).

What the bridge needs and nothing more: one connection per ``async with`` (CONNECT with
``clean_start=False``, a session expiry and a Receive Maximum, so the broker keeps what
we have not acknowledged), SUBSCRIBE that fails unless every filter is granted the QoS
asked for, QoS 0 and QoS 1 PUBLISH (QoS 1 awaits its PUBACK and fails on a refusing
reason code), and keepalive PINGREQs. Deliveries go to ``on_delivery`` on the event loop,
in arrival order, as :class:`~protocol.mqtt5.Publish` packets; a QoS 1 one stays
unacknowledged until :meth:`MqttClient.ack_all` (the bridge calls it after the commit),
so a process that dies before gets it again on its next connect.

No reconnect here: a lost connection fails every waiting call with
:class:`MqttConnectionLostError` and :meth:`MqttClient.run` raises it; the caller (the bridge's
connection loop) backs off and opens a new client. Packet ids, pending PUBACKs and the
broker's window belong to one connection and die with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, NoReturn, Self, TypeVar

from cloud.errors import CloudError
from protocol import mqtt5
from protocol.mqtt5 import (
    ConnAck,
    Connect,
    Disconnect,
    MqttWireError,
    PacketParser,
    PingResp,
    PubAck,
    Publish,
    SubAck,
    Subscribe,
    Subscription,
    describe_reason,
    encode_pubacks,
    encode_publish,
)

MAX_PACKET_ID = 0xFFFF
_Ack = TypeVar("_Ack", PubAck, SubAck)


class MqttError(CloudError):
    """Root of the MQTT client's errors."""


class MqttConnectionError(MqttError, ConnectionError):
    """There is no connection to the broker (any more): open a new client, after a
    backoff."""


class MqttConnectError(MqttConnectionError):
    """The broker could not be reached, did not answer the CONNECT, or refused it."""

    def __init__(self, message: str, reason_code: int | None = None) -> None:
        super().__init__(message)
        self.reason_code = reason_code


class MqttConnectionLostError(MqttConnectionError):
    """The connection broke, the broker closed it, or it stopped answering PINGREQs."""


class SubscriptionRefusedError(MqttError):
    """The broker refused a topic filter, or granted it a lower QoS than asked."""

    def __init__(self, topic_filter: str, asked_qos: int, reason_code: int) -> None:
        if mqtt5.is_failure(reason_code):
            why = f"refused: {describe_reason(reason_code)}"
        else:
            why = f"granted QoS {reason_code} where QoS {asked_qos} was asked"
        super().__init__(f"the broker {why} for the subscription {topic_filter!r}")
        self.topic_filter = topic_filter
        self.reason_code = reason_code


class PublishRefusedError(MqttError):
    """The broker answered a QoS 1 PUBLISH with a failing reason code (an ACL, a quota)."""

    def __init__(self, topic: str, reason_code: int, reason: str | None) -> None:
        detail = f": {reason}" if reason else ""
        super().__init__(
            f"the broker refused a publish on {topic}: {describe_reason(reason_code)}{detail}"
        )
        self.topic = topic
        self.reason_code = reason_code


def tls_context(ca: Path, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    """Trust ``ca`` only (hostname checked); present ``cert``/``key`` (mutual TLS)."""
    context = ssl.create_default_context(cafile=str(ca))
    if cert is not None:
        context.load_cert_chain(cert, key)
    return context


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where and how to connect."""

    host: str
    port: int
    client_id: str
    tls: ssl.SSLContext | None = None
    keepalive_s: int = 60
    session_expiry_s: int = 0
    receive_maximum: int | None = None  # deliveries the broker may leave unacknowledged
    clean_start: bool = False
    connect_timeout_s: float = 10.0


class MqttClient(asyncio.Protocol):
    """One MQTT 5 connection; see the module docstring.

    ``async with MqttClient(endpoint, on_delivery) as client:`` connects and waits for
    the CONNACK; leaving sends DISCONNECT (the session stays, as its expiry says) and
    closes the socket. Only :meth:`run` watches the connection: run it in the same task
    group as the work that uses the client.
    """

    def __init__(self, endpoint: Endpoint, on_delivery: Callable[[Publish], None]) -> None:
        self._endpoint = endpoint
        self._on_delivery = on_delivery
        self._parser = PacketParser()
        self._transport: asyncio.Transport | None = None
        self._connack: asyncio.Future[ConnAck] | None = None
        self._closed: asyncio.Future[None] | None = None
        self._waiting: dict[int, asyncio.Future[PubAck | SubAck]] = {}
        self._next_id = 0
        self._window: asyncio.Semaphore | None = None
        self._ping: asyncio.TimerHandle | None = None
        self._pong_due = False
        self._lost: MqttConnectionLostError | None = None
        self.session_present = False

    # ------------------------------------------------------------ connection

    async def __aenter__(self) -> Self:
        loop = asyncio.get_running_loop()
        ep = self._endpoint
        self._connack = loop.create_future()
        self._closed = loop.create_future()
        where = f"{ep.host}:{ep.port}"
        try:
            async with asyncio.timeout(ep.connect_timeout_s):
                await loop.create_connection(
                    lambda: self,
                    ep.host,
                    ep.port,
                    ssl=ep.tls,
                    server_hostname=ep.host if ep.tls is not None else None,
                )
                assert self._transport is not None
                self._transport.write(
                    bytes(
                        Connect(
                            ep.client_id,
                            keepalive=ep.keepalive_s,
                            clean_start=ep.clean_start,
                            session_expiry_s=ep.session_expiry_s,
                            receive_maximum=ep.receive_maximum,
                        )
                    )
                )
                ack = await self._connack
        except TimeoutError:
            self._abort()
            raise MqttConnectError(
                f"the MQTT broker at {where} did not answer within {ep.connect_timeout_s:g} s"
            ) from None
        except MqttConnectionLostError as exc:
            raise MqttConnectError(
                f"the MQTT broker at {where} closed the connection: {exc}"
            ) from exc
        except OSError as exc:  # refused, unreachable, a TLS handshake that failed
            self._abort()
            raise MqttConnectError(f"cannot connect to the MQTT broker at {where}: {exc}") from exc
        except BaseException:  # cancelled: no socket left behind
            self._abort()
            raise
        if mqtt5.is_failure(ack.reason_code):
            self._abort()
            detail = f" ({ack.reason_string})" if ack.reason_string else ""
            raise MqttConnectError(
                f"the MQTT broker at {where} refused the connection: "
                f"{describe_reason(ack.reason_code)}{detail}",
                ack.reason_code,
            )
        self.session_present = ack.session_present
        self._window = asyncio.Semaphore(ack.receive_maximum)
        keepalive = ack.server_keep_alive if ack.server_keep_alive is not None else ep.keepalive_s
        if keepalive:
            self._ping = loop.call_later(keepalive, self._keepalive, keepalive)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.write(bytes(Disconnect()))  # normal: the broker drops the will
        self._abort()
        if self._closed is not None and not self._closed.done():
            with contextlib.suppress(TimeoutError, MqttConnectionLostError):
                async with asyncio.timeout(1.0):  # let a TLS close finish
                    await asyncio.shield(self._closed)

    @property
    def connected(self) -> bool:
        return self._transport is not None and not self._transport.is_closing()

    async def run(self) -> NoReturn:
        """Return never; raise :class:`MqttConnectionLostError` once the connection is lost."""
        assert self._closed is not None, "use the client in `async with`"
        await asyncio.shield(self._closed)
        raise self._lost or MqttConnectionLostError("the connection was closed")

    def _abort(self) -> None:
        if self._ping is not None:
            self._ping.cancel()
            self._ping = None
        if self._transport is not None:
            self._transport.close()

    def _keepalive(self, interval: int) -> None:
        if not self.connected:
            return
        if self._pong_due:  # nothing came back since the last PINGREQ
            self._fail(f"no PINGRESP within {interval} s")
            return
        self._pong_due = True
        self._write(mqtt5.PINGREQ)
        self._ping = asyncio.get_running_loop().call_later(interval, self._keepalive, interval)

    def _fail(self, why: str) -> None:
        # the reason travels in the error that :meth:`run` raises; the caller logs it
        if self._lost is None:
            self._lost = MqttConnectionLostError(why)
        self._abort()

    # --------------------------------------------------------------- asyncio

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            packets = self._parser.feed(data)
        except MqttWireError as exc:
            self._fail(f"the broker sent a malformed packet: {exc}")
            return
        self._pong_due = False  # anything from the broker shows it is there
        for packet in packets:
            if type(packet) is Publish:
                if packet.qos > 1:
                    self._fail("the broker sent a QoS 2 PUBLISH; we subscribe at QoS 1 at most")
                    return
                self._on_delivery(packet)
            elif isinstance(packet, PubAck | SubAck):
                waiter = self._waiting.pop(packet.packet_id, None)
                if waiter is not None and not waiter.done():
                    waiter.set_result(packet)
            elif isinstance(packet, ConnAck):
                if self._connack is not None and not self._connack.done():
                    self._connack.set_result(packet)
            elif isinstance(packet, Disconnect):
                detail = f" ({packet.reason_string})" if packet.reason_string else ""
                self._fail(
                    f"the broker disconnected us: {describe_reason(packet.reason_code)}{detail}"
                )
                return
            elif not isinstance(packet, PingResp):
                self._fail(f"the broker sent a {type(packet).__name__}, which a client never gets")
                return

    def connection_lost(self, exc: Exception | None) -> None:
        if self._lost is None:
            why = f"the connection broke: {exc}" if exc else "the broker closed the connection"
            self._lost = MqttConnectionLostError(why)
        lost = self._lost
        self._transport = None
        if self._ping is not None:
            self._ping.cancel()
            self._ping = None
        futures: list[asyncio.Future[Any]] = [*self._waiting.values()]
        if self._connack is not None:
            futures.append(self._connack)
        self._waiting.clear()
        for future in futures:
            if not future.done():
                future.set_exception(lost)
                future.exception()  # retrieved: nobody may be waiting any more
        if self._closed is not None and not self._closed.done():
            self._closed.set_result(None)

    # ------------------------------------------------------------ operations

    def _write(self, data: bytes) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            raise self._lost or MqttConnectionLostError("not connected")
        transport.write(data)

    def _packet_id(self) -> int:
        for _ in range(MAX_PACKET_ID):
            self._next_id = self._next_id % MAX_PACKET_ID + 1
            if self._next_id not in self._waiting:
                return self._next_id
        raise MqttError("every packet id is in use")  # the window makes this unreachable

    async def _request(self, packet_id: int, data: bytes, answer: type[_Ack]) -> _Ack:
        future: asyncio.Future[PubAck | SubAck] = asyncio.get_running_loop().create_future()
        self._waiting[packet_id] = future
        try:
            self._write(data)
            ack = await future
        finally:
            self._waiting.pop(packet_id, None)
        if not isinstance(ack, answer):
            self._fail(f"the broker answered packet {packet_id} with a {type(ack).__name__}")
            raise self._lost or MqttConnectionLostError("a wrong answer")
        return ack

    async def subscribe(self, *subscriptions: Subscription) -> None:
        """Subscribe, all in one SUBSCRIBE; :class:`SubscriptionRefusedError` unless the broker
        granted every filter the QoS asked for."""
        packet_id = self._packet_id()
        ack = await self._request(packet_id, bytes(Subscribe(packet_id, subscriptions)), SubAck)
        if len(ack.reason_codes) != len(subscriptions):
            self._fail(
                f"the broker answered {len(subscriptions)} subscriptions "
                f"with {len(ack.reason_codes)} reason codes"
            )
            raise self._lost or MqttConnectionLostError("malformed SUBACK")
        for sub, code in zip(subscriptions, ack.reason_codes, strict=True):
            if code != sub.qos:
                raise SubscriptionRefusedError(sub.topic_filter, sub.qos, code)

    async def publish(
        self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False
    ) -> None:
        """QoS 0: written. QoS 1: written once the broker's window has room, and returns
        when its PUBACK came; :class:`PublishRefusedError` if that PUBACK is a failure."""
        if qos == 0:
            self._write(encode_publish(topic, payload, retain=retain))
            return
        if qos != 1:
            raise ValueError("QoS 2 is not supported")
        assert self._window is not None, "use the client in `async with`"
        async with self._window:
            packet_id = self._packet_id()
            data = encode_publish(topic, payload, qos=1, retain=retain, packet_id=packet_id)
            ack = await self._request(packet_id, data, PubAck)
        if ack.failed:
            raise PublishRefusedError(topic, ack.reason_code, ack.reason_string)

    def ack_all(self, deliveries: Iterable[Publish]) -> None:
        """Acknowledge the QoS 1 ones of ``deliveries`` (in arrival order, as MQTT asks),
        in one write: the broker forgets them. :class:`MqttConnectionLostError` if the
        connection they came on is gone (the broker sends them again on the next)."""
        acks = encode_pubacks([d.packet_id for d in deliveries if d.qos == 1])
        if acks:
            self._write(acks)
