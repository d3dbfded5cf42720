"""The cloud's own MQTT 5 client (:mod:`cloud.mqtt_client`) against real Mosquitto: mutual
TLS, acknowledgement only when asked (the bridge's ack after commit), what the broker
refuses, and a lost or silent broker."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from cloud.mqtt_client import (
    Endpoint,
    MqttClient,
    MqttConnectError,
    MqttConnectionLostError,
    PublishRefusedError,
    SubscriptionRefusedError,
    tls_context,
)
from protocol import certs, mqtt5, topics
from protocol.certs import CertificateAuthority
from protocol.mqtt5 import ConnAck, Connect, PacketParser, Publish, Subscription
from tests.support.mosquitto import Mosquitto, free_port
from tests.support.secure_broker import Identity, SecureBroker

TOPIC = topics.events("gym-a", "gw-1")


def endpoint(broker: Mosquitto, client_id: str, **kwargs: object) -> Endpoint:
    return Endpoint(broker.host, broker.port, client_id, **kwargs)  # type: ignore[arg-type]


def tls_endpoint(broker: SecureBroker, identity: Identity, client_id: str) -> Endpoint:
    tls = tls_context(broker.ca.ca_cert, identity.cert, identity.key)
    return Endpoint("localhost", broker.port, client_id, tls=tls)


class Sink(list[Publish]):
    """An ``on_delivery`` that keeps what arrived, in order, and can wait for a payload."""

    def __init__(self) -> None:
        super().__init__()
        self.arrived = asyncio.Event()

    def __call__(self, delivery: Publish) -> None:
        self.append(delivery)
        self.arrived.set()

    async def until(self, payload: bytes) -> None:
        async with asyncio.timeout(10):
            while not any(d.payload == payload for d in self):
                self.arrived.clear()
                await self.arrived.wait()


@contextlib.asynccontextmanager
async def watched(client: MqttClient) -> AsyncIterator[asyncio.Task[None]]:
    """``client.run()`` as a task for the block (what the bridge's task group does)."""
    task = asyncio.create_task(client.run())
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, MqttConnectionLostError):
            await task


async def test_over_mutual_tls_a_publish_comes_back_to_its_subscriber(
    secure_broker: SecureBroker,
) -> None:
    got = Sink()
    async with MqttClient(tls_endpoint(secure_broker, secure_broker.cloud, "cloud"), got) as c:
        await c.subscribe(Subscription(TOPIC, qos=1))
        await c.publish(TOPIC, b"over tls", qos=1)
        await got.until(b"over tls")
    assert [(d.topic, d.qos) for d in got] == [(TOPIC, 1)]


async def test_a_publish_the_acl_forbids_fails_with_the_brokers_reason(
    secure_broker: SecureBroker,
) -> None:
    gateway = secure_broker.gateway("gym-a", "gw-1")
    async with MqttClient(tls_endpoint(secure_broker, gateway, "gym-a-gw-1"), print) as c:
        await c.publish(topics.events("gym-a", "gw-1"), b"mine", qos=1)  # its own: fine
        with pytest.raises(PublishRefusedError) as refused:
            await c.publish(topics.events("gym-b", "gw-1"), b"not mine", qos=1)
    assert refused.value.reason_code == mqtt5.ReasonCode.NOT_AUTHORIZED
    assert "not authorized" in str(refused.value)


async def test_a_certificate_from_another_ca_cannot_connect(secure_broker: SecureBroker) -> None:
    other = CertificateAuthority.create("Other CA", now=dt.datetime.now(dt.UTC), days=30)
    foreign = secure_broker.issue(certs.CLOUD_IDENTITY, name="foreign", authority=other)
    with pytest.raises(MqttConnectError):
        async with MqttClient(
            Endpoint(
                "localhost",
                secure_broker.port,
                "cloud",
                tls=tls_context(secure_broker.ca.ca_cert, foreign.cert, foreign.key),
                connect_timeout_s=3,
            ),
            print,
        ):
            pass


async def test_a_subscription_granted_a_lower_qos_than_asked_is_an_error(tmp_path: Path) -> None:
    # Mosquitto 2.0 grants a forbidden filter (it filters at delivery) but caps the QoS
    broker = Mosquitto(tmp_path / "broker", extra_config="max_qos 0")
    broker.start()
    try:
        async with MqttClient(endpoint(broker, "capped"), print) as c:
            with pytest.raises(SubscriptionRefusedError) as refused:
                await c.subscribe(Subscription(TOPIC, qos=1))
    finally:
        broker.stop()
    assert refused.value.topic_filter == TOPIC
    assert "granted QoS 0 where QoS 1 was asked" in str(refused.value)


