"""Notifications and figures through the HTTP API and the pages (SQLite and PostgreSQL):
the status page tells the PIN while it is valid, figures as JSON, CSV and a page, bulk
mail preview/send/log, the one-click score page, no-shows, the outbox page."""

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
from cloud.services import Services
from cloud.settings import CloudSettings
from protocol.clock import ManualClock
from protocol.messages import LockEventData, LockEventKind
from tests.support.cloud import DB_KINDS, basic, fresh_database, log_in
from tests.support.confirm_mail import confirm_by_mail, follow, link_in_inbox
from tests.support.smtp import running_smtp_server
from tests.unit.test_booking_rules import at

NOW = at("2027-01-15 09:00")
TEN, NOON = at("2027-01-15 10:00"), at("2027-01-15 12:00")


@dataclass
class Api:
    app: FastAPI
    http: httpx.AsyncClient
    seed: DemoSeed
    clock: ManualClock

    @property
    def svc(self) -> Services:
        services: Services = self.app.state.services
        return services

    def as_user(self, name: str) -> dict[str, str]:
        return basic(name, self.seed.users[name].api_token)

    async def login(self, name: str) -> None:
        await log_in(self.http, self.app.state.clock, name, self.seed.users[name].password)

    def unlock(self, reservation_id: str, seq: int, when: int) -> None:
        grant = self.svc.reservations.get(reservation_id).grant
        assert grant is not None
        event = LockEventData(
            lock_id=self.seed.lock_id,
            seq=seq,
            lock_ts=when,
            kind=LockEventKind.UNLOCKED,
            grant_id=grant.id,
        )
        assert self.svc.events.ingest(self.seed.site, self.seed.gateway, event)

    async def approved(self, start: int, end: int, **kw: Any) -> dict[str, Any]:
        body = {
            "room_id": self.seed.room_id,
            "name": "Taro",
            "email": "taro@example.jp",
            "group_size": 6,
            "start": start,
            "end": end,
            **kw,
        }
        created = await self.http.post("/api/reservations", json=body)
        assert created.status_code == 201, created.text
        rid = created.json()["id"]
        await confirm_by_mail(self.http, self.app.state.sessions, body["email"], rid)
        ok = await self.http.post(
            f"/api/reservations/{rid}/approve", headers=self.as_user("manager")
        )
        assert ok.status_code == 200, ok.text
        return dict(created.json())


@pytest.fixture(params=DB_KINDS)
async def api(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Api]:
    with fresh_database(request.param, tmp_path) as url:
        settings = CloudSettings(
            database_url=url, secret_key="s" * 40, metrics_token="m" * 32, mqtt_enabled=False
        )
        clock = ManualClock(NOW)
        app = create_app(settings, clock=clock)
        async with app.router.lifespan_context(app):
            with app.state.sessions.begin() as session:
                seed = seed_demo(session)
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(
                transport=transport,
                base_url="http://cloud",
                headers={"Accept-Language": "en"},  # these tests read the English pages
            ) as http:
                yield Api(app, http, seed, clock)


async def test_the_status_page_tells_the_pin_until_its_window_ends(api: Api) -> None:
    booked = await api.approved(TEN, NOON)
    rid, token = booked["id"], booked["access_token"]
    page = await api.http.get(f"/r/{rid}", params={"token": token})
    pin = re.search(r'data-testid="pin">(\d+)<', page.text)
    assert pin is not None
    assert page.headers["cache-control"] == "no-store"
    assert page.headers["referrer-policy"] == "same-origin"  # never to another site
    again = await api.http.get(f"/r/{rid}", params={"token": token})  # a reload
    assert pin.group(1) in again.text
    api.clock.set(NOON + 15 * 60)  # the end of the PIN's window (15 min margin)
    ended = await api.http.get(f"/r/{rid}", params={"token": token})
    assert pin.group(1) not in ended.text
    assert 'data-testid="ended"' in ended.text
    data = await api.http.get(f"/api/reservations/{rid}", params={"token": token})
    assert data.json()["pin"] is None
    assert data.json()["window_end"] == NOON + 15 * 60


