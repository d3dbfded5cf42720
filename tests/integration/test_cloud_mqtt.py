"""The MQTT bridge against a real Mosquitto: events in (once), snapshots out (retained)."""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import aiomqtt
import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import event, text

from cloud.app import create_app
from cloud.bootstrap import DemoSeed, seed_demo
from cloud.gym.access import AccessChanged, bump_version
from cloud.gym.models import Facility, Lock
from cloud.mqtt_bridge import MqttBridge
from cloud.settings import CloudSettings
from protocol import topics
from protocol.clock import ManualClock
from protocol.messages import (
    AccessSnapshotData,
    GatewayState,
    LockEventData,
    LockEventKind,
    MessageType,
    StatusData,
    TelemetryData,
    make,
    parse,
)
from protocol.pin import pin_tag
from protocol.topics import Channel
from tests.support.cloud import basic
from tests.support.confirm_mail import citizen_view, confirm_by_mail
from tests.support.mosquitto import Mosquitto

NOW = 1_799_971_200
TEN = NOW + 3600


@dataclass
class Cloud:
    app: FastAPI
    http: httpx.AsyncClient
    seed: DemoSeed
    broker: Mosquitto

    @property
    def bridge(self) -> MqttBridge:
        bridge: MqttBridge = self.app.state.bridge
        return bridge

    def staff(self) -> dict[str, str]:
        return basic("manager", self.seed.manager.password)

    def client(self) -> aiomqtt.Client:
        return aiomqtt.Client(
            self.broker.host, self.broker.port, protocol=aiomqtt.ProtocolVersion.V5
        )


@pytest.fixture
async def cloud(tmp_path: Path, mosquitto: Mosquitto) -> AsyncIterator[Cloud]:
    settings = CloudSettings(
        database_url=f"sqlite:///{tmp_path}/mqtt.db",
        secret_key="s" * 40,
        metrics_token="m" * 32,
        mqtt_host=mosquitto.host,
        mqtt_port=mosquitto.port,
        mqtt_client_id="cloud-test",
    )
    app = create_app(settings, clock=ManualClock(NOW))
    # seed before start-up, so the start-up publishes the site's first snapshot
    async with app.router.lifespan_context(app):
        with app.state.sessions.begin() as session:
            seed = seed_demo(session)
        app.state.bus.publish(AccessChanged(seed.site, seed.gateway))
        async with asyncio.timeout(10):
            await app.state.bridge.wait_connected()
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://cloud") as http:
            yield Cloud(app, http, seed, mosquitto)


def _unlock(seq: int, grant_id: str | None = None) -> bytes:
    data = LockEventData(
        lock_id="gym-a-1",
        seq=seq,
        lock_ts=NOW + seq,
        kind=LockEventKind.UNLOCKED,
        grant_id=grant_id,
    )
    return make(MessageType.LOCK_EVENT, data, ts=NOW + seq)


async def _eventually(check: Callable[[], bool]) -> None:
    async with asyncio.timeout(20):
        while True:
            if check():
                return
            await asyncio.sleep(0.02)


async def _audit_until(cloud: Cloud, count: int) -> list[dict[str, object]]:
    async with asyncio.timeout(10):
        while True:
            r = await cloud.http.get("/api/locks/gym-a-1/audit", headers=cloud.staff())
            rows: list[dict[str, object]] = r.json()
            if len(rows) >= count:
                return rows
            await asyncio.sleep(0.05)


async def test_event_published_twice_is_stored_once(cloud: Cloud) -> None:
    events_topic = topics.events(cloud.seed.site, cloud.seed.gateway)
    async with cloud.client() as client:
        payload = _unlock(1)
        await client.publish(events_topic, payload, qos=1)
        await client.publish(events_topic, payload, qos=1)  # a redelivery
        await client.publish(events_topic, _unlock(2), qos=1)
    rows = await _audit_until(cloud, 2)
    assert [row["seq"] for row in rows] == [2, 1]
    await _eventually(lambda: cloud.bridge.stats.received["lock_event"] >= 3)
    assert len(await _audit_until(cloud, 2)) == 2


