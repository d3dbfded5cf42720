"""The clinic's pages through the ASGI app with its lifespan (MQTT off), logged in with the
session cookie as a browser is: the staff page (call next, the room's ticket and its
buttons, the queue, desk check-in, refusals shown as messages, the live part), the
figures page and its CSV, the announcements page, the patient's ticket page, and who may
open which."""

from __future__ import annotations

import csv
import html
import io
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from cloud.app import create_app
from cloud.bootstrap import ClinicSeed, seed_clinic
from cloud.clinic.services import ClinicServices
from cloud.clinic.staff import StaffRequest
from cloud.core.models import Role
from cloud.settings import CloudSettings
from protocol.clock import ManualClock
from protocol.messages import ClinicAction
from protocol.queue_rules import tokyo_day
from tests.support.clinic import MIN, NINE, at, card_qr
from tests.support.cloud import Authenticator, log_in

SITE = "clinic-a"
STAFF = f"/clinic/{SITE}/staff"
ROOM_1 = f"{STAFF}?department=internal&room=1"


@dataclass
class Pages:
    app: FastAPI
    clock: ManualClock
    seed: ClinicSeed
    clients: list[httpx.AsyncClient]
    phones: dict[str, Authenticator] = field(default_factory=dict)  # each person's app

    @property
    def clinic(self) -> ClinicServices:
        svc: ClinicServices = self.app.state.clinic
        return svc

    def card(self, name: str) -> str:
        return next(p.card for p in self.seed.patients if p.name == name)

    def browser(self) -> httpx.AsyncClient:
        """A fresh client with its own cookie jar, as another person's browser."""
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app),
            base_url="http://cloud",
            headers={"Accept-Language": "en"},  # these tests read the English pages
        )
        self.clients.append(client)
        return client

    async def logged_in(self, username: str) -> httpx.AsyncClient:
        client = self.browser()
        password = self.seed.users[username].password
        phone = self.phones.get(username)
        self.phones[username] = await log_in(client, self.clock, username, password, phone)
        return client


@pytest.fixture
async def pages(tmp_path: Path) -> AsyncIterator[Pages]:
    settings = CloudSettings(
        database_url=f"sqlite:///{tmp_path}/pages.db",
        secret_key="s" * 40,
        metrics_token="m" * 32,
        mqtt_enabled=False,
    )
    clock = ManualClock(NINE)
    app = create_app(settings, clock=clock)
    async with app.router.lifespan_context(app):
        with app.state.sessions.begin() as session:
            users = {"clinic": Role.CLINIC, "ops": Role.OPS, "gym": Role.MANAGER}
            seed = seed_clinic(session, users=users, clock=clock)
            seed_clinic(
                session, site="clinic-b", displays=("clinic-b-disp-1",), users={}, clock=clock
            )
        world = Pages(app, clock, seed, [])
        try:
            yield world
        finally:
            for client in world.clients:
                await client.aclose()


def by_testid(page: str, testid: str) -> str:
    """The text inside the first element with ``data-testid=testid`` (tags stripped)."""
    found = re.search(rf'data-testid="{re.escape(testid)}"[^>]*>(.*?)</', page, re.S)
    assert found, f"no {testid} on the page"
    return " ".join(html.unescape(found.group(1)).split())


def row_numbers(page: str, testid: str) -> list[str]:
    return re.findall(rf'data-testid="{testid}" data-number="([^"]*)"', page)


async def follow(client: httpx.AsyncClient, r: httpx.Response) -> httpx.Response:
    """Follow the redirect a form post answers with, as the browser does."""
    assert r.status_code == 303, r.text
    return await client.get(r.headers["location"])


async def desk_checkin(
    client: httpx.AsyncClient, card: str = "", *, urgent: bool = False, department: str = ""
) -> httpx.Response:
    form = {"department": "internal", "room": "1", "card": card, "to_department": department}
    if urgent:
        form["urgent"] = "1"
    return await follow(client, await client.post(f"{STAFF}/checkin", data=form))


async def press(client: httpx.AsyncClient, number: str, action: str, **form: str) -> httpx.Response:
    data = {"department": "internal", "room": "1", **form}
    r = await client.post(f"{STAFF}/tickets/{number}/{action}", data=data)
    return await follow(client, r)


