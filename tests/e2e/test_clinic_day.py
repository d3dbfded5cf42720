"""A clinic morning, end to end, with the site's internet cut in the middle of it.

All real: the cloud (the FastAPI app with its MQTT bridge, SQLite), a Mosquitto, the
clinic's agent as ``edge.main.build_agent`` builds it (its pages over HTTP), two
call-number displays and the kiosk's card reader simulated on ptys. The agent reaches the
broker through :class:`SiteLine`, the clinic's internet line, which the test cuts: the
cloud stays connected and keeps taking app check-ins meanwhile. Time is one
:class:`ManualClock` for the cloud and the agent, on a Friday morning in Tokyo.

What a person would notice is what is asserted: the number on the kiosk, the number on the
displays, the staff page working with the internet down, and afterwards the cloud holding
every ticket once, in the state the staff left it, with the figures counting them all.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from cloud.app import create_app
from cloud.bootstrap import ClinicSeed, seed_clinic
from cloud.clinic.models import Ticket
from cloud.clinic.publish import ClinicChanged
from cloud.core.models import Role
from cloud.mqtt_bridge import MqttBridge
from cloud.settings import CloudSettings
from edge.agent import Agent
from edge.clinic.staff_access import PinHash
from edge.config import parse_config
from edge.main import build_agent
from firmware_sim.card_reader.firmware import CardReaderFirmware
from firmware_sim.card_reader.pty_host import CardReaderPtyHost
from firmware_sim.display.firmware import DisplayFirmware
from firmware_sim.display.pty_host import DisplayPtyHost
from protocol.clock import ManualClock
from protocol.patient_card import PatientCardNumber
from tests.support.clinic import NINE, card_qr
from tests.support.cloud import basic
from tests.support.displays import pair_hosted_display
from tests.support.mosquitto import Mosquitto, free_port
from tests.support.pages_tls import PagesCa
from tests.support.site_line import SiteLine

SITE, GW = "clinic-a", "gw-1"
KIOSK = "clinic-a-kiosk-1"
DISPLAYS = ("clinic-a-disp-1", "clinic-a-disp-2")
# walk-ins of the morning, imported like a hospital system would (none has an appointment)
WALK_INS = [PatientCardNumber.issue(5, 100 + i) for i in range(8)]
STAFF_PIN = "805127"  # the agent's staff page (its hash is in the site config)


@dataclass
class Morning:
    clock: ManualClock
    cloud: httpx.AsyncClient
    app: FastAPI
    seed: ClinicSeed
    agent: Agent
    pages: httpx.AsyncClient
    reader: CardReaderPtyHost
    displays: dict[str, DisplayPtyHost]
    line: SiteLine
    state_dir: Path

    def staff(self) -> dict[str, str]:
        return basic("clinic", self.seed.users["clinic"].api_token)

    def card(self, name: str) -> PatientCardNumber:
        return PatientCardNumber(next(p.card for p in self.seed.patients if p.name == name))

    def room_calls(self, room: str = "1") -> set[str]:
        """What room ``room`` shows on each display (numbers only)."""
        return {
            next((r.number for r in host.firmware.view().rooms if r.room == room), "")
            for host in self.displays.values()
        }


async def within(what: str, aw: Awaitable[Any], limit_s: float = 15) -> Any:
    try:
        return await asyncio.wait_for(aw, limit_s)
    except TimeoutError:
        raise AssertionError(f"{what} did not happen within {limit_s}s") from None


async def until(what: str, check: Callable[[], Awaitable[Any]], limit_s: float = 15) -> Any:
    async def poll() -> Any:
        while not (value := await check()):  # noqa: ASYNC110 - polled views have no event
            await asyncio.sleep(0.02)
        return value

    return await within(what, poll(), limit_s)


def _agent_config(
    tmp_path: Path,
    line: SiteLine,
    displays: dict[str, DisplayPtyHost],
    reader_link: Path,
    page_port: int,
    tls: PagesCa,
) -> Any:
    return parse_config(
        {
            "site": SITE,
            "gateway": GW,
            "state_dir": str(tmp_path / "agent"),
            "mqtt": {
                "host": "127.0.0.1",
                "port": line.port,
                "reconnect_base_s": 0.05,
                "reconnect_cap_s": 0.3,
                "timeout_s": 1.0,
            },
            "displays": [{"id": d, "transport": f"pty:{h.path}"} for d, h in displays.items()],
            "display_link": {"reconnect_base_s": 0.05, "reconnect_cap_s": 0.3},
            "card_readers": [
                {"id": KIOSK, "transport": f"pty:{reader_link}", "walk_in_department": "internal"}
            ],
            "clinic": {
                "host": "127.0.0.1",
                "port": page_port,
                "reply_timeout_s": 5.0,
                "housekeeping_s": 0.05,
                "staff": {"reception": str(PinHash.make(STAFF_PIN))},
                "tls_cert": str(tls.cert),
                "tls_key": str(tls.key),
            },
            "metrics": {"host": "127.0.0.1", "port": 0},
        }
    )


@contextlib.asynccontextmanager
async def morning(tmp_path: Path, broker: Mosquitto) -> AsyncIterator[Morning]:
    clock = ManualClock(NINE)
    settings = CloudSettings(
        database_url=f"sqlite:///{tmp_path}/cloud.db",
        secret_key="s" * 40,
        metrics_token="m" * 32,
        mqtt_host=broker.host,
        mqtt_port=broker.port,
        mqtt_client_id="cloud-e2e-clinic",
    )
    app = create_app(settings, clock=clock)
    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(app.router.lifespan_context(app))
        with app.state.sessions.begin() as session:
            users = {"clinic": Role.CLINIC, "ops": Role.OPS}
            seed = seed_clinic(session, displays=DISPLAYS, users=users, clock=clock)
        cloud = await stack.enter_async_context(
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://cloud")
        )
        integration = basic("ops", seed.users["ops"].api_token)  # the hospital system's account
        imported = await cloud.post(
            "/api/clinic/patients",
            json={
                "patients": [
                    {"card": c.digits, "name": f"Walk-in {i}", "email": f"w{i}@example.jp"}
                    for i, c in enumerate(WALK_INS)
                ]
            },
            headers=integration,
        )
        assert imported.status_code == 200, imported.text
        bridge: MqttBridge = app.state.bridge
        await within("the cloud connects", bridge.wait_connected())
        app.state.bus.publish(ClinicChanged(SITE, GW))  # seeded after start-up: publish the day
        line = await stack.enter_async_context(SiteLine(broker.host, broker.port))
        displays = {}
        for display_id in DISPLAYS:
            host = DisplayPtyHost(display_id, DisplayFirmware(clock), tick_s=0.05)
            displays[display_id] = await stack.enter_async_context(host)
            await pair_hosted_display(host, tmp_path / "agent", clock)
        reader_link = tmp_path / "kiosk-1"
        reader = await stack.enter_async_context(
            CardReaderPtyHost(KIOSK, CardReaderFirmware(clock), link=reader_link)
        )
        page_port = free_port()
        tls = PagesCa.make(tmp_path / "tls")
        config = _agent_config(tmp_path, line, displays, reader_link, page_port, tls)
        agent = await stack.enter_async_context(build_agent(config, clock))
        task = asyncio.create_task(agent.run(), name="clinic-agent")
        try:
            pages = await stack.enter_async_context(
                httpx.AsyncClient(base_url=f"https://127.0.0.1:{page_port}", verify=tls.trust())
            )
            assert agent.pages is not None
            await within("the agent's pages listen", agent.pages.listening.wait())
            # reception logs in to the agent's staff page with the PIN (no cloud needed)
            login = await pages.post("/staff/login", data={"name": "reception", "pin": STAFF_PIN})
            assert login.status_code == 303, login.text
            yield Morning(
                clock, cloud, app, seed, agent, pages, reader, displays, line, tmp_path / "agent"
            )
        finally:
            agent.stop()
            await within("the agent stops", task)


async def desk_status(m: Morning) -> dict[str, Any]:
    return dict((await m.pages.get("/api/status")).json())


async def tap(m: Morning, card: PatientCardNumber) -> dict[str, Any]:
    """A card at the kiosk; the kiosk's screen once it has settled on an answer."""
    m.clock.advance(20)
    tapped_at = m.clock.now()
    m.reader.tap(card.digits)

    async def settled() -> dict[str, Any] | None:
        screen = dict((await m.pages.get(f"/api/kiosks/{KIOSK}")).json())
        if screen["at"] >= tapped_at and screen["kind"] not in ("checking", "ready"):
            return screen
        return None

    return dict(await until("the kiosk shows the check-in", settled))


