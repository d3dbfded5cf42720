"""The fleet simulator against a real Mosquitto: 20 gateways come online (retained birth),
take their retained snapshot and report it applied, send lock events and telemetry, leave
a last will when a connection dies, and resync after a broker restart; and a few do it
through the production broker config (mutual TLS, a certificate and an ACL user each)."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiomqtt
import pytest

from firmware_sim.fleet.fleet import Fleet, FleetSettings, FleetShape, FleetTls
from firmware_sim.fleet.model import site_name
from protocol import messages, topics
from protocol.clock import SystemClock
from protocol.messages import (
    AccessAppliedData,
    AccessSnapshotData,
    GatewayState,
    LockAccess,
    LockEventData,
    MessageType,
    StatusData,
    TelemetryData,
)
from tests.support.mosquitto import Mosquitto
from tests.support.secure_broker import running_secure_broker

GATEWAYS = 20
SHAPE = FleetShape(GATEWAYS, prefix="t", locks=2, clinic_every=10, displays=2)
NOW = 1_800_000_000.0


@dataclass
class Observer:
    """What the cloud would see: every up message, parsed."""

    statuses: dict[str, list[GatewayState]] = field(default_factory=dict)
    applied: list[tuple[str, int]] = field(default_factory=list)
    events: list[tuple[str, int]] = field(default_factory=list)
    telemetry: dict[str, TelemetryData] = field(default_factory=dict)

    def take(self, topic: str, payload: bytes) -> None:
        where = topics.parse(topic)
        _env, data = messages.parse(payload)
        if isinstance(data, StatusData):
            self.statuses.setdefault(where.site, []).append(data.state)
        elif isinstance(data, AccessAppliedData):
            self.applied.append((data.lock_id, data.version))
        elif isinstance(data, LockEventData):
            self.events.append((data.lock_id, data.seq))
        elif isinstance(data, TelemetryData):
            self.telemetry[where.site] = data


@contextlib.asynccontextmanager
async def observing(broker: Mosquitto, name: str) -> AsyncIterator[Observer]:
    """Subscribe as ``name`` to every up channel; a broker restart ends the observation."""
    seen = Observer()
    async with aiomqtt.Client(broker.host, broker.port, identifier=name) as client:
        for channel in ("status", "telemetry", "events", "access/applied"):
            await client.subscribe(f"denen/v1/+/+/{channel}", qos=1)

        async def receive() -> None:
            async for message in client.messages:
                assert isinstance(message.payload, bytes)
                seen.take(str(message.topic), message.payload)

        task = asyncio.create_task(receive())
        try:
            yield seen
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await task


async def publish_snapshots(broker: Mosquitto, version: int) -> None:
    """As the cloud does: every gateway's snapshot, retained, QoS 1."""
    async with aiomqtt.Client(broker.host, broker.port, identifier="cloud") as client:
        for i in range(1, GATEWAYS + 1):
            site = f"t-{i:05d}"
            data = AccessSnapshotData(
                version=version,
                locks=[LockAccess(lock_id=f"{site}-l1"), LockAccess(lock_id=f"{site}-l2")],
            )
            payload = messages.make(MessageType.ACCESS_SNAPSHOT, data, ts=NOW)
            await client.publish(topics.access(site, "gw-1"), payload, qos=1, retain=True)


async def eventually(what: str, predicate: Callable[[], bool], limit_s: float = 10) -> None:
    """Poll simulator and observer state, which has no event to await."""
    try:
        async with asyncio.timeout(limit_s):
            while not predicate():  # noqa: ASYNC110 - polled state has no event
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(f"{what} did not happen within {limit_s}s") from None


@pytest.fixture
async def seen(mosquitto: Mosquitto) -> AsyncIterator[Observer]:
    """An observer subscribed before the fleet starts."""
    async with observing(mosquitto, "observer") as observer:
        yield observer


@pytest.fixture
async def fleet(mosquitto: Mosquitto, seen: Observer) -> AsyncIterator[Fleet]:
    settings = FleetSettings(
        port=mosquitto.port,
        connect_rate=200,
        reconnect_window_s=1.0,
        keepalive_s=10,
        telemetry_s=2.0,
    )
    sim = Fleet(SHAPE.build(NOW, random.Random(1)), settings, SystemClock(), random.Random(1))
    task = asyncio.create_task(sim.run())
    try:
        yield sim
    finally:
        sim.stop()
        async with asyncio.timeout(10):
            await task


def holding(fleet: Fleet, version: int) -> int:
    return sum(1 for link in fleet.links if link.gateway.access_version >= version)


async def test_gateways_come_online_take_their_snapshot_and_send_events(
    mosquitto: Mosquitto, seen: Observer, fleet: Fleet
) -> None:
    await publish_snapshots(mosquitto, version=1)
    await eventually("every gateway holding v1", lambda: holding(fleet, 1) == GATEWAYS)
    await eventually("two applied reports each", lambda: len(seen.applied) == 2 * GATEWAYS)
    assert set(seen.applied) == {(f"t-{i:05d}-l{n}", 1) for i in range(1, 21) for n in (1, 2)}
    await eventually("telemetry from each", lambda: len(seen.telemetry) == GATEWAYS)
    assert [d.display_id for d in seen.telemetry["t-00010"].displays] == [
        "t-00010-d1",
        "t-00010-d2",
    ]
    assert seen.telemetry["t-00001"].displays == []

    count, _started = fleet.emit_events(3)
    await eventually("every lock event", lambda: len(seen.events) == count)
    assert len(set(seen.events)) == 3 * GATEWAYS  # each (lock_id, seq) once

    # a late subscriber (the cloud after a restart) still finds every birth, retained
    async with observing(mosquitto, "late-observer") as late:
        await eventually("every retained birth", lambda: len(late.statuses) == GATEWAYS)
        assert all(states == [GatewayState.ONLINE] for states in late.statuses.values())