async def test_garbage_is_counted_and_dropped_and_the_bridge_keeps_going(
    cloud: Cloud, caplog: pytest.LogCaptureFixture
) -> None:
    events_topic = topics.events(cloud.seed.site, cloud.seed.gateway)
    secretish = b'{"v": 1, "type": "lock_event", "data": {"pin": "482913"}}'
    with caplog.at_level(logging.WARNING, logger="cloud.mqtt_bridge"):
        async with cloud.client() as client:
            await client.publish(events_topic, b"\x00not json", qos=1)
            await client.publish(events_topic, secretish, qos=1)
            await client.publish(events_topic, _unlock(5), qos=1)
        rows = await _audit_until(cloud, 1)
    assert [row["seq"] for row in rows] == [5]
    assert cloud.bridge.stats.malformed == 2
    assert events_topic in caplog.text
    assert "482913" not in caplog.text


async def test_approval_publishes_a_retained_snapshot_a_fresh_subscriber_gets(
    cloud: Cloud,
) -> None:
    body = {
        "lock_id": "gym-a-1",
        "name": "Taro",
        "email": "t@x.jp",
        "start": TEN,
        "end": TEN + 3600,
    }
    rid = (await cloud.http.post("/api/reservations", json=body)).json()["id"]
    await confirm_by_mail(cloud.http, cloud.app.state.sessions, "t@x.jp", rid)
    await cloud.http.post(f"/api/reservations/{rid}/approve", headers=cloud.staff())
    grant = citizen_view(cloud.app.state.services, cloud.app.state.sessions, rid).grant
    assert grant is not None
    assert grant.pin is not None

    access_topic = topics.access(cloud.seed.site, cloud.seed.gateway)
    async with asyncio.timeout(10):
        while True:  # the latest retained snapshot carries the grant
            async with cloud.client() as fresh:
                await fresh.subscribe(access_topic, qos=1)
                message = await anext(aiter(fresh.messages))
            if not message.retain:  # a publish that crossed our SUBSCRIBE: look again
                continue
            assert isinstance(message.payload, bytes)
            envelope, snapshot = parse(message.payload)
            assert isinstance(snapshot, AccessSnapshotData)
            if snapshot.locks[0].grants:
                break
            await asyncio.sleep(0.05)
    (entry,) = snapshot.locks[0].grants
    assert entry.grant_id == grant.id
    assert entry.tag == pin_tag(bytes.fromhex(cloud.seed.pin_key), grant.pin).hex()
    assert envelope.type is MessageType.ACCESS_SNAPSHOT


async def test_bridge_reconnects_after_a_broker_restart(cloud: Cloud) -> None:
    await asyncio.to_thread(cloud.broker.restart)
    await _eventually(lambda: cloud.bridge.stats.connects >= 2 and cloud.bridge.connected)
    async with cloud.client() as client:
        await client.publish(topics.events(cloud.seed.site, cloud.seed.gateway), _unlock(9), qos=1)
    assert [row["seq"] for row in await _audit_until(cloud, 1)] == [9]
    assert (await cloud.http.get("/healthz")).json()["mqtt"] == "connected"


def _settings(tmp_path: Path, broker: Mosquitto) -> CloudSettings:
    return CloudSettings(
        database_url=f"sqlite:///{tmp_path}/many.db",
        secret_key="s" * 40,
        metrics_token="m" * 32,
        mqtt_host=broker.host,
        mqtt_port=broker.port,
        mqtt_client_id="cloud-many",
    )


async def _retained_snapshots(broker: Mosquitto, count: int) -> dict[str, AccessSnapshotData]:
    """What a gateway connecting now would get: the retained snapshot of each topic."""
    got: dict[str, AccessSnapshotData] = {}
    client = aiomqtt.Client(broker.host, broker.port, protocol=aiomqtt.ProtocolVersion.V5)
    async with client, asyncio.timeout(20):
        await client.subscribe(topics.cloud_subscription(Channel.ACCESS, shared=False), qos=1)
        async for message in client.messages:
            if not message.retain:  # published live after our SUBSCRIBE: not what we test
                continue
            assert isinstance(message.payload, bytes)
            _envelope, snapshot = parse(message.payload)
            assert isinstance(snapshot, AccessSnapshotData)
            got[message.topic.value] = snapshot
            if len(got) == count:
                return got
    raise AssertionError("unreachable")