async def call_next(client: httpx.AsyncClient, room: str = "1") -> httpx.Response:
    r = await client.post(f"{STAFF}/call-next", data={"department": "internal", "room": room})
    return await follow(client, r)


async def test_staff_checks_in_at_the_desk_calls_next_and_sees_the_queue_change(
    pages: Pages,
) -> None:
    staff = await pages.logged_in("clinic")
    r = await desk_checkin(staff, pages.card("Tanaka Yuki"))
    assert by_testid(r.text, "flash") == (
        "Checked in: A-001, Internal medicine, nobody ahead, wait now"
    )
    pages.clock.advance(2 * MIN)
    r = await desk_checkin(staff)  # no card: a walk-in at the desk
    assert "Checked in: A-002, Internal medicine, 1 ahead" in by_testid(r.text, "flash")
    pages.clock.advance(MIN)
    r = await desk_checkin(staff, pages.card("Sato Ken"), urgent=True)
    assert "Checked in: A-003" in r.text

    pages.clock.advance(2 * MIN)
    page = (await staff.get(ROOM_1)).text
    # urgent first, then the others in the order they came, with their wait so far
    assert row_numbers(page, "queue-row") == ["A-003", "A-001", "A-002"]
    assert 'data-number="A-003" data-urgent="true"' in page
    assert 'data-seconds="300">5 min' in page  # A-001 has waited five minutes
    assert "Tanaka Yuki" in page  # the staff's own screen may name the patient
    assert 'data-testid="current-none"' in page

    r = await call_next(staff)
    assert by_testid(r.text, "flash") == "Called A-003 to room 1"
    assert by_testid(r.text, "current-number") == "A-003"
    assert by_testid(r.text, "current-name").startswith("Sato Ken")
    assert row_numbers(r.text, "queue-row") == ["A-001", "A-002"]
    assert 'data-testid="room-row" data-room="1" data-number="A-003"' in r.text
    # only what the ticket may do next is enabled; done needs the patient in the room
    assert re.search(r'data-testid="done"\s+disabled', r.text)
    assert not re.search(r'data-testid="start"\s+disabled', r.text)

    r = await press(staff, "A-003", "start")
    assert by_testid(r.text, "flash") == "A-003 is in room 1"
    assert by_testid(r.text, "current-state") == "in the room"
    r = await press(staff, "A-003", "done")
    assert by_testid(r.text, "flash") == "A-003 is done"
    assert 'data-testid="current-none"' in r.text
    assert "1 done, 0 no-shows" in by_testid(r.text, "closed")

    # out of turn: room 1 calls A-002 before A-001; then it is set aside and comes back
    r = await press(staff, "A-002", "call")
    assert by_testid(r.text, "flash") == "Called A-002 to room 1 (out of turn)"
    assert by_testid(r.text, "current-number") == "A-002"
    r = await press(staff, "A-002", "skip")
    assert row_numbers(r.text, "skipped-row") == ["A-002"]
    r = await press(staff, "A-002", "recall", to_room="1")
    assert by_testid(r.text, "flash") == "Called A-002 again to room 1"
    r = await press(staff, "A-002", "no_show")
    assert "0 done" not in by_testid(r.text, "closed")
    assert "1 no-show." in by_testid(r.text, "closed")

    # transfer A-001 to pediatrics: it leaves this queue and waits there
    r = await press(staff, "A-001", "transfer", target="department:pediatrics")
    assert by_testid(r.text, "flash") == "A-001 is moved to pediatrics"
    assert row_numbers(r.text, "queue-row") == []
    peds = (await staff.get(f"{STAFF}?department=pediatrics&room=3")).text
    assert row_numbers(peds, "queue-row") == ["A-001"]


