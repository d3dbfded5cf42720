"""The MQTT bridge against a real Mosquitto, for offline PINs and sync status: the
gateway's last will makes the next approval an offline PIN; ``access/applied`` and
telemetry show on the manager's API; an offline code's unlock reaches the audit log
attributed to its booking; a cancelled offline PIN is in the retained snapshot."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiomqtt
import httpx
import pytest
from sqlalchemy.orm import Session, sessionmaker

from cloud.app import create_app
from cloud.bootstrap import DemoSeed, seed_demo
from cloud.settings import CloudSettings
from protocol import topics
from protocol.clock import ManualClock
from protocol.messages import (
    AccessAppliedData,
    AccessSnapshotData,
    GatewayState,
    LockEventData,
    LockEventKind,
    LockTelemetry,
    MessageType,
    StatusData,
    SyncReason,
    TelemetryData,
    make,
    parse,
)
from protocol.offline_pin import OfflinePinStatus, verify_offline_pin
from tests.support.cloud import basic
from tests.support.confirm_mail import confirm_by_mail
from tests.support.mosquitto import Mosquitto

NOW = 1_799_971_200  # 2027-01-15 09:00 Asia/Tokyo
SECRET = bytes.fromhex("5e" * 32)
SITE, GW, LOCK = "gym-a", "gw-1", "gym-a-1"


@dataclass
class Cloud:
    http: httpx.AsyncClient
    seed: DemoSeed
    broker: Mosquitto
    sessions: sessionmaker[Session]

    def staff(self) -> dict[str, str]:
        return basic("manager", self.seed.manager.password)

    def client(self) -> aiomqtt.Client:
        return aiomqtt.Client(
            self.broker.host, self.broker.port, protocol=aiomqtt.ProtocolVersion.V5
        )

    async def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        async with self.client() as gateway:
            await gateway.publish(topic, payload, qos=1, retain=retain)

    async def get(self, path: str, **params: Any) -> Any:
        r = await self.http.get(path, headers=self.staff(), params=params)
        assert r.status_code == 200, r.text
        return r.json()


@pytest.fixture
async def cloud(tmp_path: Path, mosquitto: Mosquitto) -> AsyncIterator[Cloud]:
    settings = CloudSettings(
        database_url=f"sqlite:///{tmp_path}/sync.db",
        secret_key="s" * 40,
        metrics_token="m" * 32,
        mqtt_host=mosquitto.host,
        mqtt_port=mosquitto.port,
        mqtt_client_id="cloud-sync-test",
    )
    app = create_app(settings, clock=ManualClock(NOW))
    async with app.router.lifespan_context(app):
        with app.state.sessions.begin() as session:
            seed = seed_demo(session, offline_secret=SECRET.hex())
        async with asyncio.timeout(10):
            await app.state.bridge.wait_connected()
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://cloud") as http:
            yield Cloud(http, seed, mosquitto, app.state.sessions)


async def _eventually(what: str, check: Callable[[], Any]) -> Any:
    async with asyncio.timeout(15):
        while True:
            found = await check()
            if found:
                return found
            await asyncio.sleep(0.05)
    raise AssertionError(what)  # pragma: no cover - the timeout raises first


async def _book_and_approve(cloud: Cloud, name: str, start: int, end: int) -> dict[str, Any]:
    body = {"lock_id": LOCK, "name": name, "email": f"{name}@x.jp", "start": start, "end": end}
    created = (await cloud.http.post("/api/reservations", json=body)).json()
    await confirm_by_mail(cloud.http, cloud.sessions, body["email"], created["id"])
    approved = await cloud.http.post(
        f"/api/reservations/{created['id']}/approve", headers=cloud.staff()
    )
    assert approved.status_code == 200, approved.text
    status = await cloud.http.get(
        f"/api/reservations/{created['id']}", params={"token": created["access_token"]}
    )
    out: dict[str, Any] = status.json()
    return out


async def test_gateway_offline_gives_an_offline_pin_its_unlock_is_attributed(
    cloud: Cloud,
) -> None:
    status = make(MessageType.STATUS, StatusData(state=GatewayState.OFFLINE), ts=NOW)
    await cloud.publish(topics.status(SITE, GW), status, retain=True)

    async def gateway_offline() -> bool:
        rows = await cloud.get(f"/api/locks/{LOCK}/sync")
        return bool(rows["gateway_state"] == "offline")

    await _eventually("the will stored", gateway_offline)
    booking = await _book_and_approve(cloud, "suzuki", NOW + 9 * 3600, NOW + 10 * 3600)
    assert booking["offline_pin"] is True
    check = verify_offline_pin(SECRET, booking["pin"], NOW + 9 * 3600 + 60)
    assert check.status is OfflinePinStatus.VALID
    assert check.id is not None

    # the lock reports the unlock with the code's short id; the agent forwards it later
    event = LockEventData(
        lock_id=LOCK,
        seq=1,
        lock_ts=NOW + 9 * 3600 + 60,
        kind=LockEventKind.UNLOCKED,
        value=check.id.short_id,
    )
    await cloud.publish(
        topics.events(SITE, GW), make(MessageType.LOCK_EVENT, event, ts=event.lock_ts)
    )

    async def audited() -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = await cloud.get(f"/api/locks/{LOCK}/audit")
        return rows

    (row,) = await _eventually("the unlock audited", audited)
    assert (row["who"], row["offline"], row["slot"]) == ("suzuki", True, None)

    # cancelled: the retained snapshot carries the code on the lock's revocation list
    cancel = await cloud.http.post(
        f"/api/reservations/{booking['id']}/cancel",
        json={"reason": "drill"},
        headers=cloud.staff(),
    )
    assert cancel.status_code == 200, cancel.text

    async def revoked() -> AccessSnapshotData | None:
        async with cloud.client() as fresh:
            await fresh.subscribe(topics.access(SITE, GW), qos=1)
            message = await anext(aiter(fresh.messages))
        assert isinstance(message.payload, bytes)
        _, snapshot = parse(message.payload)
        assert isinstance(snapshot, AccessSnapshotData)
        return snapshot if snapshot.locks[0].revoked_offline else None

    snapshot = await _eventually("the revocation published", revoked)
    (entry,) = snapshot.locks[0].revoked_offline
    assert entry.pin_id() == check.id


async def test_applied_and_telemetry_show_as_sync_status(cloud: Cloud) -> None:
    online = make(MessageType.STATUS, StatusData(state=GatewayState.ONLINE), ts=NOW)
    await cloud.publish(topics.status(SITE, GW), online, retain=True)

    async def gateway_online() -> bool:
        return bool((await cloud.get(f"/api/locks/{LOCK}/sync"))["gateway_state"] == "online")

    await _eventually("the birth stored", gateway_online)
    booking = await _book_and_approve(cloud, "sato", NOW + 3600, NOW + 7200)
    assert booking["offline_pin"] is False
    reservations = await cloud.get("/api/reservations", status="approved")
    (listed,) = reservations
    (access,) = listed["access"]
    assert access["state"] == "waiting_sync"

    grant_id = await _grant_id(cloud, booking["id"])
    applied = AccessAppliedData(
        lock_id=LOCK,
        version=2,
        grant_ids=[grant_id],
        loaded_at={grant_id: NOW + 120},
        clock_offset_s=4.0,
        clock_set=True,
        reason=SyncReason.CHANGE,
        revocations=0,
    )
    telemetry = TelemetryData(
        uptime_s=1,
        outbox_depth=0,
        frames_dropped=0,
        time_trusted=True,
        locks=[
            LockTelemetry(
                lock_id=LOCK,
                reachable=True,
                last_sync_at=NOW + 120,
                next_sync_at=NOW + 11 * 3600,
                clock_drift_s=4.0,
            )
        ],
    )
    await cloud.publish(
        topics.access_applied(SITE, GW), make(MessageType.ACCESS_APPLIED, applied, ts=NOW)
    )
    async with cloud.client() as gateway:  # telemetry travels at QoS 0
        await gateway.publish(
            topics.telemetry(SITE, GW), make(MessageType.TELEMETRY, telemetry, ts=NOW), qos=0
        )

    async def synced() -> dict[str, Any] | None:
        sync: dict[str, Any] = await cloud.get(f"/api/locks/{LOCK}/sync")
        return sync if sync["applied_version"] == 2 and sync["next_sync_at"] else None

    sync = await _eventually("applied and telemetry stored", synced)
    assert sync["grant_ids"] == [grant_id]
    assert sync["loaded_reason"] == "change"
    assert sync["clock_drift_s"] == 4.0
    assert sync["next_sync_local"] == "2027-01-15 20:00"
    assert sync["last_sync_local"] == "2027-01-15 09:02"
    (listed,) = await cloud.get("/api/reservations", status="approved")
    assert listed["access"][0]["text"] == "PIN on lock since 09:02"


async def _grant_id(cloud: Cloud, reservation_id: str) -> str:
    # the staff API never shows the grant; the snapshot names it
    async with cloud.client() as fresh:
        await fresh.subscribe(topics.access(SITE, GW), qos=1)
        async with asyncio.timeout(10):
            async for message in fresh.messages:
                assert isinstance(message.payload, bytes)
                _, snapshot = parse(message.payload)
                assert isinstance(snapshot, AccessSnapshotData)
                if snapshot.locks[0].grants:
                    return snapshot.locks[0].grants[0].grant_id
    raise AssertionError(f"no grant for {reservation_id} in the snapshot")