async def test_figures_as_json_csv_and_a_page(api: Api) -> None:
    booked = await api.approved(TEN, NOON)
    api.unlock(booked["id"], 1, TEN + 60)
    api.clock.set(at("2027-01-20 09:00"))
    fid = api.seed.facility_id
    query = {"from": "2027-01-01", "to": "2027-01-31"}
    assert (await api.http.get(f"/api/facilities/{fid}/figures", params=query)).status_code == 401
    r = await api.http.get(
        f"/api/facilities/{fid}/figures", params=query, headers=api.as_user("manager")
    )
    assert r.status_code == 200, r.text
    (jan,) = r.json()["months"]
    assert (jan["month"], jan["bookings"], jan["users"], jan["visitors"]) == ("2027-01", 1, 1, 6)
    assert (jan["booked_hours"], jan["no_show_rate"], jan["satisfaction"]) == (2.0, 0.0, None)
    default = await api.http.get(f"/api/facilities/{fid}/figures", headers=api.as_user("ops"))
    assert len(default.json()["months"]) == 12  # the last twelve months
    csv = await api.http.get(
        f"/api/facilities/{fid}/figures.csv", params=query, headers=api.as_user("manager")
    )
    assert csv.headers["content-type"].startswith("text/csv")
    assert "attachment" in csv.headers["content-disposition"]
    assert csv.text.splitlines()[1].startswith(f"{fid},2027-01,2027-01-01,2027-01-31,1,1,6,2.0")
    bad = await api.http.get(
        f"/api/facilities/{fid}/figures",
        params={"from": "2027-02-01", "to": "2027-01-01"},
        headers=api.as_user("manager"),
    )
    assert bad.status_code == 400
    await api.login("manager")
    page = await api.http.get(f"/manage/facilities/{fid}/figures", params=query)
    assert page.status_code == 200
    assert 'data-month="2027-01"' in page.text
    assert "/figures.csv?from=2027-01-01&amp;to=2027-01-31" in page.text


async def test_bulk_mail_through_the_api(api: Api) -> None:
    await api.approved(TEN, NOON)
    fid, manager = api.seed.facility_id, api.as_user("manager")
    body = {"from": "2027-01-15", "to": "2027-01-15", "subject": "Drill", "body": "Closed."}
    preview = await api.http.post(
        f"/api/facilities/{fid}/bulk-mail/preview", json=body, headers=manager
    )
    assert preview.status_code == 200, preview.text
    assert preview.json()["count"] == 1
    assert preview.json()["sample"]["to"] == "taro@example.jp"
    no_key = await api.http.post(f"/api/facilities/{fid}/bulk-mail", json=body, headers=manager)
    assert no_key.status_code == 400
    assert "Idempotency-Key" in no_key.json()["detail"]
    key = {**manager, "Idempotency-Key": "5f0e3c1a-drill-0001"}
    sent = await api.http.post(f"/api/facilities/{fid}/bulk-mail", json=body, headers=key)
    again = await api.http.post(f"/api/facilities/{fid}/bulk-mail", json=body, headers=key)
    assert (sent.status_code, again.status_code) == (201, 200)
    assert again.headers["idempotent-replayed"] == "true"
    assert sent.json()["recipients"] == 1
    log = await api.http.get(f"/api/facilities/{fid}/bulk-mail", headers=manager)
    assert [(m["sent_by"], m["recipients"]) for m in log.json()] == [("manager:manager", 1)]
    ops = await api.http.get(f"/api/facilities/{fid}/bulk-mail", headers=api.as_user("ops"))
    assert ops.status_code == 403
    drill = [m for m in api.svc.mail.messages() if m.subject == "Drill"]
    assert len(drill) == 1


async def test_bulk_mail_page_previews_and_a_double_click_sends_once(api: Api) -> None:
    await api.approved(TEN, NOON)
    await api.login("manager")
    fid = api.seed.facility_id
    form = {"from": "2027-01-15", "to": "2027-01-16", "subject": "Drill", "body": "Closed."}
    preview = await api.http.post(f"/manage/facilities/{fid}/mail/preview", data=form)
    assert preview.status_code == 200
    assert 'data-testid="bulk-count">1<' in preview.text
    assert "Dear Taro," in preview.text
    key = re.search(r'name="submit_key" value="([^"]+)"', preview.text)
    assert key is not None
    send = {**form, "submit_key": key.group(1)}
    for _ in range(2):
        done = await api.http.post(f"/manage/facilities/{fid}/mail/send", data=send)
        assert done.status_code == 303
    page = await api.http.get(done.headers["location"])
    assert "was sent already" in page.text
    assert page.text.count('data-testid="bulk-log-row"') == 1
    assert len([m for m in api.svc.mail.messages() if m.subject == "Drill"]) == 1