async def local_action(m: Morning, action: str, number: str | None = None) -> dict[str, Any]:
    """A button on the agent's staff page (its JSON twin)."""
    m.clock.advance(30)
    body = {"action": action, "department": "internal", "number": number, "room": "1"}
    answer = await m.pages.post("/api/actions", json=body)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def cloud_tickets(m: Morning) -> dict[str, Ticket]:
    with m.app.state.sessions() as session:
        rows = session.scalars(select(Ticket).where(Ticket.site == SITE)).all()
        session.expunge_all()
    return {t.number: t for t in rows}


async def test_a_busy_morning_with_the_internet_cut_loses_and_duplicates_nothing(
    tmp_path: Path, mosquitto: Mosquitto, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with morning(tmp_path, mosquitto) as m:
        await until("the agent runs on the cloud's day", lambda: _online(m))

        # --- online: the kiosk answers with the cloud's numbers, the displays follow
        booked = await tap(m, m.card("Yamada Hanako"))  # her appointment is in 20 minutes
        assert (booked["kind"], booked["number"]) == ("ticket", "A-001")
        first = await tap(m, WALK_INS[0])
        assert first["number"] == "A-002"
        assert first["estimated_wait_s"] is not None
        app = await m.cloud.post(
            "/api/clinic/checkin",
            json={"qr": card_qr(m.app.state.settings, SITE, WALK_INS[1].digits), "site": SITE},
        )
        assert app.json()["number"] == "A-003"
        m.clock.advance(60)
        called = await m.cloud.post(
            f"/api/clinic/sites/{SITE}/rooms/1/call-next", headers=m.staff()
        )
        assert called.json()["number"] == "A-001"  # the appointment goes first
        await until("A-001 on both displays", lambda: _shows(m, "A-001"))

        # --- the internet goes down mid-morning
        m.line.cut()
        await until("the agent takes over", lambda: _running(m, "agent"))
        offline = [await tap(m, card) for card in WALK_INS[2:5]]
        assert [s["number"] for s in offline] == ["A-700", "A-701", "A-702"]
        again = await tap(m, WALK_INS[2])  # the same card twice: the same ticket
        assert again["number"] == "A-700"
        # the staff page keeps working: A-001 is seen, the room calls the next one
        await local_action(m, "start", "A-001")
        await local_action(m, "done", "A-001")
        next_call = await local_action(m, "call_next")
        assert next_call["ok"], next_call
        locally_called = "A-002"  # the first walk-in waited longest
        await until(f"{locally_called} on both displays", lambda: _shows(m, locally_called))
        # the cloud, unaware, keeps taking app check-ins: cloud numbers, never 700+
        during = await m.cloud.post(
            "/api/clinic/checkin",
            json={"qr": card_qr(m.app.state.settings, SITE, WALK_INS[5].digits), "site": SITE},
        )
        assert during.json()["number"] == "A-004"

        # --- the line comes back: everything reconciles
        m.line.restore()
        await until("the cloud runs the queues again", lambda: _running(m, "cloud"), 30)
        status = await desk_status(m)
        assert status["events_waiting"] == 0

        tickets = cloud_tickets(m)
        assert sorted(tickets) == [
            "A-001", "A-002", "A-003", "A-004", "A-700", "A-701", "A-702"
        ]  # fmt: skip
        holders = [t.patient_id for t in tickets.values()]
        assert len(set(holders)) == len(holders) == 7  # one ticket per patient, no gaps
        assert tickets["A-001"].state.value == "done"
        assert (tickets["A-002"].state.value, tickets["A-002"].room) == ("called", "1")
        offline_times = [tickets[n].queued_at for n in ("A-700", "A-701", "A-702")]
        assert offline_times == sorted(offline_times)  # as the kiosk took them, not on arrival
        assert all(m.clock.now() - 600 < t < m.clock.now() for t in offline_times)

        # the displays now follow the cloud, which agrees with what the staff did offline
        await until("the cloud's display state", lambda: _shows(m, locally_called))
        for host in m.displays.values():
            upcoming = host.firmware.view().next_numbers
            assert "A-004" in upcoming  # a cloud number issued during the outage
            assert "A-700" in upcoming  # and one the agent issued

        # the figures count the offline check-ins
        figures = await m.cloud.get(f"/api/clinic/sites/{SITE}/figures", headers=m.staff())
        assert figures.status_code == 200, figures.text
        assert figures.json()["checkins"] == 7

        # privacy: no card number in the logs, nor at rest on the agent once delivered
        everything = caplog.text
        cards = [m.card(p.name) for p in m.seed.patients] + WALK_INS
        for card in cards:
            assert card.digits not in everything
            for path in m.state_dir.rglob("*"):
                if path.is_file():
                    assert card.digits.encode() not in path.read_bytes(), path


async def _online(m: Morning) -> bool:
    status = await desk_status(m)
    return bool(status["connected"] and status["has_day"] and status["running"] == "cloud")


async def _running(m: Morning, who: str) -> bool:
    return bool((await desk_status(m))["running"] == who)


async def _shows(m: Morning, number: str) -> bool:
    return m.room_calls("1") == {number}