async def test_a_reconnect_republishes_every_gateways_snapshot(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    app = create_app(_settings(tmp_path, mosquitto), clock=ManualClock(NOW))
    async with app.router.lifespan_context(app):
        bridge: MqttBridge = app.state.bridge
        async with asyncio.timeout(10):
            await bridge.wait_connected()
        # 300 gateways appear in the database and nothing tells the bridge: only the
        # reconnect after the broker's restart publishes their snapshots
        sites = [f"site-{i:03d}" for i in range(300)]
        with app.state.sessions.begin() as session:
            for site in sites:
                lock = Lock(lock_id=f"{site}-1", name="Door", pin_key=secrets.token_hex(32))
                session.add(Facility(name=site, site=site, gateway="gw-1", locks=[lock]))
                bump_version(session, site, "gw-1", NOW)
                bump_version(session, site, "gw-1", NOW)  # version 2
        await asyncio.to_thread(mosquitto.restart)
        await _eventually(lambda: bridge.stats.connects >= 2 and bridge.connected)
        links = app.state.access_link.stats
        await _eventually(lambda: links.snapshots_published >= len(sites))
        retained = await _retained_snapshots(mosquitto, len(sites))
    for site in sites:
        snapshot = retained[topics.access(site, "gw-1")]
        assert snapshot.version == 2
        assert [lock.lock_id for lock in snapshot.locks] == [f"{site}-1"]


async def test_a_database_failure_delays_a_snapshot_but_the_bridge_keeps_going(
    tmp_path: Path, mosquitto: Mosquitto, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(_settings(tmp_path, mosquitto), clock=ManualClock(NOW))
    async with app.router.lifespan_context(app):
        bridge: MqttBridge = app.state.bridge
        async with asyncio.timeout(10):
            await bridge.wait_connected()
        with app.state.sessions.begin() as session:
            seed = seed_demo(session)
            session.execute(text("ALTER TABLE site_access_versions RENAME TO away"))
        with caplog.at_level(logging.ERROR, logger="cloud.gym.link"):
            app.state.bus.publish(AccessChanged(seed.site, seed.gateway))
            await _eventually(lambda: "could not build 1 access snapshots" in caplog.text)
        with app.state.sessions.begin() as session:
            session.execute(text("ALTER TABLE away RENAME TO site_access_versions"))
        links = app.state.access_link.stats
        await _eventually(lambda: links.snapshots_published == 1)  # tried again
        (snapshot,) = (await _retained_snapshots(mosquitto, 1)).values()
        assert bridge.connected
        assert bridge.stats.connects == 1
    assert [lock.lock_id for lock in snapshot.locks] == [seed.lock_id]


async def test_one_status_or_telemetry_message_writes_the_gateways_row_once(cloud: Cloud) -> None:
    """The fleet is the only writer of ``gateways``: a birth, a will or a heartbeat is one
    write of the gateway's row, not one per service that hears of it."""
    engine = cloud.app.state.sessions.kw["bind"]
    writes: list[str] = []

    def record(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        if re.match(r"\s*(INSERT INTO|UPDATE) gateways\b", statement):
            writes.append(statement.split(None, 2)[0])

    site, gateway = cloud.seed.site, cloud.seed.gateway
    health = cloud.app.state.fleet.services.health
    telemetry = TelemetryData(uptime_s=5, outbox_depth=0, frames_dropped=0, time_trusted=True)
    async with cloud.client() as client:
        # the first birth also creates the row; count from the second message on
        birth = make(MessageType.STATUS, StatusData(state=GatewayState.ONLINE), ts=NOW)
        await client.publish(topics.status(site, gateway), birth, qos=1)
        await _eventually(lambda: health.gateway_states().get((site, gateway)) == "online")
        event.listen(engine, "before_cursor_execute", record)
        try:
            will = make(MessageType.STATUS, StatusData(state=GatewayState.OFFLINE), ts=NOW)
            await client.publish(topics.status(site, gateway), will, qos=1)
            await _eventually(lambda: health.gateway_states().get((site, gateway)) == "offline")
            assert writes == ["UPDATE"]
            writes.clear()
            heartbeat = make(MessageType.TELEMETRY, telemetry, ts=NOW)
            await client.publish(topics.telemetry(site, gateway), heartbeat, qos=0)
            await _eventually(lambda: bool(writes))
            await asyncio.sleep(1.0)  # a second writer would have written by now
            assert writes == ["UPDATE"]
        finally:
            event.remove(engine, "before_cursor_execute", record)
