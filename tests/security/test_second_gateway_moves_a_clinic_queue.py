"""Attack: a second gateway enrolled at a clinic's site (its own valid certificate, its own
topics ``clinic-a/gw-2``: the production broker config lets it publish there) sends
check-ins and staff actions for the clinic, whose queue is its gateway ``gw-1``'s. The
broker cannot tell: the topic's site is right. The cloud must: the events are dropped,
counted, and a critical ``foreign_device`` alert opens against the sender, while the
clinic's own gateway's check-in lands as the first ticket."""

from __future__ import annotations

import asyncio

from cloud.bootstrap import seed_clinic
from cloud.core.models import Role
from protocol import topics
from protocol.messages import (
    CheckinData,
    ClinicAction,
    ClinicActionData,
    MessageType,
    make,
)
from tests.security.conftest import NOW
from tests.support.cloud import basic
from tests.support.secure_broker import GATEWAYS
from tests.support.secure_cloud import World

SITE = "clinic-a"


def _walk_in(at: int) -> bytes:
    checkin = CheckinData(card=None, kiosk="desk", at=at, department="internal")
    return make(MessageType.CHECKIN, checkin, ts=at)


async def test_a_second_gateway_of_the_site_cannot_touch_the_clinics_queue(
    world: World,
) -> None:
    with world.app.state.sessions.begin() as session:
        clinic = seed_clinic(session, site=SITE, gateway="gw-1", users={"clinic-a": Role.CLINIC})
    world.broker.allow([*GATEWAYS, (SITE, "gw-1"), (SITE, "gw-2")])
    staff = basic("clinic-a", clinic.users["clinic-a"].api_token)
    refused = world.app.state.services.events.refused.counts

    second = world.broker.gateway(SITE, "gw-2")
    async with world.broker.client(second, "clinic-a-gw-2") as gw_2:
        await gw_2.publish(topics.events(SITE, "gw-2"), _walk_in(NOW), qos=1)
        call = ClinicActionData(
            action=ClinicAction.CALL_NEXT, department="internal", room="1", at=NOW
        )
        await gw_2.publish(
            topics.events(SITE, "gw-2"), make(MessageType.CLINIC_ACTION, call, ts=NOW), qos=1
        )

    async def waiting() -> list[str]:
        r = await world.http.get(
            f"/api/clinic/sites/{SITE}/departments/internal/queue", headers=staff
        )
        assert r.status_code == 200, r.text
        return [w["number"] for w in r.json()["waiting"]]

    own = world.broker.gateway(SITE, "gw-1")
    async with world.broker.client(own, "clinic-a-gw-1") as gw_1:
        await gw_1.publish(topics.events(SITE, "gw-1"), _walk_in(NOW + 60), qos=1)
    async with asyncio.timeout(15):  # gw-2's events came first: they are behind us then
        while not (numbers := await waiting()):  # noqa: ASYNC110 - polled: nothing tells
            await asyncio.sleep(0.05)
    assert numbers == ["A-001"]  # the clinic's own first ticket: gw-2 took no number
    actions = await world.http.get(f"/api/clinic/sites/{SITE}/actions", headers=staff)
    assert actions.json() == []  # nor called anyone

    alerts = (
        await world.http.get("/api/fleet/alerts?kind=foreign_device", headers=world.ops())
    ).json()
    assert [(x["site"], x["subject"], x["severity"]) for x in alerts] == [
        (SITE, "gw-2", "critical")
    ]
    assert refused == {"clinic events": 2}
