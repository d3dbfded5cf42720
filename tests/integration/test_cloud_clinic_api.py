"""The clinic's HTTP API on SQLite and PostgreSQL: the patient's check-in and status link,
staff actions and their errors, imports, roles, and city announcements to every clinic or
chosen ones, cleared at expiry."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from cloud.app import create_app
from cloud.bootstrap import ClinicSeed, seed_clinic
from cloud.clinic.services import ClinicServices
from cloud.core.models import Role
from cloud.settings import CloudSettings
from protocol.clock import ManualClock
from protocol.patient_card import PatientCardNumber
from tests.support.clinic import MIN, NINE, card_qr
from tests.support.cloud import DB_KINDS, basic, fresh_database, log_in

SITE = "clinic-a"


@dataclass
class Api:
    app: FastAPI
    http: httpx.AsyncClient
    clock: ManualClock
    seed: ClinicSeed
    other: ClinicSeed

    @property
    def clinic(self) -> ClinicServices:
        svc: ClinicServices = self.app.state.clinic
        return svc

    def as_user(self, name: str) -> dict[str, str]:
        for seed in (self.seed, self.other):
            if name in seed.users:
                return basic(name, seed.users[name].api_token)
        raise KeyError(name)

    def card(self, name: str) -> str:
        return next(p.card for p in self.seed.patients if p.name == name)

    async def check_in(self, card: str) -> httpx.Response:
        """The patient's app: the QR code printed on ``card``, as the phone sends it."""
        qr = card_qr(self.app.state.settings, SITE, card)
        return await self.http.post("/api/clinic/checkin", json={"qr": qr, "site": SITE})

    async def post(self, url: str, user: str = "clinic", **kw: Any) -> httpx.Response:
        return await self.http.post(url, headers=self.as_user(user), **kw)

    async def act(self, number: str, action: str, **body: str) -> httpx.Response:
        return await self.post(f"/api/clinic/sites/{SITE}/tickets/{number}/{action}", json=body)

    async def call_next(self, room: str) -> httpx.Response:
        return await self.post(f"/api/clinic/sites/{SITE}/rooms/{room}/call-next")


@pytest.fixture(params=DB_KINDS)
async def api(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Api]:
    with fresh_database(request.param, tmp_path) as url:
        settings = CloudSettings(
            database_url=url, secret_key="s" * 40, metrics_token="m" * 32, mqtt_enabled=False
        )
        clock = ManualClock(NINE)
        app = create_app(settings, clock=clock)
        async with app.router.lifespan_context(app):
            with app.state.sessions.begin() as session:
                users = {"clinic": Role.CLINIC, "ops": Role.OPS, "gym": Role.MANAGER}
                seed = seed_clinic(session, users=users, clock=clock)
                other = seed_clinic(
                    session, site="clinic-b", displays=("clinic-b-disp-1",), users={}, clock=clock
                )
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://cloud") as http:
                yield Api(app, http, clock, seed, other)


async def test_the_app_checks_in_with_the_card_and_follows_the_status_link(api: Api) -> None:
    card = api.card("Tanaka Yuki")
    r = await api.check_in(card)
    assert r.status_code == 200, r.text
    first = r.json()
    assert {k: first[k] for k in ("number", "department", "ahead", "existing")} == {
        "number": "A-001",
        "department": "internal",
        "ahead": 0,
        "existing": False,
    }
    again = (await api.check_in(card)).json()
    assert (again["number"], again["existing"], again["status_url"]) == (
        "A-001",
        True,
        first["status_url"],
    )
    ken = await api.check_in(api.card("Sato Ken"))
    assert (ken.json()["ahead"], ken.json()["estimated_wait_min"]) == (1, 5)
    path = httpx.URL(ken.json()["status_url"]).path
    status = (await api.http.get(path)).json()
    assert (status["number"], status["state"], status["ahead"]) == ("A-002", "waiting", 1)
    assert "Sato" not in str(status)
    assert api.card("Sato Ken") not in str(status)
    await api.call_next("1")
    assert (await api.call_next("2")).json()["number"] == "A-002"
    status = (await api.http.get(path)).json()
    assert (status["state"], status["room"], status["ahead"]) == ("called", "2", 0)
    unknown = await api.check_in(PatientCardNumber.issue(3, 99).digits)
    assert unknown.status_code == 404
    assert unknown.json()["detail"].endswith("or please see reception.")
    early = await api.check_in(api.card("Suzuki Taro"))
    assert early.status_code == 409
    assert early.json()["detail"].startswith("check-in for your 11:00 appointment opens at 10:30")
    assert (await api.http.get("/api/clinic/tickets/nope")).status_code == 404


