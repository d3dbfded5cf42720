"""Attack: a gateway of gym B, with its own valid certificate, publishing on its own
topics (the production broker config lets it) things about gym A's lock: unlock events
that would pre-claim A's event numbers and write into A's audit log, an applied version
and telemetry that would fake A's sync status. The broker cannot see inside a payload;
the cloud must: the messages are dropped, counted, and a critical ``foreign_device``
alert opens against the sender, while gym A's own events with the same numbers land."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from cloud.app import create_app
from cloud.bootstrap import DemoSeed, seed_demo
from cloud.core.models import Role
from protocol import topics
from protocol.clock import ManualClock
from protocol.messages import (
    AccessAppliedData,
    LockEventData,
    LockEventKind,
    LockTelemetry,
    MessageType,
    TelemetryData,
    make,
)
from tests.security.conftest import NOW, settings_for
from tests.support.cloud import basic
from tests.support.secure_broker import SecureBroker, running_secure_broker

BOOT = 0x5EED


@dataclass
class World:
    app: FastAPI
    http: httpx.AsyncClient
    seed: DemoSeed
    broker: SecureBroker

    def ops(self) -> dict[str, str]:
        return basic("ops", self.seed.users["ops"].api_token)


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    with running_secure_broker(tmp_path / "secure") as broker:  # gym-a and gym-b allowed
        settings = settings_for(
            tmp_path,
            mqtt_enabled=True,
            mqtt_host="localhost",
            mqtt_port=broker.port,
            mqtt_tls_ca=broker.ca.ca_cert,
            mqtt_tls_cert=broker.ca.cloud_cert,
            mqtt_tls_key=broker.ca.cloud_key,
            mqtt_client_id="cloud",
        )
        app = create_app(settings, clock=ManualClock(NOW))
        async with app.router.lifespan_context(app):
            with app.state.sessions.begin() as session:
                seed = seed_demo(session)  # gym-a, its gateway gw-1, its lock gym-a-1
                seed_demo(
                    session,
                    site="gym-b",
                    lock_id="gym-b-1",
                    facility_name="Gym B",
                    users={"fm-b": Role.MANAGER},
                )
            async with asyncio.timeout(10):
                await app.state.bridge.wait_connected()
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://cloud") as http:
                yield World(app, http, seed, broker)


def _unlock(seq: int) -> bytes:
    data = LockEventData(
        lock_id="gym-a-1", boot=BOOT, seq=seq, lock_ts=NOW + seq, kind=LockEventKind.UNLOCKED
    )
    return make(MessageType.LOCK_EVENT, data, ts=NOW)


async def _until(what: str, check: Callable[[], object]) -> None:
    async with asyncio.timeout(15):
        while not check():  # noqa: ASYNC110 - polled: the cloud says nothing when done
            await asyncio.sleep(0.05)
    assert check(), what


async def test_a_gateway_cannot_write_into_another_sites_audit_or_sync_status(
    world: World,
) -> None:
    b = world.broker.gateway("gym-b", "gw-1")
    a = world.broker.gateway("gym-a", "gw-1")
    bridge = world.app.state.bridge
    async with world.broker.client(b, "gym-b-gw-1") as gw_b:
        for seq in (1, 2, 3):  # gym-a's next numbers, claimed first
            await gw_b.publish(topics.events("gym-b", "gw-1"), _unlock(seq), qos=1)
        applied = AccessAppliedData(lock_id="gym-a-1", version=999, grant_ids=["forged"])
        await gw_b.publish(
            topics.access_applied("gym-b", "gw-1"),
            make(MessageType.ACCESS_APPLIED, applied, ts=NOW),
            qos=1,
        )
        report = TelemetryData(
            uptime_s=1,
            outbox_depth=0,
            frames_dropped=0,
            time_trusted=True,
            locks=[LockTelemetry(lock_id="gym-a-1", reachable=False)],
        )
        await gw_b.publish(
            topics.telemetry("gym-b", "gw-1"),
            make(MessageType.TELEMETRY, report, ts=NOW),
            qos=1,
        )
    await _until("gym-b's messages taken", lambda: bridge.stats.received["lock_event"] >= 3)
    async with world.broker.client(a, "gym-a-gw-1") as gw_a:  # the real lock's events
        for seq in (1, 2):
            await gw_a.publish(topics.events("gym-a", "gw-1"), _unlock(seq), qos=1)
    await _until("gym-a's events taken", lambda: bridge.stats.received["lock_event"] >= 5)

    staff = basic("manager", world.seed.manager.password)
    audit = (await world.http.get("/api/locks/gym-a-1/audit", headers=staff)).json()
    assert [(row["boot"], row["seq"]) for row in audit] == [(BOOT, 2), (BOOT, 1)]

    async def sync() -> dict[str, object]:
        r = await world.http.get("/api/locks/gym-a-1/sync", headers=staff)
        body: dict[str, object] = r.json()
        return body

    await asyncio.sleep(1.0)  # telemetry is stored on its own path, a moment later
    state = await sync()
    assert state["applied_version"] != 999
    assert "forged" not in state["grant_ids"]  # type: ignore[operator]
    assert state.get("reachable") is not False

    alerts = (
        await world.http.get("/api/fleet/alerts?kind=foreign_device", headers=world.ops())
    ).json()
    assert [(x["site"], x["subject"], x["severity"]) for x in alerts] == [
        ("gym-b", "gw-1", "critical")
    ]
    refused = world.app.state.services.events.refused.counts
    assert refused["lock events"] == 3
    assert refused["lock reports"] == 2  # the applied version and the telemetry
