"""The agent's clinic side, all real: Mosquitto, the card reader and the display simulators
on ptys, the agent as ``edge.main.build_agent`` builds it, its pages over HTTP, and a small
stand-in for the cloud (:class:`ClinicCloud`) on the other end of the broker. Time is a
:class:`ManualClock` set to a Tuesday morning in Tokyo."""

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

from edge.agent import Agent
from edge.clinic.staff_access import PinHash
from edge.config import SiteConfig, parse_config
from edge.main import build_agent
from firmware_sim.card_reader.firmware import CardReaderFirmware
from firmware_sim.card_reader.pty_host import CardReaderPtyHost
from firmware_sim.display.pty_host import DisplayPtyHost
from protocol.clock import ManualClock
from protocol.messages import (
    CheckinData,
    ClinicActionData,
    ClinicDepartment,
    ClinicDisplay,
)
from protocol.patient_card import PatientCardNumber
from tests.integration.test_display_pty_support import hosted_display
from tests.integration.test_edge_agent import eventually, within
from tests.support.clinic_cloud import Appointment, ClinicCloud
from tests.support.displays import pair_hosted_display
from tests.support.mosquitto import Mosquitto, free_port
from tests.support.site_line import SiteLine

SITE, GW = "clinic-a", "gw-1"
KIOSK, DISPLAY = "clinic-a-kiosk-1", "clinic-a-disp-1"
T0 = 1_799_971_200  # 2027-01-15 09:00 Asia/Tokyo
CARD_KEY = bytes.fromhex("ab" * 32)
WALK_IN = PatientCardNumber.issue(1, 1)
BOOKED = PatientCardNumber.issue(2, 42)  # orthopaedics at 09:20
OTHER = PatientCardNumber.issue(3, 7)
THIRD = PatientCardNumber.issue(1, 99)
CARDS = (WALK_IN, BOOKED, OTHER, THIRD)
STAFF_PIN = "472105"
STAFF_PIN_HASH = str(PinHash.make(STAFF_PIN))
DEPARTMENTS = [
    ClinicDepartment(id="internal", name="Internal medicine", prefix="A", rooms=["1", "2"]),
    ClinicDepartment(id="ortho", name="Orthopaedics", prefix="B", rooms=["3"]),
]


@dataclass
class Clinic:
    clock: ManualClock
    broker: Mosquitto
    cloud: ClinicCloud
    display: DisplayPtyHost
    reader: CardReaderPtyHost
    reader_link: Path
    config: SiteConfig
    http: httpx.AsyncClient


def site_config(
    tmp_path: Path,
    broker_port: int,
    display_path: str,
    reader_link: Path,
    page_port: int,
    reply_timeout_s: float = 2.0,
) -> SiteConfig:
    return parse_config(
        {
            "site": SITE,
            "gateway": GW,
            "state_dir": str(tmp_path / "state"),
            "mqtt": {
                "host": "127.0.0.1",
                "port": broker_port,
                "reconnect_base_s": 0.05,
                "reconnect_cap_s": 0.3,
                "timeout_s": 1.0,  # a connect into the cut line gives up this soon
            },
            "displays": [{"id": DISPLAY, "transport": f"pty:{display_path}"}],
            "display_link": {"reconnect_base_s": 0.05, "reconnect_cap_s": 0.3},
            "card_readers": [
                {"id": KIOSK, "transport": f"pty:{reader_link}", "walk_in_department": "internal"}
            ],
            "clinic": {
                "host": "127.0.0.1",
                "port": page_port,
                "reply_timeout_s": reply_timeout_s,
                "housekeeping_s": 0.05,
                "reader_reconnect_base_s": 0.05,
                "reader_reconnect_cap_s": 0.2,
                "staff": {"reception": STAFF_PIN_HASH},
            },
        }
    )


@contextlib.asynccontextmanager
async def clinic(
    tmp_path: Path,
    broker: Mosquitto,
    *,
    via: SiteLine | None = None,
    reply_timeout_s: float = 2.0,
) -> AsyncIterator[Clinic]:
    """Everything but the agent: the cloud has checked in two walk-ins (A-001, A-002)."""
    clock = ManualClock(T0)
    reader_link = tmp_path / "kiosk-1"
    cloud = ClinicCloud(
        broker,
        SITE,
        GW,
        clock,
        DEPARTMENTS,
        [ClinicDisplay(display_id=DISPLAY, departments=["internal", "ortho"])],
        "internal",
        CARD_KEY,
        appointments=[Appointment(BOOKED, "ortho", T0 + 20 * 60)],
    )
    page_port = free_port()
    async with (
        hosted_display(DISPLAY) as (display, _),
        CardReaderPtyHost(KIOSK, CardReaderFirmware(clock), link=reader_link) as reader,
        cloud,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{page_port}") as http,
    ):
        cloud.walk_in("internal")
        clock.advance(60)
        cloud.walk_in("internal")
        await cloud.publish()
        port = broker.port if via is None else via.port
        await pair_hosted_display(display, tmp_path / "state")
        config = site_config(tmp_path, port, display.path, reader_link, page_port, reply_timeout_s)
        yield Clinic(clock, broker, cloud, display, reader, reader_link, config, http)


