"""The production broker config against real Mosquitto and real TLS: who may connect,
and what the broker *delivers* (a forbidden SUBSCRIBE is granted; delivery is the test)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import socket
import ssl

import aiomqtt
import pytest

from protocol import certs, topics
from protocol.acl import render_acl
from protocol.certs import CertificateAuthority
from tests.support.secure_broker import Identity, SecureBroker

REFUSED_TIMEOUT = 2  # a refused TLS 1.3 client certificate may only show as no CONNACK


async def collect(client: aiomqtt.Client, seconds: float = 0.7) -> list[tuple[str, bytes]]:
    """Everything delivered to ``client`` within ``seconds``."""
    got: list[tuple[str, bytes]] = []
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            async for message in client.messages:
                assert isinstance(message.payload, bytes)
                got.append((str(message.topic), message.payload))
    return got


async def refused(broker: SecureBroker, identity: Identity | None, cid: str) -> str:
    """Connect and expect the broker to refuse; the error text."""
    client = broker.client(identity, cid, timeout=REFUSED_TIMEOUT)
    with pytest.raises(aiomqtt.MqttError) as caught:
        async with client:
            pass
    return str(caught.value)


async def test_gateway_cannot_read_another_gateways_access_snapshot(
    secure_broker: SecureBroker,
) -> None:
    a, b = secure_broker.gateway("gym-a", "gw-1"), secure_broker.gateway("gym-b", "gw-1")
    async with secure_broker.client(secure_broker.cloud, "cloud") as cloud:
        await cloud.publish(topics.access("gym-b", "gw-1"), b"b-snapshot", qos=1, retain=True)
        await cloud.publish(topics.access("gym-a", "gw-1"), b"a-snapshot", qos=1, retain=True)
    async with (
        secure_broker.client(a, "gym-a-gw-1") as gw_a,
        secure_broker.client(b, "gym-b-gw-1") as gw_b,
    ):
        await gw_a.subscribe(topics.access("gym-b", "gw-1"), qos=1)
        await gw_a.subscribe("denen/v1/#", qos=1)
        await gw_b.subscribe(topics.access("gym-b", "gw-1"), qos=1)
        seen_by_a, seen_by_b = await asyncio.gather(collect(gw_a), collect(gw_b))
    assert seen_by_a == [(topics.access("gym-a", "gw-1"), b"a-snapshot")]
    assert seen_by_b == [(topics.access("gym-b", "gw-1"), b"b-snapshot")]


async def test_gateway_cannot_publish_another_gateways_events(
    secure_broker: SecureBroker,
) -> None:
    a = secure_broker.gateway("gym-a", "gw-1")
    async with secure_broker.client(secure_broker.cloud, "cloud") as cloud:
        await cloud.subscribe("denen/v1/#", qos=1)
        async with secure_broker.client(a, "gym-a-gw-1") as gw_a:
            await gw_a.publish(topics.events("gym-b", "gw-1"), b"forged", qos=1)
            await gw_a.publish(topics.BROADCAST_ANNOUNCE, b"fake alarm", qos=1)
            await gw_a.publish(topics.events("gym-a", "gw-1"), b"own", qos=1)
        seen = await collect(cloud)
    # the cloud identity reads everything that was allowed, and nothing else arrived
    assert seen == [(topics.events("gym-a", "gw-1"), b"own")]


async def test_cloud_reads_every_gateway_and_gateways_read_broadcast(
    secure_broker: SecureBroker,
) -> None:
    a, b = secure_broker.gateway("gym-a", "gw-1"), secure_broker.gateway("gym-b", "gw-1")
    async with (
        secure_broker.client(secure_broker.cloud, "cloud") as cloud,
        secure_broker.client(a, "gym-a-gw-1") as gw_a,
        secure_broker.client(b, "gym-b-gw-1") as gw_b,
    ):
        await cloud.subscribe("denen/v1/+/+/events", qos=1)
        await gw_a.subscribe("denen/v1/broadcast/#", qos=1)
        await gw_a.publish(topics.events("gym-a", "gw-1"), b"a", qos=1)
        await gw_b.publish(topics.events("gym-b", "gw-1"), b"b", qos=1)
        await cloud.publish(topics.BROADCAST_ANNOUNCE, b"typhoon", qos=1)
        seen_by_cloud, seen_by_a = await asyncio.gather(collect(cloud), collect(gw_a))
    assert sorted(seen_by_cloud) == [
        (topics.events("gym-a", "gw-1"), b"a"),
        (topics.events("gym-b", "gw-1"), b"b"),
    ]
    assert seen_by_a == [(topics.BROADCAST_ANNOUNCE, b"typhoon")]


async def test_valid_certificate_not_in_the_acl_can_do_nothing(
    secure_broker: SecureBroker,
) -> None:
    stranger = secure_broker.gateway("gym-z", "gw-9")  # signed by our CA, never enrolled
    async with secure_broker.client(secure_broker.cloud, "cloud") as cloud:
        await cloud.subscribe("denen/v1/#", qos=1)
        async with secure_broker.client(stranger, "gym-z-gw-9") as gw:
            await gw.publish(topics.events("gym-z", "gw-9"), b"x", qos=1)
        assert await collect(cloud) == []


async def test_expired_certificate_is_refused(secure_broker: SecureBroker) -> None:
    past = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    expired = secure_broker.issue(
        certs.gateway_identity("gym-a", "gw-1"), name="expired", not_after=past
    )
    await refused(secure_broker, expired, "gym-a-gw-1")


async def test_certificate_from_another_ca_is_refused(secure_broker: SecureBroker) -> None:
    other = CertificateAuthority.create("Evil CA", now=dt.datetime.now(dt.UTC), days=30)
    forged = secure_broker.issue(
        certs.gateway_identity("gym-a", "gw-1"), name="forged", authority=other
    )
    await refused(secure_broker, forged, "gym-a-gw-1")


async def test_anonymous_and_certificate_less_clients_are_refused(
    secure_broker: SecureBroker,
) -> None:
    await refused(secure_broker, None, "anon")
    plain = aiomqtt.Client("127.0.0.1", secure_broker.port, identifier="plain", timeout=2)
    with pytest.raises(aiomqtt.MqttError):
        async with plain:
            pass


def test_clients_check_the_broker_certificate(secure_broker: SecureBroker) -> None:
    a = secure_broker.gateway("gym-a", "gw-1")
    # raw sockets: paho leaks the socket of a failed handshake (an unraisable warning)
    for ctx, name in [
        (ssl.create_default_context(), "localhost"),  # the system CAs do not know ours
        (secure_broker.tls_context(a), "mqtt.elsewhere.example"),  # not in the SANs
    ]:
        ctx.load_cert_chain(a.cert, a.key)
        with (
            socket.create_connection(("127.0.0.1", secure_broker.port), timeout=5) as raw,
            pytest.raises(ssl.SSLCertVerificationError),
            ctx.wrap_socket(raw, server_hostname=name),
        ):
            pass
    with (
        socket.create_connection(("127.0.0.1", secure_broker.port), timeout=5) as raw,
        secure_broker.tls_context(a).wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        assert tls.version() in {"TLSv1.2", "TLSv1.3"}


async def test_revoked_gateway_is_shut_out_and_others_still_connect(
    secure_broker: SecureBroker,
) -> None:
    a, b = secure_broker.gateway("gym-a", "gw-1"), secure_broker.gateway("gym-b", "gw-1")
    async with secure_broker.client(secure_broker.cloud, "cloud") as cloud:
        await cloud.subscribe("denen/v1/#", qos=1)
        async with secure_broker.client(a, "gym-a-gw-1") as stolen:
            await stolen.publish(topics.events("gym-a", "gw-1"), b"before", qos=1)
            # what the cloud does on revoke: CRL with the serial, ACL without the gateway
            secure_broker.revoke(a, keep=[("gym-b", "gw-1")])
            # the open connection survives a reload, but the reloaded ACL applies to it
            await stolen.publish(topics.events("gym-a", "gw-1"), b"after", qos=1)
        assert await collect(cloud) == [(topics.events("gym-a", "gw-1"), b"before")]
    await refused(secure_broker, a, "gym-a-gw-1")
    async with secure_broker.client(b, "gym-b-gw-1") as other:
        await other.publish(topics.events("gym-b", "gw-1"), b"still here", qos=1)


async def test_only_the_certificate_itself_may_say_it_is_in_use(
    secure_broker: SecureBroker,
) -> None:
    """Two certificates of one gateway (a renewal under way): each may say on
    ``cert/in-use/{tag}`` that it is in use, none may say it for the other, so the cloud
    revokes the old one only once the new one is really connected."""
    old = secure_broker.issue(certs.certificate_identity("gym-a", "gw-1", "000000aa"))
    new = secure_broker.issue(certs.certificate_identity("gym-a", "gw-1", "000000bb"))
    secure_broker.acl.write_text(render_acl([old.cn, new.cn]))
    secure_broker.broker.reload()
    async with secure_broker.client(secure_broker.cloud, "cloud") as cloud:
        await cloud.subscribe(f"{topics.ROOT}/+/+/cert/in-use/+", qos=1)
        async with (
            secure_broker.client(old, "old-cert") as old_link,
            secure_broker.client(new, "gym-a-gw-1") as new_link,
        ):
            await old_link.publish(topics.cert_in_use("gym-a", "gw-1", "000000bb"), b"x", qos=1)
            await old_link.publish(topics.cert_in_use("gym-a", "gw-1", "000000aa"), b"a", qos=1)
            await new_link.publish(topics.cert_in_use("gym-a", "gw-1", "000000aa"), b"x", qos=1)
            await new_link.publish(topics.cert_in_use("gym-a", "gw-1", "000000bb"), b"b", qos=1)
        assert await collect(cloud) == [
            (topics.cert_in_use("gym-a", "gw-1", "000000aa"), b"a"),
            (topics.cert_in_use("gym-a", "gw-1", "000000bb"), b"b"),
        ]