async def test_refusals_show_as_messages_on_the_staff_page(pages: Pages) -> None:
    staff = await pages.logged_in("clinic")
    r = await call_next(staff)
    assert r.status_code == 200
    assert by_testid(r.text, "error") == "nobody is waiting for room 1 of internal"
    assert r.url.params["room"] == "1"  # still on my room's page

    await desk_checkin(staff)
    await desk_checkin(staff)
    await call_next(staff)
    r = await call_next(staff)
    assert by_testid(r.text, "error") == (
        "room 1 still has A-001 called: mark it done, no-show, skip or transfer it first"
    )
    r = await press(staff, "A-001", "done")
    assert by_testid(r.text, "error").startswith(
        "cannot done: ticket A-001 is called; allowed there: recall, start"
    )
    r = await press(staff, "A-009", "start")
    assert "A-009" in by_testid(r.text, "error")
    r = await press(staff, "A-002", "transfer", target="")
    assert "choose where to transfer" in by_testid(r.text, "error")
    r = await press(staff, "A-002", "teleport")
    assert "'teleport' is not an action" in by_testid(r.text, "error")
    r = await desk_checkin(staff, "1234")
    assert "that is not a patient card number" in by_testid(r.text, "error")
    r = await staff.get(f"{STAFF}?department=dentistry&room=9")
    assert r.status_code == 200
    assert "has no department 'dentistry'" in by_testid(r.text, "error")
    assert (await staff.get("/clinic/nowhere/staff")).status_code == 404


async def test_the_live_part_follows_another_room_and_the_room_is_remembered(
    pages: Pages,
) -> None:
    staff = await pages.logged_in("clinic")
    await desk_checkin(staff)
    await desk_checkin(staff)
    live_url = f"{STAFF}/live?department=internal&room=1"
    before = await staff.get(live_url)
    assert before.headers["cache-control"] == "no-store"
    assert row_numbers(before.text, "queue-row") == ["A-001", "A-002"]
    assert "<html" not in before.text  # only the part the page swaps in
    same = await staff.get(live_url)
    assert same.headers["x-live-version"] == before.headers["x-live-version"]

    # room 2 calls (another staff member, on another screen)
    colleague = await pages.logged_in("ops")
    r = await colleague.post(f"{STAFF}/call-next", data={"department": "internal", "room": "2"})
    assert r.status_code == 303
    after = await staff.get(live_url)
    assert after.headers["x-live-version"] != before.headers["x-live-version"]
    assert 'data-testid="room-row" data-room="2" data-number="A-001"' in after.text
    assert row_numbers(after.text, "queue-row") == ["A-002"]
    # the waits tick: a minute later the version changes with nothing else happening
    pages.clock.advance(MIN)
    later = await staff.get(live_url)
    assert later.headers["x-live-version"] != after.headers["x-live-version"]

    # the page remembers the room: coming back without a choice lands on room 2
    await colleague.get(f"{STAFF}?department=internal&room=2")
    back = await colleague.get(STAFF)
    assert 'data-testid="my-room" data-room="2"' in back.text
    assert 'data-testid="my-room" data-room="1"' in (await staff.get(STAFF)).text
    newcomer = await pages.logged_in("ops")
    assert 'data-testid="choose-room"' in (await newcomer.get(STAFF)).text

    # an appointment checked in at the desk goes ahead of the walk-in, marked with its time
    r = await desk_checkin(staff, pages.card("Yamada Hanako"))
    assert "Checked in: A-003" in by_testid(r.text, "flash")
    assert row_numbers(r.text, "queue-row") == ["A-003", "A-002"]
    assert by_testid(r.text, "mark-appointment") == "appointment 09:20"


async def test_who_may_open_the_clinic_pages(pages: Pages) -> None:
    anonymous = pages.browser()
    r = await anonymous.get(ROOM_1)
    assert r.status_code == 303
    assert r.headers["location"].startswith("/login?next=/clinic/clinic-a/staff")
    r = await anonymous.post(f"{STAFF}/call-next", data={"department": "internal", "room": "1"})
    assert r.status_code == 303  # to the login page; nothing was called
    assert r.headers["location"].startswith("/login")

    gym = await pages.logged_in("gym")
    for url in (
        ROOM_1,
        f"{STAFF}/live?department=internal&room=1",
        f"/clinic/{SITE}/figures",
        f"/clinic/{SITE}/figures.csv",
        "/clinic",
        "/announcements",
    ):
        r = await gym.get(url)
        assert r.status_code == 403, url
        assert "this needs the" in r.text
    r = await gym.post(f"{STAFF}/checkin", data={"department": "internal", "room": "1"})
    assert r.status_code == 403
    assert 'data-testid="nav-clinic"' not in (await gym.get("/")).text

    clinic = await pages.logged_in("clinic")
    home = (await clinic.get("/")).text
    assert 'data-testid="nav-clinic"' in home
    assert 'data-testid="nav-announcements"' not in home
    index = (await clinic.get("/clinic")).text
    assert f'href="{STAFF}?department=internal&amp;room=1"' in index
    assert 'data-testid="announcements-link"' not in index
    assert (await clinic.get("/announcements")).status_code == 403
    expires = "2027-01-15T10:00"
    r = await clinic.post("/announcements", data={"text": "x", "expires": expires})
    assert r.status_code == 403
    assert pages.clinic.announcements.active() == []

    ops = await pages.logged_in("ops")
    assert (await ops.get(ROOM_1)).status_code == 200
    assert 'data-testid="nav-announcements"' in (await ops.get("/")).text
    assert (await ops.get("/announcements")).status_code == 200