@contextlib.asynccontextmanager
async def agent_running(
    site: Clinic, *, online: bool = True, log_in: bool = True
) -> AsyncIterator[Agent]:
    """The agent on ``site``; with ``log_in`` the pages' client has logged in as staff."""
    agent = build_agent(site.config, site.clock)
    async with agent:
        task = asyncio.create_task(agent.run(), name="agent-under-test")
        try:
            assert agent.pages is not None
            await within("the clinic pages listen", agent.pages.listening.wait())
            if log_in:
                await staff_log_in(site.http)
            if online:
                await within("the agent connects", agent.link.connected.wait())
                await eventually("the clinic state arrives", lambda: agent_has_day(agent))
            yield agent
        finally:
            agent.stop()
            await within("agent stop", task, limit_s=15)


async def staff_log_in(http: httpx.AsyncClient, pin: str = STAFF_PIN) -> None:
    """The staff PIN typed into the login form; the client keeps the session cookie."""
    form = {"name": "reception", "pin": pin, "next": "/staff"}
    answer = await http.post("/staff/login", data=form)
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"] == "/staff"


def agent_has_day(agent: Agent) -> bool:
    return agent.desk is not None and agent.desk.status().has_day


async def until(what: str, check: Callable[[], Awaitable[Any]], limit_s: float = 10) -> Any:
    """Poll an HTTP view until ``check`` returns something truthy; return it."""

    async def poll() -> Any:
        while not (value := await check()):  # noqa: ASYNC110 - an HTTP view has no event
            await asyncio.sleep(0.02)
        return value

    return await within(what, poll(), limit_s)


async def kiosk(site: Clinic) -> dict[str, Any]:
    response = await site.http.get(f"/api/kiosks/{KIOSK}")
    assert response.status_code == 200
    return dict(response.json())


async def tap(site: Clinic, card: PatientCardNumber, *, misread: bool = False) -> dict[str, Any]:
    """A card held to the kiosk's reader; the kiosk's screen once it has settled."""
    site.clock.advance(5)
    tapped_at = site.clock.now()
    site.reader.tap(card.digits, misread=misread)

    async def settled() -> dict[str, Any] | None:
        screen = await kiosk(site)
        if screen["at"] >= tapped_at and screen["kind"] not in ("checking", "ready"):
            return screen
        return None

    return dict(await until("the kiosk shows the check-in", settled))


async def status(site: Clinic) -> dict[str, Any]:
    return dict((await site.http.get("/api/status")).json())


async def staff(site: Clinic, action: str, number: str = "", room: str = "1") -> str:
    """A button on the staff page (a form post, then the page it leads to)."""
    site.clock.advance(30)
    form = {"department": "internal", "room": room, "number": number, "action": action}
    response = await site.http.post("/staff", data=form, follow_redirects=True)
    assert response.status_code == 200
    return response.text


def rooms(display: DisplayPtyHost) -> list[tuple[str, str]]:
    return [(r.room, r.number) for r in display.view().rooms]


def assert_no_card_numbers(state_dir: Path, text: str) -> None:
    for path in state_dir.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            for card in CARDS:
                assert card.digits.encode() not in data, f"a card number in {path.name}"
    for card in CARDS:
        assert card.digits not in text


def summary(event: Any) -> tuple[str, ...]:
    data = event.data
    if isinstance(data, CheckinData):
        assert data.local is not None
        return ("checkin", data.local.number)
    assert isinstance(data, ClinicActionData)
    assert data.local
    return (data.action.value, data.number or "")


# ------------------------------------------------------------------ tests


