"""Attack: a second gateway enrolled at a clinic's site (its own valid certificate, its own
topics ``clinic-a/gw-2``) reports telemetry naming the clinic's display and card reader,
which report through the clinic's gateway ``gw-1``. Fleet commands and firmware rollouts
follow the gateway a device is recorded under: were the report believed, the display's
commands would go to the intruder, and its health would be the intruder's word. A
display the clinic registered but that has not reported yet is not the intruder's to
claim either. The reports are dropped, counted, and a critical ``foreign_device`` alert
opens against the sender; the devices stay the clinic gateway's."""

from __future__ import annotations

import asyncio
from typing import Any

from cloud.bootstrap import seed_clinic
from cloud.core.models import Role
from protocol import topics
from protocol.messages import (
    CardReaderTelemetry,
    DisplayTelemetry,
    MessageType,
    TelemetryData,
    make,
)
from tests.security.conftest import NOW
from tests.support.secure_broker import GATEWAYS
from tests.support.secure_cloud import World

SITE = "clinic-a"


def _telemetry(uptime_s: int, *, reachable: bool, displays: tuple[str, ...]) -> bytes:
    report = TelemetryData(
        uptime_s=uptime_s,
        outbox_depth=0,
        frames_dropped=0,
        time_trusted=True,
        displays=[DisplayTelemetry(display_id=d, reachable=reachable) for d in displays],
        card_readers=[CardReaderTelemetry(reader_id="clinic-a-reader-1", reachable=reachable)],
    )
    return make(MessageType.TELEMETRY, report, ts=NOW)


async def _reported(world: World, gateway: str, uptime_s: int) -> None:
    """Wait until ``gateway``'s report (told apart by its uptime) is stored: the devices it
    names are taken or refused in the same transaction."""
    path = f"/api/fleet/sites/{SITE}/gateways/{gateway}"
    async with asyncio.timeout(15):
        while True:
            r = await world.http.get(path, headers=world.ops())
            if r.status_code == 200 and r.json()["gateway"]["uptime_s"] == uptime_s:
                return
            await asyncio.sleep(0.05)


async def _device(world: World, device_id: str) -> dict[str, Any] | None:
    r = await world.http.get(f"/api/fleet/sites/{SITE}/devices/{device_id}", headers=world.ops())
    if r.status_code == 404:
        return None
    assert r.status_code == 200, r.text
    device: dict[str, Any] = r.json()["device"]
    return device


async def test_a_second_gateway_cannot_take_over_the_clinics_display(world: World) -> None:
    with world.app.state.sessions.begin() as session:
        seed_clinic(
            session,
            site=SITE,
            gateway="gw-1",
            displays=("clinic-a-disp-1", "clinic-a-disp-2"),
            users={"clinic-a": Role.CLINIC},
        )
    world.broker.allow([*GATEWAYS, (SITE, "gw-1"), (SITE, "gw-2")])

    own = world.broker.gateway(SITE, "gw-1")
    async with world.broker.client(own, "clinic-a-gw-1") as gw_1:
        telemetry = _telemetry(11, reachable=True, displays=("clinic-a-disp-1",))
        await gw_1.publish(topics.telemetry(SITE, "gw-1"), telemetry, qos=1)
    await _reported(world, "gw-1", 11)

    second = world.broker.gateway(SITE, "gw-2")
    async with world.broker.client(second, "clinic-a-gw-2") as gw_2:
        claims = ("clinic-a-disp-1", "clinic-a-disp-2")  # heard through gw-1; registered
        telemetry = _telemetry(22, reachable=False, displays=claims)
        await gw_2.publish(topics.telemetry(SITE, "gw-2"), telemetry, qos=1)
    await _reported(world, "gw-2", 22)

    for device_id in ("clinic-a-disp-1", "clinic-a-reader-1"):
        device = await _device(world, device_id)
        assert device is not None
        assert (device["gateway"], device["reachable"]) == ("gw-1", True), device_id
    assert await _device(world, "clinic-a-disp-2") is None  # not gw-2's to bring in

    alerts = (
        await world.http.get("/api/fleet/alerts?kind=foreign_device", headers=world.ops())
    ).json()
    assert [(x["site"], x["subject"], x["severity"]) for x in alerts] == [
        (SITE, "gw-2", "critical")
    ]
    refused = world.app.state.services.events.refused.counts
    assert refused == {"device health": 3}