async def test_staff_actions_through_the_api_and_their_errors(api: Api) -> None:
    for _ in range(3):
        r = await api.post(f"/api/clinic/sites/{SITE}/checkins", json={})
        assert r.status_code == 200, r.text
    urgent = await api.post(
        f"/api/clinic/sites/{SITE}/checkins", json={"department": "internal", "urgent": True}
    )
    assert urgent.json()["number"] == "A-004"
    called = (await api.call_next("1")).json()
    assert (called["number"], called["state"], called["room"], called["call_seq"]) == (
        "A-004",
        "called",
        "1",
        1,
    )
    busy = await api.call_next("1")
    assert busy.status_code == 409
    assert busy.json()["detail"] == (
        "room 1 still has A-004 called: mark it done, no-show, skip or transfer it first"
    )
    recalled = (await api.act("A-004", "recall")).json()
    assert (recalled["state"], recalled["call_seq"]) == ("called", 2)
    done_early = await api.act("A-004", "done")
    assert done_early.status_code == 409
    assert done_early.json()["detail"] == (
        "cannot done: ticket A-004 is called; allowed there: recall, start, skip, no_show, transfer"
    )
    assert (await api.act("A-004", "start")).json()["state"] == "in_room"
    assert (await api.act("A-004", "done")).json()["state"] == "done"
    chosen = (await api.act("A-003", "call", room="2")).json()
    assert (chosen["number"], chosen["room"]) == ("A-003", "2")
    assert (await api.act("A-003", "skip")).json()["state"] == "skipped"
    assert (await api.act("A-003", "no_show")).json()["state"] == "no_show"
    moved = (await api.act("A-001", "transfer", to_room="3")).json()
    assert (moved["department"], moved["state"]) == ("pediatrics", "waiting")
    peds = (await api.call_next("3")).json()
    assert peds["number"] == "A-001"  # keeps its number in pediatrics
    errors = {
        "unknown ticket": (await api.act("A-099", "start"), 404, "no ticket A-099 at clinic-a"),
        "unknown room": (await api.call_next("9"), 400, "room 9 is not a room of clinic-a"),
        "wrong room": (await api.act("A-002", "call", room="3"), 400, "room 3 is not open in"),
        "no target": (await api.act("A-002", "transfer"), 400, "say where A-002 goes"),
        "call_next here": (await api.act("A-002", "call_next"), 400, "call the next patient"),
        "bad action": (await api.act("A-002", "dance"), 422, "action"),
    }
    for name, (r, code, text) in errors.items():
        assert (r.status_code, text in r.json()["detail"]) == (code, True), (name, r.text)
    view = (
        await api.http.get(
            f"/api/clinic/sites/{SITE}/departments/internal/queue", headers=api.as_user("ops")
        )
    ).json()
    assert [w["number"] for w in view["waiting"]] == ["A-002"]
    assert [(o["number"], o["state"]) for o in view["others"]] == [
        ("A-003", "no_show"),
        ("A-004", "done"),
    ]
    log = await api.http.get(f"/api/clinic/sites/{SITE}/actions", headers=api.as_user("clinic"))
    assert [(e["action"], e["number"]) for e in log.json()][:3] == [
        ("call_next", "A-004"),
        ("recall", "A-004"),
        ("start", "A-004"),
    ]
    assert {e["actor"] for e in log.json()} == {"clinic:clinic"}
    figures = (
        await api.http.get(f"/api/clinic/sites/{SITE}/figures", headers=api.as_user("clinic"))
    ).json()
    internal = next(d for d in figures["departments"] if d["department"] == "internal")
    assert (internal["done"], internal["no_shows"], internal["no_show_rate"]) == (1, 1, 0.5)
    # roles: a gym manager and an anonymous caller are refused
    gym = await api.post(f"/api/clinic/sites/{SITE}/rooms/2/call-next", user="gym")
    assert gym.status_code == 403
    anonymous = await api.http.post(f"/api/clinic/sites/{SITE}/rooms/2/call-next")
    assert anonymous.status_code == 401