async def test_a_delivery_stays_with_the_broker_until_it_is_acknowledged(
    mosquitto: Mosquitto,
) -> None:
    """What the bridge's ack after commit relies on: no PUBACK before ``ack_all``, so the
    broker sends an unacknowledged delivery again on the next connect of the session."""
    sessions: list[Sink] = []

    def session() -> MqttClient:
        sessions.append(Sink())
        ep = endpoint(mosquitto, "manual-ack", session_expiry_s=300, receive_maximum=10)
        return MqttClient(ep, sessions[-1])

    async with MqttClient(endpoint(mosquitto, "publisher"), print) as publisher:
        async with session() as client:
            assert not client.session_present
            await client.subscribe(Subscription(TOPIC, qos=1))
            await publisher.publish(TOPIC, b"first", qos=1)
            await sessions[-1].until(b"first")
        # left without a PUBACK: sent again, as a duplicate
        async with session() as client:
            assert client.session_present
            await sessions[-1].until(b"first")
            client.ack_all(sessions[-1][:1])
            await publisher.publish(TOPIC, b"marker", qos=1)
            await sessions[-1].until(b"marker")  # the PUBACK went out before it
        # acknowledged: gone; the marker was not acknowledged and comes again
        async with session() as client:
            await publisher.publish(TOPIC, b"last", qos=1)
            await sessions[-1].until(b"last")
            client.ack_all(sessions[-1])
        async with session() as client:  # all acknowledged: nothing comes again
            await publisher.publish(TOPIC, b"after", qos=1)
            await sessions[-1].until(b"after")
            client.ack_all(sessions[-1])

    assert [d.payload for d in sessions[0]] == [b"first"]
    assert [(d.payload, d.dup) for d in sessions[1]] == [(b"first", True), (b"marker", False)]
    assert [d.payload for d in sessions[2]] == [b"marker", b"last"]
    assert [d.payload for d in sessions[3]] == [b"after"]
    assert all(d.qos == 1 for s in sessions for d in s)


async def test_more_publishes_than_the_brokers_window_all_get_their_puback(
    mosquitto: Mosquitto,
) -> None:
    # Mosquitto's Receive Maximum is 20: a client that sends more unacknowledged is cut off
    got = Sink()
    async with (
        MqttClient(endpoint(mosquitto, "sub", receive_maximum=1000), got) as sub,
        MqttClient(endpoint(mosquitto, "pub"), print) as pub,
    ):
        await sub.subscribe(Subscription("load/#", qos=1))
        async with watched(pub), watched(sub):
            await asyncio.gather(*(pub.publish(f"load/{i}", b"%d" % i) for i in range(500)))
            # once publish() returned, the broker has it: a retained one is there for anyone
            await pub.publish("load/retained", b"kept", retain=True)
            seen = Sink()
            async with MqttClient(endpoint(mosquitto, "late"), seen) as late:
                await late.subscribe(Subscription("load/retained", qos=1))
                await seen.until(b"kept")
            await got.until(b"kept")
            sub.ack_all(got)
    assert sorted(int(d.payload) for d in got if d.topic != "load/retained") == list(range(500))


async def test_losing_the_broker_fails_run_and_every_later_call(mosquitto: Mosquitto) -> None:
    async with MqttClient(endpoint(mosquitto, "lost"), print) as client:
        runner = asyncio.create_task(client.run())
        await client.publish(TOPIC, b"before", qos=1)
        await asyncio.to_thread(mosquitto.stop)
        with pytest.raises(MqttConnectionLostError):
            async with asyncio.timeout(10):
                await runner
        with pytest.raises(MqttConnectionLostError):
            await client.publish(TOPIC, b"after", qos=1)
        with pytest.raises(MqttConnectionLostError):
            client.ack_all([Publish(TOPIC, b"x", qos=1, packet_id=1)])
    assert not client.connected


async def test_nobody_listening_is_a_connect_error() -> None:
    with pytest.raises(MqttConnectError, match="cannot connect"):
        async with MqttClient(Endpoint("127.0.0.1", free_port(), "nobody"), print):
            pass


async def test_a_broker_that_stops_answering_is_found_out_by_the_keepalive() -> None:
    """A peer that answers the CONNECT and then nothing (a half-open line): after one
    keepalive interval without a PINGRESP the connection counts as lost."""
    received: list[mqtt5.Packet] = []

    def silent() -> asyncio.Protocol:
        parser = PacketParser()

        class Silent(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                self.transport = transport

            def data_received(self, data: bytes) -> None:
                for packet in parser.feed(data):
                    received.append(packet)
                    if isinstance(packet, Connect):
                        assert isinstance(self.transport, asyncio.Transport)
                        self.transport.write(bytes(ConnAck(False)))

        return Silent()

    server = await asyncio.get_running_loop().create_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with MqttClient(Endpoint("127.0.0.1", port, "pinger", keepalive_s=1), print) as c:
            with pytest.raises(MqttConnectionLostError, match="no PINGRESP"):
                async with asyncio.timeout(5):
                    await c.run()
    finally:
        server.close()
    connect = received[0]
    assert isinstance(connect, Connect)
    assert (connect.keepalive, connect.clean_start) == (1, False)
    assert isinstance(received[1], mqtt5.PingReq)


async def test_keepalive_holds_an_idle_connection(mosquitto: Mosquitto) -> None:
    got = Sink()
    async with MqttClient(endpoint(mosquitto, "idle", keepalive_s=1), got) as client:
        await client.subscribe(Subscription(TOPIC, qos=0))
        async with watched(client) as runner:
            await asyncio.sleep(2.5)  # Mosquitto drops a client silent for 1.5 keepalives
            assert not runner.done()
            await client.publish(TOPIC, b"still here", qos=0)
            await got.until(b"still here")
