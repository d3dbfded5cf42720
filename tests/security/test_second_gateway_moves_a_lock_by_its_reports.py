"""Attack: a second gateway enrolled at a gym's site (its own valid certificate, its own
topics ``gym-a/gw-2``) announces the gym's lock in its birth and sends a lockout for it.
Fleet commands and firmware rollouts follow the gateway a device is recorded under, and
the lock's alerts are what on-call acts on: were the reports believed, the lock would
move to the intruder and its alerts be the intruder's word. The lock stays its
facility's gateway's; the reports are dropped, counted, and a critical
``foreign_device`` alert opens against the sender."""

from __future__ import annotations

import asyncio
from typing import Any

from protocol import topics
from protocol.messages import (
    GatewayState,
    LockEventData,
    LockEventKind,
    MessageType,
    StatusData,
    make,
)
from tests.security.conftest import NOW
from tests.support.secure_broker import GATEWAYS
from tests.support.secure_cloud import World

LOCK = "gym-a-1"


def _birth() -> bytes:
    return make(MessageType.STATUS, StatusData(state=GatewayState.ONLINE, locks=[LOCK]), ts=NOW)


async def _lock(world: World) -> dict[str, Any] | None:
    r = await world.http.get(f"/api/fleet/sites/gym-a/devices/{LOCK}", headers=world.ops())
    if r.status_code == 404:
        return None
    assert r.status_code == 200, r.text
    device: dict[str, Any] = r.json()["device"]
    return device


async def _alerts(world: World, kind: str) -> list[dict[str, Any]]:
    r = await world.http.get(f"/api/fleet/alerts?kind={kind}", headers=world.ops())
    assert r.status_code == 200, r.text
    alerts: list[dict[str, Any]] = r.json()
    return alerts


async def test_a_second_gateway_cannot_take_the_gyms_lock(world: World) -> None:
    world.broker.allow([*GATEWAYS, ("gym-a", "gw-2")])
    own = world.broker.gateway("gym-a", "gw-1")
    async with world.broker.client(own, "gym-a-gw-1") as gw_1:
        await gw_1.publish(topics.status("gym-a", "gw-1"), _birth(), qos=1)
    async with asyncio.timeout(15):
        while (await _lock(world)) is None:  # noqa: ASYNC110 - polled: nothing tells
            await asyncio.sleep(0.05)

    second = world.broker.gateway("gym-a", "gw-2")
    lockout = LockEventData(
        lock_id=LOCK, boot=1, seq=1, lock_ts=NOW, kind=LockEventKind.LOCKOUT_STARTED
    )
    async with world.broker.client(second, "gym-a-gw-2") as gw_2:
        await gw_2.publish(topics.status("gym-a", "gw-2"), _birth(), qos=1)
        await gw_2.publish(
            topics.events("gym-a", "gw-2"), make(MessageType.LOCK_EVENT, lockout, ts=NOW), qos=1
        )
    refused = world.app.state.services.events.refused.counts

    async def taken() -> bool:
        """gw-2's birth and event are stored, believed (the old way) or refused."""
        gw = await world.http.get("/api/fleet/sites/gym-a/gateways/gw-2", headers=world.ops())
        event = "lock health" in refused or bool(await _alerts(world, "lockout"))
        return gw.status_code == 200 and event

    async with asyncio.timeout(15):
        while not await taken():  # noqa: ASYNC110 - polled: nothing tells
            await asyncio.sleep(0.05)

    lock = await _lock(world)
    assert lock is not None
    assert lock["gateway"] == "gw-1"  # its commands still go to the gym's gateway
    assert await _alerts(world, "lockout") == []
    foreign = await _alerts(world, "foreign_device")
    assert [(x["site"], x["subject"], x["severity"]) for x in foreign] == [
        ("gym-a", "gw-2", "critical")
    ]
    assert refused["gateway statuses"] == 1
    assert refused["lock health"] == 1