async def test_imports_through_the_api_are_idempotent(api: Api) -> None:
    card = PatientCardNumber.issue(4, 31337).digits
    patients = {"patients": [{"card": card, "name": "Mori Aoi", "email": "aoi@example.jp"}]}
    assert (await api.post("/api/clinic/patients", json=patients)).status_code == 403
    assert (await api.post("/api/clinic/patients", json=patients, user="ops")).json() == {
        "created": 1,
        "updated": 0,
        "unchanged": 0,
    }
    visit = {
        "external_id": "rx-1",
        "card": card,
        "site": SITE,
        "department": "pediatrics",
        "at": "2027-01-15T09:10:00+09:00",
    }
    body = {"source": "his-east", "appointments": [visit]}
    assert (await api.post("/api/clinic/appointments", json=body, user="ops")).json()[
        "created"
    ] == 1
    assert (await api.post("/api/clinic/appointments", json=body)).json()["unchanged"] == 1
    aoi = await api.check_in(card)
    assert (aoi.json()["number"], aoi.json()["appointment_at"]) == ("B-001", NINE + 10 * MIN)
    bad = {"source": "his-east", "appointments": [{**visit, "card": card[:-1] + "0"}]}
    refused = await api.post("/api/clinic/appointments", json=bad)
    assert refused.status_code == 400
    assert card[:-1] not in refused.text
    gym = await api.post("/api/clinic/patients", json=patients, user="gym")
    assert gym.status_code == 403


async def test_announcements_reach_every_clinic_or_chosen_ones_and_clear_at_expiry(
    api: Api,
) -> None:
    def shown() -> dict[str, tuple[str, str]]:
        out = {}
        for site in (SITE, "clinic-b"):
            (content,) = api.clinic.publisher.documents(site).display.displays
            out[site] = (content.announcement.text, content.announcement.level.value)
        return out

    everyone = {"text": "本日は午後休診です", "expires_at": int(NINE + 3600)}
    r = await api.post("/api/clinic/announcements", json=everyone, user="ops")
    assert r.status_code == 201, r.text
    assert shown() == {
        SITE: ("本日は午後休診です", "info"),
        "clinic-b": ("本日は午後休診です", "info"),
    }
    quake = {
        "text": "地震情報: 落ち着いて行動してください",
        "level": "urgent",
        "expires_at": int(NINE + 600),
        "sites": ["clinic-b"],
    }
    r = await api.post("/api/clinic/announcements", json=quake, user="ops")
    assert r.status_code == 201, r.text
    assert shown() == {
        SITE: ("本日は午後休診です", "info"),
        "clinic-b": ("地震情報: 落ち着いて行動してください", "urgent"),
    }
    (content,) = api.clinic.publisher.documents("clinic-b").display.displays
    assert content.announcement.expires_at == int(NINE + 600)  # the display clears it too
    jobs = api.app.state.clinic_jobs
    api.clock.set(NINE + 600)
    assert jobs.run_due().expired == 1
    assert shown()["clinic-b"] == ("本日は午後休診です", "info")
    assert jobs.run_due().expired == 0
    listed = (await api.http.get("/api/clinic/announcements", headers=api.as_user("ops"))).json()
    assert [a["text"] for a in listed] == ["本日は午後休診です"]
    cleared = await api.http.delete(
        f"/api/clinic/announcements/{listed[0]['id']}", headers=api.as_user("ops")
    )
    assert cleared.status_code == 200
    assert shown() == {SITE: ("", "info"), "clinic-b": ("", "info")}
    too_long = {"text": "あ" * 81, "expires_at": int(NINE + 3600)}
    r = await api.post("/api/clinic/announcements", json=too_long, user="ops")
    assert (r.status_code, r.json()["detail"].startswith("the display cannot show")) == (400, True)
    nowhere = {**everyone, "sites": ["clinic-z"]}
    r = await api.post("/api/clinic/announcements", json=nowhere, user="ops")
    assert (r.status_code, r.json()["detail"]) == (404, "no clinic at clinic-z")
    past = {**everyone, "expires_at": int(NINE)}
    assert (await api.post("/api/clinic/announcements", json=past, user="ops")).status_code == 400
    staff = await api.post("/api/clinic/announcements", json=everyone, user="clinic")
    assert staff.status_code == 403