async def test_the_score_page_records_one_score(api: Api) -> None:
    booked = await api.approved(TEN, NOON)
    api.unlock(booked["id"], 1, TEN + 60)
    api.clock.set(NOON + 2 * 3600)
    api.svc.notifications.run_due()
    (survey,) = [m for m in api.svc.mail.messages() if "feedback" in m.body]
    link = re.search(r"http://127\.0\.0\.1:8000(/feedback/\S+)", survey.body)
    assert link is not None
    page = await api.http.get(link.group(1))
    assert page.status_code == 200
    assert 'data-testid="score-5"' in page.text
    sig = link.group(1).split("sig=")[1]
    scored = await api.http.post(f"/feedback/{booked['id']}", data={"sig": sig, "score": "5"})
    assert scored.status_code == 200
    assert "Your score: <strong>5</strong>" in scored.text
    twice = await api.http.post(f"/feedback/{booked['id']}", data={"sig": sig, "score": "1"})
    assert twice.status_code == 409
    forged = await api.http.get(f"/feedback/{booked['id']}", params={"sig": "0" * 32})
    assert forged.status_code == 404


async def test_no_shows_are_listed(api: Api) -> None:
    booked = await api.approved(TEN, NOON)
    api.clock.set(NOON + 60)
    api.svc.notifications.run_due()
    fid = api.seed.facility_id
    r = await api.http.get(f"/api/facilities/{fid}/no-shows", headers=api.as_user("manager"))
    assert [(n["reservation_id"], n["name"]) for n in r.json()] == [(booked["id"], "Taro")]


async def test_the_outbox_page_says_there_is_no_smtp(api: Api) -> None:
    await api.approved(TEN, NOON)
    await api.login("ops")
    page = await api.http.get("/mail")
    assert 'data-testid="smtp-off"' in page.text
    assert 'data-mail-state="queued"' in page.text
    assert "PIN: [" in page.text  # the demo's mailbox shows bodies, but never a PIN


async def test_the_app_delivers_queued_mail_by_itself_when_smtp_is_set(tmp_path: Path) -> None:
    with running_smtp_server() as smtp:
        settings = CloudSettings(
            database_url=f"sqlite:///{tmp_path}/t.db",
            secret_key="s" * 40,
            metrics_token="m" * 32,
            mqtt_enabled=False,
            smtp_host="127.0.0.1",
            smtp_port=smtp.port,
            smtp_starttls=False,
            mail_poll_s=0.05,
        )
        app = create_app(settings, clock=ManualClock(NOW))
        async with app.router.lifespan_context(app):
            with app.state.sessions.begin() as session:
                seed = seed_demo(session)
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://cloud") as http:
                body = {"room_id": seed.room_id, "name": "Taro", "email": "taro@example.jp"}
                r = await http.post("/api/reservations", json={**body, "start": TEN, "end": NOON})
                assert r.status_code == 201
                # the mail-delivery task polls every 50 ms; wait (bounded) for its pass
                assert await asyncio.to_thread(smtp.inbox.received.wait, 10)
                (ask,) = smtp.inbox.messages
                assert ask["To"] == "taro@example.jp"
                assert "Please confirm your booking" in ask["Subject"]
                smtp.inbox.received.clear()
                link = link_in_inbox(smtp.inbox, "taro@example.jp", r.json()["id"])
                assert (await follow(http, link)).status_code == 200
                assert await asyncio.to_thread(smtp.inbox.received.wait, 10)
                mail = smtp.inbox.messages[1]
                assert mail["Subject"].startswith("Booking received")
                await log_in(http, app.state.clock, "ops", seed.ops.password)
                page = await http.get("/mail")
                assert 'data-testid="smtp-on"' in page.text
                assert "mail-body" not in page.text  # bodies can hold a PIN
