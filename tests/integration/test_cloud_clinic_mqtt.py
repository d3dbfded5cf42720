"""The clinic over a real Mosquitto: a staff call reaches the retained display and clinic
states (numbers only: no name, no card number), the agent's check-in is answered once
however often it is delivered, and an announcement comes and goes on the display."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiomqtt
import httpx
import pytest
from fastapi import FastAPI

from cloud.app import create_app
from cloud.bootstrap import ClinicSeed, seed_clinic
from cloud.clinic.publish import ClinicChanged
from cloud.core.models import Role
from cloud.mqtt_bridge import MqttBridge
from cloud.settings import CloudSettings
from protocol import topics
from protocol.clock import ManualClock
from protocol.ids import uuid7
from protocol.messages import (
    CheckinData,
    ClinicStateData,
    DisplayStateData,
    MessageType,
    make,
    parse,
)
from protocol.tracing import JsonFormatter
from tests.support.clinic import NINE, card_qr
from tests.support.cloud import basic
from tests.support.mosquitto import Mosquitto

SITE, GW = "clinic-a", "gw-1"
DISPLAYS = ("clinic-a-disp-1", "clinic-a-disp-2")


@dataclass
class Watched:
    """Every clinic and display state the broker delivered, raw and parsed."""

    raw: list[bytes] = field(default_factory=list)
    states: list[ClinicStateData] = field(default_factory=list)
    displays: list[DisplayStateData] = field(default_factory=list)

    async def until(self, check: Callable[[], bool]) -> None:
        async with asyncio.timeout(10):
            while True:
                if check():
                    return
                await asyncio.sleep(0.01)


@dataclass
class Site:
    app: FastAPI
    http: httpx.AsyncClient
    clock: ManualClock
    seed: ClinicSeed
    broker: Mosquitto
    seen: Watched
    last_request_id: str = ""

    def staff(self, name: str = "clinic") -> dict[str, str]:
        return basic(name, self.seed.users[name].api_token)

    def card(self, name: str) -> str:
        return next(p.card for p in self.seed.patients if p.name == name)

    def client(self) -> aiomqtt.Client:
        return aiomqtt.Client(
            self.broker.host, self.broker.port, protocol=aiomqtt.ProtocolVersion.V5
        )


async def _watch(broker: Mosquitto, seen: Watched, ready: asyncio.Event) -> None:
    async with aiomqtt.Client(
        broker.host, broker.port, protocol=aiomqtt.ProtocolVersion.V5
    ) as client:
        await client.subscribe(topics.clinic(SITE, GW), qos=1)
        await client.subscribe(topics.display(SITE, GW), qos=1)
        ready.set()
        async for message in client.messages:
            assert isinstance(message.payload, bytes)
            seen.raw.append(message.payload)
            _envelope, data = parse(message.payload)
            if isinstance(data, ClinicStateData):
                seen.states.append(data)
            elif isinstance(data, DisplayStateData):
                seen.displays.append(data)


@pytest.fixture
async def site(tmp_path: Path, mosquitto: Mosquitto) -> AsyncIterator[Site]:
    settings = CloudSettings(
        database_url=f"sqlite:///{tmp_path}/clinic.db",
        secret_key="s" * 40,
        metrics_token="m" * 32,
        mqtt_host=mosquitto.host,
        mqtt_port=mosquitto.port,
        mqtt_client_id="cloud-clinic-test",
    )
    clock = ManualClock(NINE)
    app = create_app(settings, clock=clock)
    async with app.router.lifespan_context(app):
        with app.state.sessions.begin() as session:
            users = {"clinic": Role.CLINIC, "ops": Role.OPS}
            seed = seed_clinic(session, displays=DISPLAYS, users=users, clock=clock)
        bridge: MqttBridge = app.state.bridge
        async with asyncio.timeout(10):
            await bridge.wait_connected()
        seen, ready = Watched(), asyncio.Event()
        watcher = asyncio.create_task(_watch(mosquitto, seen, ready))
        await ready.wait()
        app.state.bus.publish(ClinicChanged(SITE, GW))  # seeded after start-up: publish it
        await seen.until(lambda: bool(seen.states and seen.displays))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://cloud") as http:
            yield Site(app, http, clock, seed, mosquitto, seen)
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher


def _calls(state: DisplayStateData) -> dict[str, list[tuple[str, str, int]]]:
    return {d.display_id: [(c.room, c.number, c.call_seq) for c in d.rooms] for d in state.displays}


async def test_a_call_reaches_every_display_and_the_clinic_state_numbers_only(site: Site) -> None:
    for name in ("Yamada Hanako", "Sato Ken"):
        r = await site.http.post(
            "/api/clinic/checkin",
            json={"qr": card_qr(site.app.state.settings, SITE, site.card(name)), "site": SITE},
        )
        assert r.status_code == 200, r.text
    r = await site.http.post(f"/api/clinic/sites/{SITE}/rooms/1/call-next", headers=site.staff())
    assert r.json()["number"] == "A-001"
    seen = site.seen
    await seen.until(lambda: bool(_calls(seen.displays[-1])[DISPLAYS[0]]))
    display = seen.displays[-1]
    assert _calls(display) == {key: [("1", "A-001", 1)] for key in DISPLAYS}
    assert [d.next_numbers for d in display.displays] == [["A-002"], ["A-002"]]
    await seen.until(lambda: any(t.state.value == "called" for t in seen.states[-1].tickets))
    state = seen.states[-1]
    assert [(t.number, t.state.value) for t in state.tickets] == [
        ("A-001", "called"),
        ("A-002", "waiting"),
    ]
    versions = [s.version for s in seen.states]
    assert versions == sorted(set(versions))  # every publish a new, higher version
    for payload in seen.raw:  # no name, no card number, on anything the site gets
        for patient in site.seed.patients:
            assert patient.card.encode() not in payload
            assert patient.name.encode() not in payload
    # a fresh subscriber (a restarted agent) gets both documents, retained
    async with site.client() as fresh:
        await fresh.subscribe(topics.display(SITE, GW), qos=1)
        message = await anext(aiter(fresh.messages))
    assert message.retain
    assert isinstance(message.payload, bytes)
    _envelope, retained = parse(message.payload)
    assert isinstance(retained, DisplayStateData)
    assert _calls(retained)[DISPLAYS[1]] == [("1", "A-001", 1)]


async def test_a_kiosk_check_in_sent_twice_is_answered_once(site: Site) -> None:
    lines = io.StringIO()
    handler = logging.StreamHandler(lines)
    handler.setFormatter(JsonFormatter("cloud"))  # formats at emit: sees the trace id
    logging.getLogger("cloud.clinic").addHandler(handler)
    logging.getLogger("cloud.clinic").setLevel(logging.INFO)
    try:
        await _check_in_twice(site)
    finally:
        logging.getLogger("cloud.clinic").removeHandler(handler)
    # the cloud's log line for the check-in carries the agent's request id
    traced = [json.loads(line) for line in lines.getvalue().splitlines()]
    checkins = [line for line in traced if line["msg"].startswith("check-in A-001")]
    assert [line.get("trace_id") for line in checkins] == [site.last_request_id]


async def _check_in_twice(site: Site) -> None:
    request_id = uuid7(int(NINE * 1000))
    site.last_request_id = request_id
    checkin = CheckinData(card=site.card("Tanaka Yuki"), kiosk="kiosk-1", at=int(NINE))
    payload = make(MessageType.CHECKIN, checkin, ts=NINE, message_id=request_id)
    async with site.client() as agent:
        await agent.publish(topics.events(SITE, GW), payload, qos=1)
        await agent.publish(topics.events(SITE, GW), payload, qos=1)  # a redelivery
    seen = site.seen
    await seen.until(lambda: any(r.request_id == request_id for r in seen.states[-1].results))
    state = seen.states[-1]
    (result,) = state.results
    assert (result.ok, result.number, result.department) == (True, "A-001", "internal")
    assert state.applied_through == request_id
    bridge: MqttBridge = site.app.state.bridge
    await seen.until(lambda: bridge.stats.received["checkin"] == 2)
    await asyncio.sleep(0.1)  # the second delivery is committed too, and changes nothing
    queue = await site.http.get(
        f"/api/clinic/sites/{SITE}/departments/internal/queue", headers=site.staff()
    )
    assert [w["number"] for w in queue.json()["waiting"]] == ["A-001"]


async def test_an_announcement_comes_and_goes_on_the_display(site: Site) -> None:
    body = {"text": "台風のため午後は休診します", "level": "urgent", "expires_at": int(NINE + 600)}
    r = await site.http.post("/api/clinic/announcements", json=body, headers=site.staff("ops"))
    assert r.status_code == 201, r.text
    seen = site.seen

    def line() -> str:
        return seen.displays[-1].displays[0].announcement.text

    await seen.until(lambda: line() == body["text"])
    assert {d.announcement.level.value for d in seen.displays[-1].displays} == {"urgent"}
    site.clock.set(NINE + 600)
    assert (await asyncio.to_thread(site.app.state.clinic_jobs.run_due)).expired == 1
    await seen.until(lambda: line() == "")