async def test_clinic_staff_of_another_department_neither_see_nor_act_at_the_clinic(
    api: Api,
) -> None:
    # clinic-b moves to the welfare department, whose desk is desk-w; clinic-a stays health's
    svc = api.app.state.services
    desk, password = svc.users.create("desk-w", Role.CLINIC)
    sites = api.app.state.fleet.services.sites
    sites.put_department("welfare", "Welfare Department", "ops")
    sites.add_member("welfare", "desk-w", "ops")
    sites.put_site("clinic-b", actor="ops", department="welfare")
    waiting = await api.post(f"/api/clinic/sites/{SITE}/checkins", json={})
    assert waiting.json()["number"] == "A-001"
    other = basic("desk-w", svc.api_tokens.create(desk, "desk-w's script"))  # second factor role

    listed = await api.http.get("/api/clinic/sites", headers=other)
    assert [c["site"] for c in listed.json()] == ["clinic-b"]
    queue = "/departments/internal/queue"
    for method, path in (
        ("GET", ""),
        ("GET", queue),
        ("GET", "/figures"),
        ("GET", "/actions"),
        ("POST", "/rooms/1/call-next"),
        ("POST", "/tickets/A-001/call"),
        ("POST", "/checkins"),
    ):
        kw: dict[str, Any] = {"json": {}} if method == "POST" else {}
        r = await api.http.request(method, f"/api/clinic/sites/{SITE}{path}", headers=other, **kw)
        missing = await api.http.request(
            method, f"/api/clinic/sites/clinic-z{path}", headers=other, **kw
        )
        assert (r.status_code, r.json()["detail"]) == (
            404,
            missing.json()["detail"].replace("clinic-z", SITE),
        ), path
    visit = {"external_id": "w-1", "card": api.card("Sato Ken"), "site": SITE}
    visit |= {"department": "internal", "at": NINE + 30 * MIN}
    r = await api.http.post(
        "/api/clinic/appointments",
        json={"source": "his-w", "appointments": [visit]},
        headers=other,
    )
    assert r.status_code == 404
    assert (await api.http.get(f"/api/clinic/sites/clinic-b{queue}", headers=other)).is_success

    transport = httpx.ASGITransport(app=api.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://cloud") as desk:
        await log_in(desk, api.app.state.clock, "desk-w", password)
        assert f"/clinic/{SITE}/" not in (await desk.get("/clinic")).text
        for path in ("/staff?department=internal&room=1", "/figures", "/figures.csv"):
            assert (await desk.get(f"/clinic/{SITE}{path}")).status_code == 404, path
        form = {"department": "internal", "room": "1"}
        r = await desk.post(f"/clinic/{SITE}/staff/call-next", data=form)
        assert r.status_code == 404

    # nothing was called; the clinic's own staff still call, read the queue and figures
    assert (await api.call_next("1")).json()["number"] == "A-001"
    for path in (queue, "/figures"):
        r = await api.http.get(f"/api/clinic/sites/{SITE}{path}", headers=api.as_user("clinic"))
        assert r.status_code == 200, path
    r = await api.http.get(f"/api/clinic/sites/clinic-b{queue}", headers=api.as_user("clinic"))
    assert r.status_code == 404  # clinic-b is the welfare department's now