async def test_the_figures_page_shows_what_the_service_computes(pages: Pages) -> None:
    staff = await pages.logged_in("clinic")
    checkins = {"A-001": "09:00", "A-002": "09:10", "A-003": "09:20", "A-004": "10:05"}
    for moment in checkins.values():
        pages.clock.set(at(f"2027-01-15 {moment}"))
        await desk_checkin(staff)
    pages.clock.set(at("2027-01-15 10:30"))
    await call_next(staff)  # A-001, after 90 minutes
    await press(staff, "A-001", "start")
    await press(staff, "A-001", "done")
    await call_next(staff)  # A-002, after 80 minutes
    await press(staff, "A-002", "no_show")
    pages.clock.set(at("2027-01-15 10:45"))
    await call_next(staff, room="2")  # A-003, after 85 minutes; A-004 still waits

    service = pages.clinic.figures.day(SITE, tokyo_day(pages.clock.now()))
    page = (await staff.get(f"/clinic/{SITE}/figures?date=2027-01-15")).text
    assert by_testid(page, "checkins") == "4"
    internal = next(d for d in service.departments if d.department == "internal")
    assert internal.wait_median_s is not None
    assert internal.wait_p90_s is not None
    row = page.split('data-department="internal"')[1].split("</tr>")[0]
    assert f'data-seconds="{internal.wait_median_s}"' in row
    assert f'data-seconds="{internal.wait_p90_s}"' in row
    assert by_testid(row, "wait-median") == "85 min 00 s"
    assert by_testid(row, "wait-p90") == "90 min 00 s"  # nearest rank of three
    assert by_testid(row, "no-show-rate") == "50.0%"
    assert by_testid(page, "site-no-show-rate") == "50.0%"
    bars = re.findall(r'data-testid="hour-bar" data-hour="(\d+)" data-checkins="(\d+)"', page)
    assert bars == [(str(h.hour), str(h.checkins)) for h in service.checkins_per_hour]
    assert bars == [("9", "3"), ("10", "1")]

    r = await staff.get(f"/clinic/{SITE}/figures.csv?date=2027-01-15")
    assert r.headers["content-type"].startswith("text/csv")
    lines = list(csv.DictReader(io.StringIO(r.text)))
    first = next(line for line in lines if line["department"] == "internal")
    assert (first["tickets"], first["wait_median_s"], first["no_show_rate"]) == (
        "4",
        "5100.0",
        "0.5",
    )
    r = await staff.get(f"/clinic/{SITE}/checkins-per-hour.csv?date=2027-01-15")
    assert [(x["hour"], x["checkins"]) for x in csv.DictReader(io.StringIO(r.text))] == [
        ("9", "3"),
        ("10", "1"),
    ]
    empty = (await staff.get(f"/clinic/{SITE}/figures?date=2027-01-14")).text
    assert 'data-testid="no-checkins"' in empty
    bad = await staff.get(f"/clinic/{SITE}/figures?date=yesterday")
    assert bad.status_code == 400
    assert "is not a date; use YYYY-MM-DD" in bad.text


