"""Personal data kept only as long as the city said, on SQLite and PostgreSQL, through the
HTTP API with the app's lifespan (MQTT off) and a ManualClock moved past the periods: a
clinic day's check-ins deleted after 90 days with its figures the same afterwards; a
month of bookings anonymised 13 months on with the month's figures the same; a patient's
erasure and export at one clinic; the log ops read."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from cloud.app import create_app
from cloud.bootstrap import ClinicSeed, DemoSeed, seed_clinic, seed_demo
from cloud.clinic.models import Appointment, Ticket
from cloud.core.models import Role
from cloud.core.personal_data import RetentionJobs
from cloud.gym.models import Reservation
from cloud.settings import CloudSettings
from protocol.clock import ManualClock
from tests.support.cloud import DB_KINDS, basic, fresh_database, log_in
from tests.support.confirm_mail import confirm_by_mail
from tests.support.personal_data import sqlite_files_holding, tables_holding
from tests.unit.test_booking_rules import at

SITE = "clinic-a"
JAN_15 = {"date": "2027-01-15"}


@dataclass
class World:
    app: FastAPI
    http: httpx.AsyncClient
    clock: ManualClock
    gym: DemoSeed
    clinic: ClinicSeed
    url: str

    def as_user(self, name: str) -> dict[str, str]:
        for users in (self.gym.users, self.clinic.users):
            if name in users:
                return basic(name, users[name].api_token)
        raise KeyError(name)

    def card(self, name: str) -> str:
        return next(p.card for p in self.clinic.patients if p.name == name)

    def retention(self) -> dict[str, dict[str, int]]:
        jobs: RetentionJobs = self.app.state.retention
        return jobs.run_due()

    def holding(self, needle: str) -> dict[str, int]:
        return tables_holding(self.app.state.sessions, needle)

    def count(self, query: Any) -> int:
        with self.app.state.sessions() as session:
            return int(session.scalar(select(func.count()).select_from(query)) or 0)

    async def post(self, url: str, user: str, **kw: Any) -> httpx.Response:
        return await self.http.post(url, headers=self.as_user(user), **kw)

    async def book(self, start: str, name: str, email: str, group_size: int = 4) -> str:
        begin = at(start)
        body = {
            "room_id": self.gym.room_id,
            "name": name,
            "email": email,
            "group_size": group_size,
            "purpose": f"badminton with {name}'s club",
            "start": begin,
            "end": begin + 2 * 3600,
        }
        created = await self.http.post("/api/reservations", json=body)
        assert created.status_code == 201, created.text
        rid = str(created.json()["id"])
        await confirm_by_mail(self.http, self.app.state.sessions, email, rid)
        ok = await self.post(f"/api/reservations/{rid}/approve", "manager")
        assert ok.status_code == 200, ok.text
        return rid


@pytest.fixture(params=DB_KINDS)
async def world(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[World]:
    with fresh_database(request.param, tmp_path) as url:
        settings = CloudSettings(
            database_url=url, secret_key="s" * 40, metrics_token="m" * 32, mqtt_enabled=False
        )
        clock = ManualClock(at("2027-01-15 09:00"))
        app = create_app(settings, clock=clock)
        async with app.router.lifespan_context(app):
            with app.state.sessions.begin() as session:
                gym = seed_demo(session, users={"manager": Role.MANAGER, "ops": Role.OPS})
                clinic = seed_clinic(session, users={"clinic": Role.CLINIC}, clock=clock)
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://cloud") as http:
                yield World(app, http, clock, gym, clinic, url)


async def _clinic_day(world: World) -> None:
    """Four check-ins at the desk on 2027-01-15 (one with her appointment, one without a
    card); one done, one no-show, one called."""
    for name in ("Yamada Hanako", "Tanaka Yuki", "Sato Ken", None):
        card = {} if name is None else {"card": world.card(name)}
        r = await world.post(
            f"/api/clinic/sites/{SITE}/checkins",
            "clinic",
            json={**card, "department": "internal"},
        )
        assert r.status_code == 200, r.text
        world.clock.advance(7 * 60)
    base = f"/api/clinic/sites/{SITE}"
    first = (await world.post(f"{base}/rooms/1/call-next", "clinic")).json()["number"]
    for action in ("start", "done"):
        assert (await world.post(f"{base}/tickets/{first}/{action}", "clinic")).status_code == 200
    world.clock.advance(20 * 60)
    second = (await world.post(f"{base}/rooms/2/call-next", "clinic")).json()["number"]
    assert (await world.post(f"{base}/tickets/{second}/no_show", "clinic")).status_code == 200
    await world.post(f"{base}/rooms/1/call-next", "clinic")


async def test_a_clinic_day_is_deleted_after_90_days_and_its_figures_stay(world: World) -> None:
    await _clinic_day(world)
    figures_url = f"/api/clinic/sites/{SITE}/figures"
    before = (await world.http.get(figures_url, params=JAN_15, headers=world.as_user("ops"))).json()
    assert before["checkins"] == 4
    assert before["departments"][0]["wait_median_s"] is not None

    world.clock.set(at("2027-04-15 12:00"))  # day 90: still kept
    world.retention()
    assert world.count(select(Ticket).where(Ticket.site == SITE).subquery()) == 4

    world.clock.set(at("2027-04-16 00:30"))  # day 91
    run = world.retention()["clinic"]
    assert (run["days_kept_as_figures"], run["tickets_deleted"]) == (1, 4)
    assert run["appointments_deleted"] == 2  # the seed's two of 2027-01-15
    assert world.count(select(Ticket).subquery()) == 0
    assert world.count(select(Appointment).subquery()) == 0
    assert world.holding(world.card("Suzuki Taro")) == {"patients": 1}  # the registry only

    after = (await world.http.get(figures_url, params=JAN_15, headers=world.as_user("ops"))).json()
    assert after == before
    staff = world.http
    await log_in(staff, world.clock, "clinic", world.clinic.users["clinic"].password)
    page = (await staff.get(f"/clinic/{SITE}/figures?date=2027-01-15")).text
    assert 'data-testid="checkins">4<' in page
    assert world.retention()["clinic"]["days_kept_as_figures"] == 0  # once only

    log = (await world.http.get("/api/personal-data/log", headers=world.as_user("ops"))).json()
    runs = [e for e in log if e["domain"] == "clinic" and e["action"] == "retention"]
    assert (runs[0]["rows"], runs[1]["detail"]["tickets_deleted"]) == (0, 4)  # newest first
    assert runs[0]["actor"] == "retention"


async def test_a_month_of_bookings_is_anonymised_13_months_on_and_its_figures_stay(
    world: World,
) -> None:
    kenji = await world.book("2027-01-20 10:00", "Kobayashi Kenji", "Kenji@Example.jp", 5)
    await world.book("2027-01-27 10:00", "Kobayashi Kenji", "kenji@example.jp", 3)
    await world.book("2027-01-22 18:00", "Mori Aiko", "aiko@example.jp", 8)
    february = await world.book("2027-02-03 10:00", "Mori Aiko", "aiko@example.jp", 2)
    fid, ops = world.gym.facility_id, world.as_user("ops")
    query = {"from": "2027-01-01", "to": "2027-02-28"}
    world.clock.set(at("2027-03-01 09:00"))
    before = await world.http.get(f"/api/facilities/{fid}/figures", params=query, headers=ops)
    months = before.json()["months"]
    assert (months[0]["bookings"], months[0]["users"], months[0]["visitors"]) == (3, 2, 16)

    world.clock.set(at("2028-03-01 12:00"))  # January 2027 ended 13 months ago, plus a day: not yet
    assert world.retention()["gym"]["bookings_anonymised"] == 0
    world.clock.set(at("2028-03-02 00:30"))
    run = world.retention()["gym"]
    assert run["bookings_anonymised"] == 3
    assert run["mails_deleted"] >= 3  # the January PIN mails

    for needle in ("kenji@example.jp", "Kobayashi", "badminton with Kobayashi"):
        assert world.holding(needle) == {}, needle
        assert sqlite_files_holding(world.url, needle) == [], needle
    assert world.holding("aiko@example.jp") == {"reservations": 1}  # February's, not yet due
    with world.app.state.sessions() as session:
        anonymised, kept = session.get(Reservation, kenji), session.get(Reservation, february)
        assert anonymised is not None
        assert kept is not None
        assert anonymised.anonymised_at is not None
        assert (anonymised.group_size, anonymised.status.value) == (5, "approved")
        assert kept.email == "aiko@example.jp"

    after = await world.http.get(f"/api/facilities/{fid}/figures", params=query, headers=ops)
    assert after.json()["months"] == months


async def test_a_patient_is_erased_at_one_clinic_and_can_have_a_copy_first(world: World) -> None:
    await _clinic_day(world)
    card, base = world.card("Yamada Hanako"), f"/api/clinic/sites/{SITE}/patients"
    copy = await world.post(f"{base}/export", "clinic", json={"card": card})
    assert copy.status_code == 200, copy.text
    assert copy.json()["patient"]["name"] == "Yamada Hanako"
    assert [t["number"] for t in copy.json()["tickets"]] == ["A-001"]
    as_csv = {"format": "csv"}
    csv = await world.post(f"{base}/export", "clinic", json={"card": card}, params=as_csv)
    assert csv.text.splitlines()[0].startswith("record,site,day,number")
    assert [line.split(",")[0] for line in csv.text.splitlines()[1:]] == ["ticket", "appointment"]

    figures_url = f"/api/clinic/sites/{SITE}/figures"
    before = (await world.http.get(figures_url, params=JAN_15, headers=world.as_user("ops"))).json()
    preview = await world.post(f"{base}/erasure-preview", "clinic", json={"card": card})
    assert preview.json() == {"site": SITE, "tickets": 1, "appointments": 1}
    stale = {"card": card, "expected_tickets": 2, "expected_appointments": 1}
    refused = await world.post(f"{base}/erase", "clinic", json=stale)
    assert refused.status_code == 409
    assert "look again" in refused.json()["detail"]
    body = {"card": card, "expected_tickets": 1, "expected_appointments": 1}
    erased = await world.post(f"{base}/erase", "clinic", json=body)
    assert erased.json() == {
        "tickets_unlinked": 1,
        "appointments_deleted": 1,
        "registry_deleted": 1,
        "mails_deleted": 0,
    }
    for needle in (card, "Yamada Hanako", "hanako@example.jp"):
        assert world.holding(needle) == {}, needle
    after = (await world.http.get(figures_url, params=JAN_15, headers=world.as_user("ops"))).json()
    assert after == before  # the ticket is still counted, as nobody's
    again = await world.post(f"{base}/erasure-preview", "clinic", json={"card": card})
    assert again.status_code == 404

    log = (await world.http.get("/api/personal-data/log", headers=world.as_user("clinic"))).json()
    assert [(e["action"], e["subject"], e["rows"]) for e in log[:3]] == [
        ("erasure", "****-****-****-" + card[-4:], 3),
        ("export", "****-****-****-" + card[-4:], 2),
        ("export", "****-****-****-" + card[-4:], 2),
    ]
    assert all(e["actor"] == "clinic:clinic" and e["site"] == SITE for e in log[:3])


async def test_the_page_asks_before_it_deletes_and_shows_the_log(world: World) -> None:
    await world.book("2027-01-20 10:00", "Kobayashi Kenji", "kenji@example.jp")
    ops = world.http
    await log_in(ops, world.clock, "ops", world.gym.users["ops"].password)
    page = (await ops.get("/personal-data")).text
    assert 'data-testid="booking-form"' in page
    assert 'data-testid="nav-personal-data"' in page

    copy = await ops.post(
        "/personal-data/bookings", data={"email": "kenji@example.jp", "action": "csv"}
    )
    assert copy.headers["content-disposition"] == 'attachment; filename="bookings.csv"'
    assert "Kobayashi Kenji" in copy.text
    look = await ops.post(
        "/personal-data/bookings", data={"email": "kenji@example.jp", "action": "look"}
    )
    assert 'data-testid="confirm-booking"' in look.text
    assert 'name="expected_bookings" value="1"' in look.text
    assert world.holding("Kobayashi") != {}  # looking deletes nothing
    done = await ops.post(
        "/personal-data/bookings/erase",
        data={"email": "kenji@example.jp", "expected_bookings": "1"},
    )
    assert done.status_code == 303
    page = (await ops.get(done.headers["location"])).text
    assert 'data-testid="flash"' in page
    # what is left: the cancellation mail, queued until it goes out (no SMTP host here)
    assert world.holding("Kobayashi") == {"mail_outbox": 1}
    assert world.holding("kenji@example.jp") == {"mail_outbox": 1}
    rows = re.findall(r'data-testid="log-row" data-action="(\w+)" data-domain="(\w+)"', page)
    assert rows[:2] == [("erasure", "gym"), ("export", "gym")]


async def test_clinic_staff_get_the_patient_half_for_their_clinic_only(world: World) -> None:
    staff = world.http
    await log_in(staff, world.clock, "clinic", world.clinic.users["clinic"].password)
    page = (await staff.get("/personal-data")).text
    assert 'data-testid="booking-form"' not in page
    assert '<option value="clinic-a">' in page
    booking = await staff.post("/personal-data/bookings", data={"email": "a@b.jp", "action": "csv"})
    assert booking.status_code == 403
    card = world.card("Yamada Hanako")
    look = await staff.post(
        "/personal-data/patients", data={"site": SITE, "card": card, "action": "look"}
    )
    assert 'name="expected_appointments" value="1"' in look.text
    elsewhere = await staff.post(
        "/personal-data/patients", data={"site": "clinic-z", "card": card, "action": "json"}
    )
    assert elsewhere.status_code == 404
    done = await staff.post(
        "/personal-data/patients/erase",
        data={"site": SITE, "card": card, "expected_tickets": "0", "expected_appointments": "1"},
    )
    assert done.status_code == 303
    assert world.holding(card) == {}