async def test_online_the_kiosk_shows_the_number_the_cloud_gave(
    tmp_path: Path, mosquitto: Mosquitto, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with clinic(tmp_path, mosquitto) as site, agent_running(site) as agent:
        assert (await status(site))["running"] == "cloud"
        screen = await tap(site, WALK_IN)
        assert (screen["kind"], screen["number"], screen["department"]) == (
            "ticket",
            "A-003",
            "Internal medicine",
        )
        assert screen["estimated_wait_s"] == 600  # two ahead, two rooms, ten minutes each
        page = (await site.http.get(f"/kiosk/{KIOSK}")).text
        assert "A-003" in page
        assert 'data-kind="ticket"' in page
        assert "約10分" in page  # the wait in Japanese first, for the patient
        (event,) = site.cloud.events()
        assert isinstance(event.data, CheckinData)
        assert (event.data.card, event.data.kiosk, event.data.local) == (
            WALK_IN.digits,
            KIOSK,
            None,
        )

        again = await tap(site, WALK_IN)  # the same card twice: the same ticket
        assert (again["number"], again["message"]) == ("A-003", "You are already checked in.")
        assert len(site.cloud.events()) == 1

        misread = await tap(site, OTHER, misread=True)
        assert (misread["kind"], misread["message"]) == (
            "error",
            "The card could not be read. Please tap it again.",
        )
        page = (await site.http.get(f"/kiosk/{KIOSK}")).text
        assert "カードを読み取れませんでした。もう一度かざしてください。" in page

        # a staff action goes to the cloud, which answers; the display follows its state
        called = await site.http.post(
            "/api/actions", json={"action": "call_next", "department": "internal", "room": "1"}
        )
        assert called.status_code == 200
        assert (called.json()["number"], called.json()["by"]) == ("A-001", "cloud")
        await eventually("the call on the display", lambda: rooms(site.display) == [("1", "A-001")])
        assert site.display.view().state_version == site.cloud.display_version
        refused = await site.http.post(
            "/api/actions", json={"action": "call_next", "department": "internal", "room": "1"}
        )
        assert refused.status_code == 409
        assert "room 1 still has A-001" in refused.json()["message"]
        page = (await site.http.get("/staff?department=internal&room=1")).text
        assert 'data-running="cloud"' in page
        assert 'data-testid="waiting-A-003"' in page

        # the reader is unplugged and plugged in again: the agent reopens it
        await site.reader.stop()
        await eventually("the agent notices", lambda: not agent.kiosks[KIOSK].connected)
        async with CardReaderPtyHost(
            KIOSK, CardReaderFirmware(site.clock), link=site.reader_link
        ) as site.reader:
            await eventually("the reader reopened", lambda: agent.kiosks[KIOSK].connected)
            assert (await tap(site, OTHER))["number"] == "A-004"
        await eventually("every event delivered", lambda: agent.outbox.depth() == 0)
    assert_no_card_numbers(tmp_path / "state", caplog.text)


async def test_a_late_answer_from_the_cloud_still_reaches_the_kiosk(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    async with (
        clinic(tmp_path, mosquitto, reply_timeout_s=0.3) as site,
        agent_running(site),
    ):
        site.cloud.answering = False
        screen = await tap(site, WALK_IN)
        assert (screen["kind"], screen["message"]) == (
            "pending",
            "Checked in. Your number appears here shortly.",
        )
        again = await tap(site, WALK_IN)  # no second request while the first is open
        assert again["kind"] == "pending"
        assert len(site.cloud.events()) == 1
        await site.cloud.apply()
        answered = await until("the number on the kiosk", lambda: _ticket(site))
        assert answered["number"] == "A-003"


async def test_a_busy_morning_with_the_internet_cut(
    tmp_path: Path, mosquitto: Mosquitto, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with clinic(tmp_path, mosquitto) as site, agent_running(site) as agent:
        await eventually("the cloud's state on the display", lambda: site.display.view().has_state)
        assert site.display.view().next_numbers == ("A-001", "A-002")

        mosquitto.stop()
        await until("the agent runs the queue", lambda: _running(site, "agent", connected=False))
        assert (await tap(site, WALK_IN))["number"] == "A-700"
        booked = await tap(site, BOOKED)
        assert (booked["number"], booked["department"]) == ("B-700", "Orthopaedics")
        assert (await tap(site, WALK_IN))["number"] == "A-700"  # tapped twice: same ticket
        assert "tap it again" in (await tap(site, OTHER, misread=True))["message"]

        page = await staff(site, "call_next")
        assert 'data-running="agent"' in page
        assert "the internet is down" in page
        await eventually("room 1 calls A-001", lambda: rooms(site.display) == [("1", "A-001")])
        chimes = site.display.view().chime_count
        await staff(site, "start", "A-001")
        await staff(site, "done", "A-001")
        page = await staff(site, "call_next")
        assert "A-002" in page
        await eventually("room 1 calls A-002", lambda: rooms(site.display) == [("1", "A-002")])
        view = site.display.view()
        assert view.chime_count == chimes + 1
        assert view.next_numbers == ("A-700", "B-700")
        assert view.announcement == "番号でお呼びします"  # the cloud's line is kept
        assert view.state_version >= 2**31  # a local state, never a cloud version

        # the link is back: the events reach the cloud in order, once each
        site.cloud.answering = False
        mosquitto.start()
        events = await site.cloud.wait_for_events(6, limit_s=15)
        assert [summary(e) for e in events] == [
            ("checkin", "A-700"),
            ("checkin", "B-700"),
            ("call", "A-001"),
            ("start", "A-001"),
            ("done", "A-001"),
            ("call", "A-002"),
        ]
        ids = [e.id for e in events]
        assert ids == sorted(ids)
        assert len(set(ids)) == 6
        first = events[0].data
        assert isinstance(first, CheckinData)
        assert first.card == WALK_IN.digits

        # the agent keeps the queue until the cloud has applied its last event
        await site.cloud.apply(upto=ids[3])
        await asyncio.sleep(0.3)
        assert (await status(site))["running"] == "agent"
        assert rooms(site.display) == [("1", "A-002")]
        await site.cloud.apply()
        await until("the cloud runs the queue again", lambda: _running(site, "cloud"))
        await eventually(
            "the displays follow the cloud",
            lambda: site.display.view().state_version == site.cloud.display_version,
        )
        assert rooms(site.display) == [("1", "A-002")]
        assert site.cloud.numbers("internal") == ["A-001", "A-002", "A-700"]
        assert site.cloud.numbers("ortho") == ["B-700"]

        site.cloud.answering = True
        assert (await tap(site, OTHER))["number"] == "A-003"  # the cloud numbers again
        await asyncio.sleep(0.2)
        assert len(site.cloud.events()) == 7  # nothing was sent twice
        await eventually("every event delivered", lambda: agent.outbox.depth() == 0)
    assert_no_card_numbers(tmp_path / "state", caplog.text)


async def test_a_check_in_the_broker_never_acknowledged_is_done_here_and_never_sent(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    async with (
        SiteLine(mosquitto.host, mosquitto.port) as line,
        clinic(tmp_path, mosquitto, via=line) as site,
        agent_running(site) as agent,
    ):
        line.hold()  # the agent's bytes stop reaching the broker: no PUBACK
        site.clock.advance(5)
        site.reader.tap(WALK_IN.digits)
        await eventually("the check-in is on the line", lambda: line.held_bytes > 0)
        assert (await kiosk(site))["kind"] == "checking"
        assert agent.outbox.depth() == 1
        line.cut()
        screen = await until("a local number", lambda: _ticket(site))
        assert screen["number"] == "A-700"
        assert agent.outbox.depth() == 1  # the local check-in; the request was withdrawn

        line.restore()
        (event,) = await site.cloud.wait_for_events(1)
        assert isinstance(event.data, CheckinData)
        assert event.data.local is not None
        assert (event.data.local.number, event.data.card) == ("A-700", WALK_IN.digits)
        await until("handed back", lambda: _running(site, "cloud"))
        await asyncio.sleep(0.3)
        assert len(site.cloud.events()) == 1  # the withdrawn request never arrived
        assert site.cloud.numbers("internal") == ["A-001", "A-002", "A-700"]


async def test_an_agent_restarted_mid_outage_carries_on_without_reusing_a_number(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    async with clinic(tmp_path, mosquitto) as site:
        async with agent_running(site):
            mosquitto.stop()
            await until("the agent runs the queue", lambda: _running(site, "agent"))
            assert (await tap(site, WALK_IN))["number"] == "A-700"
            assert (await tap(site, OTHER))["number"] == "A-701"
            await staff(site, "call_next")
        async with agent_running(site, online=False) as agent:
            assert (await status(site))["running"] == "agent"
            await eventually(
                "the local calls shown", lambda: rooms(site.display) == [("1", "A-001")]
            )
            assert site.display.view().next_numbers == ("A-002", "A-700", "A-701")
            assert (await tap(site, THIRD))["number"] == "A-702"
            assert (await tap(site, WALK_IN))["number"] == "A-700"
            page = (await site.http.get("/staff?department=internal&room=1")).text
            assert all(f'data-testid="waiting-A-70{i}"' in page for i in range(3))

            mosquitto.start()
            events = await site.cloud.wait_for_events(4, limit_s=15)
            assert [summary(e) for e in events] == [
                ("checkin", "A-700"),
                ("checkin", "A-701"),
                ("call", "A-001"),
                ("checkin", "A-702"),
            ]
            await until("handed back", lambda: _running(site, "cloud"))
            await eventually("every event delivered", lambda: agent.outbox.depth() == 0)
            await asyncio.sleep(0.2)
            assert len(site.cloud.events()) == 4


async def _running(site: Clinic, who: str, *, connected: bool | None = None) -> bool:
    now = await status(site)
    return now["running"] == who and (connected is None or now["connected"] == connected)


async def _ticket(site: Clinic) -> dict[str, Any] | None:
    screen = await kiosk(site)
    return screen if screen["kind"] == "ticket" else None