async def test_ops_send_list_and_clear_announcements(pages: Pages) -> None:
    ops = await pages.logged_in("ops")
    page = (await ops.get("/announcements")).text
    assert 'value="2027-01-15T10:00"' in page  # an hour from now, Tokyo time
    assert 'data-testid="no-announcements"' in page
    form = {
        "text": "Typhoon: the clinic closes at noon",
        "level": "urgent",
        "expires": "2027-01-15T12:00",
        "scope": "chosen",
        "site": "clinic-b",
    }
    r = await follow(ops, await ops.post("/announcements", data=form))
    assert by_testid(r.text, "flash") == ("Showing on clinic-b until 2027-01-15 12:00 (Asia/Tokyo)")
    (sent,) = pages.clinic.announcements.active()
    assert (sent.sites, sent.level.value, sent.expires_at) == (
        ("clinic-b",),
        "urgent",
        int(at("2027-01-15 12:00")),
    )
    assert by_testid(r.text, "announcement-row-sites") == "clinic-b"

    refused = await ops.post("/announcements", data={**form, "expires": "2027-01-15T08:00"})
    assert refused.status_code == 400
    assert "expires_at must be in the future" in by_testid(refused.text, "error")
    assert "Typhoon: the clinic closes at noon</textarea>" in refused.text  # kept
    nowhere = {k: v for k, v in form.items() if k != "site"}
    refused = await ops.post("/announcements", data=nowhere)
    assert "tick at least one site" in by_testid(refused.text, "error")
    refused = await ops.post("/announcements", data={**form, "scope": "all"})
    assert "you ticked sites but chose every clinic" in by_testid(refused.text, "error")
    assert len(pages.clinic.announcements.active()) == 1

    r = await follow(ops, await ops.post(f"/announcements/{sent.id}/clear"))
    assert by_testid(r.text, "flash") == "Cleared: Typhoon: the clinic closes at noon"
    assert pages.clinic.announcements.active() == []
    r = await follow(ops, await ops.post(f"/announcements/{sent.id}/clear"))
    assert "is no longer showing" in by_testid(r.text, "error")


async def test_the_patients_ticket_page_follows_the_call(pages: Pages) -> None:
    patient = pages.browser()
    r = await patient.post(
        "/api/clinic/checkin",
        json={
            "qr": card_qr(pages.app.state.settings, SITE, pages.card("Suzuki Taro")),
            "site": SITE,
        },
    )
    assert r.status_code == 409  # his appointment is later; Tanaka checks in instead
    r = await patient.post(
        "/api/clinic/checkin",
        json={
            "qr": card_qr(pages.app.state.settings, SITE, pages.card("Tanaka Yuki")),
            "site": SITE,
        },
    )
    first = httpx.URL(r.json()["page_url"]).path
    r = await patient.post(
        "/api/clinic/checkin",
        json={"qr": card_qr(pages.app.state.settings, SITE, pages.card("Sato Ken")), "site": SITE},
    )
    answer = r.json()
    assert answer["page_url"] == f"http://127.0.0.1:8000/ticket/{answer['status_url'][-24:]}"
    mine = httpx.URL(answer["page_url"]).path

    page = (await patient.get(mine)).text
    assert by_testid(page, "ticket-number") == "A-002"
    assert by_testid(page, "ticket-department") == "Internal medicine"
    assert by_testid(page, "ticket-ahead") == "1 person ahead of you."
    assert by_testid(page, "ticket-wait") == "Estimated wait: about 5 min"
    assert "Sato" not in page
    assert pages.card("Sato Ken") not in page

    staff = pages.clinic.staff
    staff.act(SITE, StaffRequest(ClinicAction.CALL_NEXT, room="2"), "clinic:clinic")
    assert by_testid((await patient.get(mine)).text, "ticket-ahead") == "You are next."
    staff.act(SITE, StaffRequest(ClinicAction.CALL_NEXT, room="1"), "clinic:clinic")
    live = await patient.get(f"{mine}/live")
    assert by_testid(live.text, "ticket-called") == "Your number is called to room 1."
    assert "x-live-version" in live.headers
    page = (await patient.get(mine)).text
    assert "called to room 1" in page
    assert 'data-final="false"' in page

    staff.act(SITE, StaffRequest(ClinicAction.START, "A-002"), "clinic:clinic")
    staff.act(SITE, StaffRequest(ClinicAction.DONE, "A-002"), "clinic:clinic")
    page = (await patient.get(mine)).text
    assert by_testid(page, "ticket-closed") == "Your visit is finished. Thank you."
    assert 'data-final="true"' in page  # the page stops polling
    assert "room 2" in by_testid((await patient.get(first)).text, "ticket-called")
    gone = await patient.get("/ticket/not-a-token")
    assert gone.status_code == 404
    assert "no such ticket" in gone.text
