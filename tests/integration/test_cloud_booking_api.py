"""Booking through the HTTP API and the pages, on SQLite and PostgreSQL: availability,
rule errors, the concurrent race, Idempotency-Key, confirmation from the mail,
cancellation, payment, rules editing."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from cloud.app import create_app
from cloud.bootstrap import DemoSeed, seed_demo
from cloud.settings import CloudSettings
from protocol.clock import ManualClock
from tests.support.cloud import DB_KINDS, basic, fresh_database, log_in
from tests.support.confirm_mail import confirm_by_mail
from tests.unit.test_booking_rules import at

NOW = at("2027-01-15 09:00")
TEN, ELEVEN, NOON = at("2027-01-15 10:00"), at("2027-01-15 11:00"), at("2027-01-15 12:00")


@dataclass
class Api:
    app: FastAPI
    http: httpx.AsyncClient
    seed: DemoSeed

    def as_user(self, name: str) -> dict[str, str]:
        return basic(name, self.seed.users[name].api_token)

    def body(self, **kw: Any) -> dict[str, Any]:
        base = {
            "room_id": self.seed.room_id,
            "name": "Taro",
            "email": "taro@example.jp",
            "group_size": 8,
            "purpose": "badminton",
            "start": TEN,
            "end": NOON,
        }
        return {**base, **kw}

    async def book(self, **kw: Any) -> dict[str, Any]:
        """Book and confirm from the mail, as the citizen does; the booking as created."""
        body = self.body(**kw)
        created = await self.http.post("/api/reservations", json=body)
        assert created.status_code == 201, created.text
        booked: dict[str, Any] = created.json()
        await confirm_by_mail(self.http, self.app.state.sessions, body["email"], booked["id"])
        return booked


@pytest.fixture(params=DB_KINDS)
async def api(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Api]:
    with fresh_database(request.param, tmp_path) as url:
        settings = CloudSettings(
            database_url=url, secret_key="s" * 40, metrics_token="m" * 32, mqtt_enabled=False
        )
        app = create_app(settings, clock=ManualClock(NOW))
        async with app.router.lifespan_context(app):
            with app.state.sessions.begin() as session:
                seed = seed_demo(session)
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(
                transport=transport,
                base_url="http://cloud",
                headers={"Accept-Language": "en"},  # these tests read the English pages
            ) as http:
                yield Api(app, http, seed)


async def test_availability_lists_free_and_taken_times_in_tokyo(api: Api) -> None:
    r = await api.http.post("/api/reservations", json=api.body())
    assert r.status_code == 201, r.text
    fid = api.seed.facility_id
    day = await api.http.get(f"/api/facilities/{fid}/availability", params={"date": "2027-01-15"})
    assert day.status_code == 200, day.text
    data = day.json()
    assert (data["timezone"], data["open"], data["opens_local"], data["closes_local"]) == (
        "Asia/Tokyo",
        True,
        "00:00",
        "24:00",
    )
    (room,) = data["rooms"]
    assert [(s["start_local"], s["end_local"], s["state"]) for s in room["slots"]] == [
        ("00:00", "09:00", "unavailable"),
        ("09:00", "10:00", "free"),
        ("10:00", "12:00", "taken"),
        ("12:00", "24:00", "free"),
    ]
    assert "Taro" not in day.text
    bad = await api.http.get(f"/api/facilities/{fid}/availability", params={"date": "15/01"})
    assert bad.status_code == 422
    missing = await api.http.get("/api/facilities/99/availability", params={"date": "2027-01-15"})
    assert missing.status_code == 404


async def test_a_booking_answers_with_its_fee_and_payment(api: Api) -> None:
    r = await api.http.post("/api/reservations", json=api.body())
    created = r.json()
    assert (created["fee_yen"], created["payment_state"], created["decided_by"]) == (
        1200,
        "unpaid",
        None,
    )
    assert "\u00a51,200 at the counter" in created["payment_instructions"]
    staff = await api.http.get("/api/reservations", headers=api.as_user("manager"))
    (row,) = staff.json()
    assert (row["room"], row["group_size"], row["purpose"]) == ("Main hall", 8, "badminton")


async def test_rule_errors_are_4xx_with_what_to_do(api: Api) -> None:
    r = await api.http.post("/api/reservations", json=api.body(end=TEN + 600))
    assert r.status_code == 400
    assert "at least 30 minutes: pick a later end time" in r.json()["detail"]
    r = await api.http.post("/api/reservations", json=api.body(room_id=None))
    assert r.status_code == 400
    assert "give room_id" in r.json()["detail"]
    r = await api.http.post("/api/reservations", json=api.body(group_size=0))
    assert r.status_code == 422


async def test_ten_concurrent_requests_for_one_slot_make_one_booking(api: Api) -> None:
    bodies = [api.body(name=f"c{i}", email=f"c{i}@example.jp") for i in range(10)]
    answers = await asyncio.gather(*(api.http.post("/api/reservations", json=b) for b in bodies))
    codes = sorted(a.status_code for a in answers)
    assert codes == [201] + [409] * 9
    for a in answers:
        if a.status_code == 409:
            assert "overlaps an unconfirmed booking of Main hall" in a.json()["detail"]
            assert "pick another time" in a.json()["detail"]
    staff = await api.http.get("/api/reservations", headers=api.as_user("manager"))
    assert len(staff.json()) == 1


async def test_idempotency_key_makes_a_retry_safe(api: Api) -> None:
    key = {"Idempotency-Key": "0b5e7c1c-9d1f-4f9b-a2a4-4e2f0c7a1d11"}
    first = await api.http.post("/api/reservations", json=api.body(), headers=key)
    again = await api.http.post("/api/reservations", json=api.body(), headers=key)
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert again.json()["id"] == first.json()["id"]
    other = await api.http.post(
        "/api/reservations", json=api.body(start=NOON, end=NOON + 3600), headers=key
    )
    assert other.status_code == 409
    assert "send a new key" in other.json()["detail"]
    bad = await api.http.post(
        "/api/reservations", json=api.body(), headers={"Idempotency-Key": "x"}
    )
    assert bad.status_code == 400
    # without a key the retry is refused and told it is the citizen's own booking
    dup = await api.http.post("/api/reservations", json=api.body(start=NOON, end=NOON + 3600))
    assert dup.status_code == 201
    dup = await api.http.post("/api/reservations", json=api.body(start=NOON, end=NOON + 3600))
    assert dup.status_code == 409
    assert "you booked Main hall" in dup.json()["detail"]


async def _approved(api: Api) -> dict[str, Any]:
    created = await api.book()
    r = await api.http.post(
        f"/api/reservations/{created['id']}/approve", headers=api.as_user("manager")
    )
    assert r.status_code == 200, r.text
    assert r.json()["decided_by"] == "manager:manager"
    return created


def _grants(api: Api) -> list[str]:
    snap = api.app.state.services.access.snapshot(api.seed.site, api.seed.gateway)
    return [g.grant_id for lock in snap.locks for g in lock.grants]


async def test_the_citizen_cancels_through_the_api_and_the_pin_is_revoked(api: Api) -> None:
    created = await _approved(api)
    assert len(_grants(api)) == 1
    url = f"/api/reservations/{created['id']}/cancel"
    anonymous = await api.http.post(url, json={"reason": "ill"})
    assert anonymous.status_code == 401
    wrong = await api.http.post(url, json={"reason": "ill", "token": "nope"})
    assert wrong.status_code == 404
    r = await api.http.post(url, json={"reason": "ill", "token": created["access_token"]})
    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["cancelled_by"]) == ("cancelled", "citizen")
    assert _grants(api) == []
    status = await api.http.get(
        f"/api/reservations/{created['id']}", params={"token": created["access_token"]}
    )
    assert (status.json()["pin"], status.json()["cancel_reason"]) == (None, "ill")
    again = await api.http.post(url, json={"reason": "ill", "token": created["access_token"]})
    assert again.status_code == 409


async def test_the_manager_marks_paid_and_a_cancel_refunds(api: Api) -> None:
    created = await _approved(api)
    paid_url = f"/api/reservations/{created['id']}/payment/paid"
    assert (await api.http.post(paid_url, headers=api.as_user("ops"))).status_code == 403
    r = await api.http.post(paid_url, headers=api.as_user("manager"))
    assert r.json()["payment_state"] == "paid"
    twice = await api.http.post(paid_url, headers=api.as_user("manager"))
    assert twice.status_code == 409
    assert "is paid already" in twice.json()["detail"]
    r = await api.http.post(
        f"/api/reservations/{created['id']}/cancel",
        json={"reason": "gym closed for repairs"},
        headers=api.as_user("manager"),
    )
    assert r.status_code == 200, r.text
    assert (r.json()["payment_state"], r.json()["cancelled_by"]) == ("refunded", "manager:manager")
    assert _grants(api) == []


async def test_staff_edit_rules_hours_closed_days_and_groups(api: Api) -> None:
    fid = api.seed.facility_id
    rules = {
        "hourly_fee_yen": 800,
        "min_booking_minutes": 60,
        "max_booking_minutes": 120,
        "lead_time_minutes": 0,
        "horizon_days": 60,
        "off_peak_from": "09:00",
        "off_peak_until": "16:00",
    }
    assert (await api.http.put(f"/api/facilities/{fid}/rules", json=rules)).status_code == 401
    r = await api.http.put(f"/api/facilities/{fid}/rules", json=rules, headers=api.as_user("ops"))
    assert r.status_code == 200, r.text
    assert (r.json()["hourly_fee_yen"], r.json()["off_peak_until"]) == (800, "16:00")
    bad = {**rules, "off_peak_from": "9 am"}
    r = await api.http.put(f"/api/facilities/{fid}/rules", json=bad, headers=api.as_user("ops"))
    assert r.status_code == 400
    assert "write it as HH:MM" in r.json()["detail"]
    hours = {"hours": [{"weekday": d, "opens": "09:00", "closes": "21:00"} for d in range(5)]}
    r = await api.http.put(
        f"/api/facilities/{fid}/hours", json=hours, headers=api.as_user("manager")
    )
    assert len(r.json()["hours"]) == 5
    r = await api.http.post(
        f"/api/facilities/{fid}/closed-days",
        json={"day": "2027-01-18", "reason": "disaster drill"},
        headers=api.as_user("manager"),
    )
    assert r.status_code == 201
    public = (await api.http.get(f"/api/facilities/{fid}/rules")).json()
    assert public["closed_days"] == [{"day": "2027-01-18", "reason": "disaster drill"}]
    r = await api.http.post(
        "/api/reservations", json=api.body(start=at("2027-01-18 10:00"), end=at("2027-01-18 11:00"))
    )
    assert "closed on 2027-01-18 (disaster drill)" in r.json()["detail"]
    r = await api.http.post(
        "/api/reservations", json=api.body(start=at("2027-01-16 10:00"), end=at("2027-01-16 11:00"))
    )
    assert "closed on Saturdays" in r.json()["detail"]
    # off peak (Friday 10-12) is approved by itself once confirmed, at the new fee
    booked = await api.book()
    r = await api.http.get(
        f"/api/reservations/{booked['id']}", params={"token": booked["access_token"]}
    )
    assert (r.json()["status"], booked["fee_yen"]) == ("approved", 1600)
    assert r.json()["pin"]
    group = await api.http.post(
        f"/api/facilities/{fid}/groups",
        json={"name": "Kaike VC", "email": "club@example.jp"},
        headers=api.as_user("manager"),
    )
    assert group.status_code == 201
    assert (await api.http.get(f"/api/facilities/{fid}/groups")).status_code == 401
    club = await api.book(
        email="club@example.jp", start=at("2027-01-15 18:00"), end=at("2027-01-15 19:00")
    )
    staff = await api.http.get("/api/reservations", headers=api.as_user("manager"))
    decided = {row["id"]: row["decided_by"] for row in staff.json()}
    assert decided[club["id"]] == "rule:registered-group:Kaike VC"
    gone = await api.http.delete(
        f"/api/facilities/{fid}/groups/{group.json()['id']}", headers=api.as_user("manager")
    )
    assert gone.status_code == 204


async def test_rooms_and_room_locks_through_the_api(api: Api) -> None:
    fid = api.seed.facility_id
    ops = api.as_user("ops")
    room = await api.http.post(
        f"/api/facilities/{fid}/rooms", json={"name": "Dojo", "capacity": 30}, headers=ops
    )
    assert room.status_code == 201, room.text
    dup = await api.http.post(f"/api/facilities/{fid}/rooms", json={"name": "Dojo"}, headers=ops)
    assert dup.status_code == 409
    rid = room.json()["id"]
    lock = await api.http.post(
        f"/api/facilities/{fid}/locks", json={"lock_id": "gym-a-dojo", "room_id": rid}, headers=ops
    )
    assert lock.json()["room_id"] == rid
    facility = (await api.http.get(f"/api/facilities/{fid}")).json()
    rooms = {r["name"]: r["locks"] for r in facility["rooms"]}
    assert rooms == {"Main hall": ["gym-a-1"], "Dojo": ["gym-a-1", "gym-a-dojo"]}
    # the entrance now serves two rooms: booking by its lock id asks for a room
    r = await api.http.post("/api/reservations", json=api.body(room_id=None, lock_id="gym-a-1"))
    assert r.status_code == 400
    assert "book by room_id instead" in r.json()["detail"]


async def test_pages_book_with_availability_then_cancel_from_the_status_page(api: Api) -> None:
    page = await api.http.get("/book", params={"room_id": api.seed.room_id, "date": "2027-01-15"})
    assert page.status_code == 200
    assert 'data-testid="availability"' in page.text
    assert "\u00a5600 per hour" in page.text
    key = re.search(r'name="idempotency_key" value="([^"]+)"', page.text)
    assert key is not None
    form = {
        "room_id": str(api.seed.room_id),
        "name": "Hanako",
        "email": "h@example.jp",
        "group_size": "4",
        "purpose": "table tennis",
        "day": "2027-01-15",
        "start": "13:00",
        "hours": "1.5",
        "idempotency_key": key.group(1),
    }
    first = await api.http.post("/book", data=form)
    second = await api.http.post("/book", data=form)  # a double click
    assert first.status_code == second.status_code == 303
    assert first.headers["location"] == second.headers["location"]
    status = await api.http.get(first.headers["location"])
    assert "\u00a5900" in status.text
    assert 'data-testid="check-mail"' in status.text
    assert "we sent a link to h@example.jp" in status.text
    assert 'data-testid="cancel-submit"' in status.text
    taken = await api.http.get("/book", params={"room_id": api.seed.room_id, "date": "2027-01-15"})
    assert "13:00\u201314:30" in taken.text
    token = first.headers["location"].split("token=")[1]
    rid = first.headers["location"].split("/r/")[1].split("?")[0]
    r = await api.http.post(f"/r/{rid}/cancel", data={"token": token, "reason": "rain"})
    assert r.status_code == 303
    cancelled = await api.http.get(r.headers["location"])
    assert 'data-testid="cancelled"' in cancelled.text
    assert "Your booking is cancelled." in cancelled.text


async def test_manage_page_marks_paid_and_cancels(api: Api) -> None:
    created = await _approved(api)
    rid = created["id"]
    await log_in(api.http, api.app.state.clock, "manager", api.seed.manager.password)
    page = await api.http.get("/manage")
    assert f'data-testid="paid-{rid}"' in page.text
    r = await api.http.post(f"/manage/{rid}/paid")
    assert "Paid: Taro" in (await api.http.get(r.headers["location"])).text
    r = await api.http.post(f"/manage/{rid}/cancel", data={"reason": ""})
    assert "give a reason" in (await api.http.get(r.headers["location"])).text
    r = await api.http.post(f"/manage/{rid}/cancel", data={"reason": "drill"})
    page = await api.http.get(r.headers["location"])
    assert "Cancelled: Taro" in page.text
    assert 'data-testid="no-upcoming"' in page.text


async def test_staff_edit_the_rules_on_the_facility_page(api: Api) -> None:
    fid = api.seed.facility_id
    assert (await api.http.get(f"/manage/facilities/{fid}")).status_code == 303  # to login
    await log_in(api.http, api.app.state.clock, "ops", api.seed.ops.password)
    page = await api.http.get(f"/manage/facilities/{fid}")
    assert 'data-testid="rules-form"' in page.text
    rules = {
        "hourly_fee_yen": "900",
        "min_booking_minutes": "60",
        "max_booking_minutes": "120",
        "lead_time_minutes": "30",
        "horizon_days": "14",
        "off_peak": "09:00-15:00",
    }
    r = await api.http.post(f"/manage/facilities/{fid}/rules", data=rules)
    assert "Rules saved" in (await api.http.get(r.headers["location"])).text
    bad = await api.http.post(f"/manage/facilities/{fid}/rules", data={**rules, "off_peak": "9"})
    assert "write it as HH:MM" in (await api.http.get(bad.headers["location"])).text
    week = {f"opens-{d}": "08:00" for d in range(5)} | {f"closes-{d}": "22:00" for d in range(5)}
    await api.http.post(f"/manage/facilities/{fid}/hours", data=week)
    await api.http.post(
        f"/manage/facilities/{fid}/closed-days", data={"day": "2027-01-19", "reason": "exams"}
    )
    await api.http.post(
        f"/manage/facilities/{fid}/groups", data={"name": "Club", "email": "c@example.jp"}
    )
    saved = (await api.http.get(f"/api/facilities/{fid}/rules")).json()
    assert (saved["hourly_fee_yen"], saved["off_peak_from"], saved["lead_time_minutes"]) == (
        900,
        "09:00",
        30,
    )
    assert [h["weekday"] for h in saved["hours"]] == [0, 1, 2, 3, 4]
    assert saved["closed_days"] == [{"day": "2027-01-19", "reason": "exams"}]
    page = await api.http.get(f"/manage/facilities/{fid}")
    assert "Club &lt;c@example.jp&gt;" in page.text