async def test_a_dead_connection_leaves_the_will_and_comes_back(
    seen: Observer, fleet: Fleet
) -> None:
    link = fleet.links[0]
    await eventually("every gateway online", lambda: fleet.stats.connected == GATEWAYS)
    link.abort()  # no DISCONNECT: the broker publishes the will
    await eventually("a second session", lambda: link.sessions == 2)
    await eventually(
        "offline, then online again",
        lambda: (
            seen.statuses["t-00001"]
            == [
                GatewayState.ONLINE,
                GatewayState.OFFLINE,
                GatewayState.ONLINE,
            ]
        ),
    )


async def test_every_gateway_resyncs_after_a_broker_restart(
    mosquitto: Mosquitto, seen: Observer, fleet: Fleet
) -> None:
    await publish_snapshots(mosquitto, version=1)
    await eventually("every gateway holding v1", lambda: holding(fleet, 1) == GATEWAYS)
    # v1 reports still unacknowledged at the restart would go again, to the new observer
    await eventually("v1 applied acknowledged", lambda: fleet.stats.applied_acked == 2 * GATEWAYS)
    mosquitto.restart()  # SIGTERM: retained messages and sessions survive
    async with observing(mosquitto, "observer-after") as after:
        await publish_snapshots(mosquitto, version=2)  # while most are still away
        await eventually("every gateway holding v2", lambda: holding(fleet, 2) == GATEWAYS)
        await eventually("every gateway back", lambda: fleet.stats.connected == GATEWAYS)
        await eventually("v2 applied on every lock", lambda: len(after.applied) == 2 * GATEWAYS)
        assert {version for _lock, version in after.applied} == {2}
    assert all(link.sessions == 2 for link in fleet.links)


async def test_a_fleet_that_only_sends_telemetry_keeps_its_connections(
    mosquitto: Mosquitto,
) -> None:
    # QoS 0 telemetry brings no answer: the gateways must ping to know the broker is there
    settings = FleetSettings(port=mosquitto.port, keepalive_s=2, telemetry_s=1.0)
    sim = Fleet(FleetShape(3, prefix="k").build(NOW, random.Random(1)), settings, SystemClock())
    task = asyncio.create_task(sim.run())
    try:
        await eventually("every gateway online", lambda: sim.stats.connected == 3)
        await asyncio.sleep(3 * settings.keepalive_s)  # twice the 1.5 x keepalive silence
        assert sim.stats.telemetry_sent >= 3 * 5
        assert sim.stats.connections_lost == 0
    finally:
        sim.stop()
        async with asyncio.timeout(10):
            await task


async def test_gateways_connect_through_the_production_mutual_tls_broker(
    tmp_path: Path,
) -> None:
    sites = [site_name("tls", i) for i in range(1, 4)]
    with running_secure_broker(tmp_path, [(site, "gw-1") for site in sites]) as secure:
        for site in sites:  # ca/{site}.gw-1.crt and .key, CN {site}.gw-1: its ACL user
            secure.gateway(site, "gw-1")
        files = str(secure.ca.directory / "{site}.{gateway}")
        tls = FleetTls(secure.ca.ca_cert, f"{files}.crt", f"{files}.key")
        settings = FleetSettings(port=secure.port, reconnect_window_s=1.0, tls=tls)
        shape = FleetShape(len(sites), prefix="tls")
        sim = Fleet(shape.build(NOW, random.Random(1)), settings, SystemClock(), random.Random(1))
        async with secure.client(secure.cloud, "cloud") as cloud:
            for site in sites:  # the cloud's snapshots, retained, over its own certificate
                data = AccessSnapshotData(version=1, locks=[LockAccess(lock_id=f"{site}-l1")])
                payload = messages.make(MessageType.ACCESS_SNAPSHOT, data, ts=NOW)
                await cloud.publish(topics.access(site, "gw-1"), payload, qos=1, retain=True)
            task = asyncio.create_task(sim.run())
            try:
                await eventually("every gateway holding v1", lambda: holding(sim, 1) == 3)
                # the cloud, subscribing now, finds every gateway's retained birth
                seen = Observer()
                await cloud.subscribe("denen/v1/+/+/status", qos=1)
                async with asyncio.timeout(10):
                    async for message in cloud.messages:
                        assert isinstance(message.payload, bytes)
                        seen.take(str(message.topic), message.payload)
                        if len(seen.statuses) == len(sites):
                            break
            finally:
                sim.stop()
                async with asyncio.timeout(10):
                    await task
    assert seen.statuses == {site: [GatewayState.ONLINE] for site in sites}
    assert sim.stats.sessions == len(sites)
    assert sim.stats.connect_failures == 0
