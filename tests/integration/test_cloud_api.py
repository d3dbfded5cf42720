"""The HTTP API and the pages, through the ASGI app with its lifespan (MQTT off)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from cloud.app import create_app
from cloud.bootstrap import DemoSeed, seed_demo
from cloud.core.models import Role
from cloud.settings import CloudSettings
from protocol.clock import ManualClock
from tests.support.cloud import basic, log_in, page_token
from tests.support.confirm_mail import confirm_by_mail

NOW = 1_799_971_200  # 2027-01-15 09:00 Tokyo
TEN = NOW + 3600
SAME_ORIGIN = {"Origin": "http://cloud"}


@dataclass
class Api:
    app: FastAPI
    http: httpx.AsyncClient
    seed: DemoSeed

    def as_user(self, name: str) -> dict[str, str]:
        return basic(name, self.seed.users[name].api_token)


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    settings = CloudSettings(
        database_url=f"sqlite:///{tmp_path}/api.db",
        secret_key="s" * 40,
        metrics_token="m" * 32,
        mqtt_enabled=False,
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


async def _book(api: Api, start: int = TEN, end: int = TEN + 3600) -> dict[str, str]:
    body = {
        "lock_id": "gym-a-1",
        "name": "Taro",
        "email": "t@example.jp",
        "start": start,
        "end": end,
    }
    r = await api.http.post("/api/reservations", json=body)
    assert r.status_code == 201, r.text
    data: dict[str, str] = r.json()
    assert data["status"] == "unconfirmed"
    await confirm_by_mail(api.http, api.app.state.sessions, "t@example.jp", data["id"])
    return data


async def test_health_and_openapi(api: Api) -> None:
    r = await api.http.get("/healthz")
    assert r.status_code == 200
    assert r.json() == {"ok": True, "db": "ok", "mqtt": "disabled"}
    paths = (await api.http.get("/openapi.json")).json()["paths"]
    assert "/api/reservations/{reservation_id}/approve" in paths


async def test_booking_flow_citizen_sees_pin_once_approved(api: Api) -> None:
    created = await _book(api)
    assert created["status_url"].endswith(f"/r/{created['id']}?token={created['access_token']}")
    url = f"/api/reservations/{created['id']}"
    status = (await api.http.get(url, params={"token": created["access_token"]})).json()
    assert status["status"] == "pending"
    assert status["pin"] is None
    assert (await api.http.get(url, params={"token": "wrong"})).status_code == 404

    pending = await api.http.get(
        "/api/reservations", params={"status": "pending"}, headers=api.as_user("manager")
    )
    assert [r["id"] for r in pending.json()] == [created["id"]]
    assert "pin" not in pending.json()[0]
    r = await api.http.post(f"{url}/approve", headers=api.as_user("manager"))
    assert r.status_code == 200, r.text

    status = (await api.http.get(url, params={"token": created["access_token"]})).json()
    assert status["status"] == "approved"
    assert len(status["pin"]) == 6
    assert (status["window_start_local"], status["window_end_local"]) == (
        "2027-01-15 09:45",
        "2027-01-15 11:15",
    )
    page = await api.http.get(f"/r/{created['id']}", params={"token": created["access_token"]})
    assert f'data-testid="pin">{status["pin"]}<' in page.text

    mail = await api.http.get("/api/mail", headers=api.as_user("ops"))
    (pin_mail,) = [m for m in mail.json() if m["subject"].startswith("Your PIN for")]
    assert status["pin"] not in pin_mail["body"]  # the citizen's alone, never shown to ops


async def test_errors_are_json_with_a_hint(api: Api) -> None:
    r = await api.http.post(
        "/api/reservations",
        json={"lock_id": "gym-a-1", "name": "T", "email": "t@x.jp", "start": TEN, "end": TEN - 1},
    )
    assert r.status_code == 400
    assert "pick a later end time" in r.json()["detail"]
    await _book(api)
    r = await api.http.post(
        "/api/reservations",
        json={
            "lock_id": "gym-a-1",
            "name": "H",
            "email": "h@x.jp",
            "start": TEN,
            "end": TEN + 1800,
        },
    )
    assert r.status_code == 409
    assert "pick another time" in r.json()["detail"]
    r = await api.http.post("/api/reservations", json={"lock_id": "Bad Id"})
    assert r.status_code == 422
    assert isinstance(r.json()["detail"], str)


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("GET", "/api/reservations?status=pending", "manager"),
        ("POST", "/api/reservations/x/approve", "manager"),
        ("GET", "/api/mail", "ops"),
    ],
)
async def test_auth_401_then_403(api: Api, method: str, path: str, allowed: str) -> None:
    anonymous = await api.http.request(method, path)
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"].startswith("Basic")
    wrong_password = await api.http.request(method, path, headers=basic(allowed, "nope" * 4))
    assert wrong_password.status_code == 401
    other = "ops" if allowed == "manager" else "manager"
    forbidden = await api.http.request(method, path, headers=api.as_user(other))
    assert forbidden.status_code == 403
    assert "role" in forbidden.json()["detail"]


async def test_audit_is_for_staff(api: Api) -> None:
    assert (await api.http.get("/api/locks/gym-a-1/audit")).status_code == 401
    for user in ("ops", "manager"):
        r = await api.http.get("/api/locks/gym-a-1/audit", headers=api.as_user(user))
        assert r.status_code == 200
        assert r.json() == []
    r = await api.http.get("/api/locks/nope/audit", headers=api.as_user("ops"))
    assert r.status_code == 404


async def test_facilities_and_locks(api: Api) -> None:
    r = await api.http.post(
        "/api/facilities",
        json={"name": "Gym B", "site": "gym-b", "gateway": "gw-1"},
        headers=api.as_user("ops"),
    )
    assert r.status_code == 201
    fid = r.json()["id"]
    r = await api.http.post(
        f"/api/facilities/{fid}/locks", json={"lock_id": "gym-b-1"}, headers=api.as_user("ops")
    )
    assert r.status_code == 201
    assert len(bytes.fromhex(r.json()["pin_key"])) == 32
    dup = await api.http.post(
        f"/api/facilities/{fid}/locks", json={"lock_id": "gym-b-1"}, headers=api.as_user("ops")
    )
    assert dup.status_code == 409
    listed = (await api.http.get("/api/facilities")).json()
    assert [f["site"] for f in listed] == ["gym-a", "gym-b"]
    assert "pin_key" not in str(listed)
    assert (await api.http.post("/api/facilities", json={})).status_code in (401, 422)


async def test_pages_login_manage_approve_and_audit(api: Api) -> None:
    r = await api.http.post(
        "/book",
        data={
            "room_id": str(api.seed.room_id),
            "name": "Hanako",
            "email": "h@example.jp",
            "day": "2027-01-15",
            "start": "10:00",
            "hours": "2",
        },
    )
    assert r.status_code == 303
    status_page = r.headers["location"]
    assert 'data-testid="check-mail"' in (await api.http.get(status_page)).text
    confirmed = await confirm_by_mail(api.http, api.app.state.sessions, "h@example.jp")
    assert "a manager approved it" in confirmed.text
    assert 'data-testid="waiting"' in (await api.http.get(status_page)).text

    r = await api.http.get("/manage")
    assert r.status_code == 303
    assert r.headers["location"] == "/login?next=/manage"
    bad = await api.http.post("/login", data={"username": "manager", "password": "x" * 12})
    assert bad.status_code == 401
    r = await api.http.post(
        "/login",
        data={"username": "manager", "password": api.seed.manager.password, "next": "/manage"},
    )
    assert r.status_code == 303
    assert r.headers["location"] == "/manage"
    page = (await api.http.get("/manage")).text
    rid = status_page.split("/r/")[1].split("?")[0]
    assert f'data-testid="approve-{rid}"' in page
    # the form carries the session's token, and the browser says where it posts from
    form = {"csrf_token": page_token(page)}
    r = await api.http.post(f"/manage/{rid}/approve", data=form, headers=SAME_ORIGIN)
    assert r.status_code == 303
    assert 'data-testid="pin"' in (await api.http.get(status_page)).text
    assert (await api.http.get("/mail")).status_code == 403  # manager is not ops
    lock_page = await api.http.get("/locks/gym-a-1")
    assert 'data-testid="no-events"' in lock_page.text


async def test_booking_form_shows_rule_errors(api: Api) -> None:
    r = await api.http.post(
        "/book",
        data={
            "room_id": str(api.seed.room_id),
            "name": "Hanako",
            "email": "h@example.jp",
            "day": "2027-01-14",
            "start": "10:00",
            "hours": "1",
        },
    )
    assert r.status_code == 400
    assert "is in the past" in r.text


async def test_wrong_passwords_make_that_address_wait_with_what_to_do(api: Api) -> None:
    wrong = basic("manager", "not-the-password")
    for _ in range(5):
        r = await api.http.get("/api/reservations", headers=wrong)
        assert r.status_code == 401
    # from this address even the right password now waits, told for how long
    right = basic("manager", api.seed.manager.password)
    r = await api.http.get("/api/reservations", headers=right)
    assert r.status_code == 429
    assert r.json()["detail"] == (
        "ログインの失敗が続いたため、1分後にもう一度お試しください。 / "
        "too many failed logins; try again in 1 minute(s)"
    )
    # the login page says the same; other users are not affected
    page = await api.http.post(
        "/login", data={"username": "manager", "password": api.seed.manager.password}
    )
    assert page.status_code == 429
    assert "1分後にもう一度お試しください" in page.text
    assert "try again in 1 minute(s)" in page.text
    r = await api.http.get("/api/mail", headers=api.as_user("ops"))
    assert r.status_code == 200
    clock: ManualClock = api.app.state.clock
    clock.advance(61)
    r = await api.http.get("/api/reservations", headers=right)
    assert r.status_code == 200


@contextlib.asynccontextmanager
async def _logged_in(api: Api, username: str, password: str) -> AsyncIterator[httpx.AsyncClient]:
    """A browser of its own (cookie jar), logged in as ``username``."""
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=api.app),
        base_url="http://cloud",
        headers={"Accept-Language": "en"},
    ) as client:
        await log_in(client, api.app.state.clock, username, password)
        yield client


async def test_a_manager_of_another_department_neither_sees_nor_acts_at_the_gym(
    api: Api,
) -> None:
    rid, fid = (await _book(api))["id"], api.seed.facility_id
    _, password = api.app.state.services.users.create("fm-health", Role.MANAGER)
    sites = api.app.state.fleet.services.sites
    sites.put_department("health", "Health Department", "ops")
    sites.add_member("health", "fm-health", "ops")
    other = basic("fm-health", password)

    # the API: no booking listed; the gym's booking, facility and lock answer like missing
    for query in ("", "?status=pending", f"?facility_id={fid}"):
        r = await api.http.get(f"/api/reservations{query}", headers=other)
        assert (r.status_code, r.json()) == (200, []), query
    for method, path in (
        ("POST", f"/api/reservations/{rid}/approve"),
        ("POST", f"/api/reservations/{rid}/payment/paid"),
        ("GET", f"/api/facilities/{fid}/figures"),
        ("GET", f"/api/facilities/{fid}/no-shows"),
        ("GET", f"/api/facilities/{fid}/groups"),
        ("GET", "/api/locks/gym-a-1/sync"),
        ("GET", "/api/locks/gym-a-1/audit"),
    ):
        r = await api.http.request(method, path, headers=other)
        assert r.status_code == 404, (path, r.text)
    missing = await api.http.post("/api/reservations/no-such-id/approve", headers=other)
    refused = await api.http.post(f"/api/reservations/{rid}/approve", headers=other)
    assert refused.json()["detail"] == missing.json()["detail"].replace("no-such-id", rid)

    # the pages: an empty queue, no staff links, and 404 for the gym's own pages
    async with _logged_in(api, "fm-health", password) as page:
        manage = await page.get("/manage")
        assert manage.status_code == 200
        assert rid not in manage.text
        assert f'data-testid="rules-link-{fid}"' not in (await page.get("/")).text
        for path in (
            f"/manage/facilities/{fid}",
            f"/manage/facilities/{fid}/figures",
            f"/manage/facilities/{fid}/mail",
            "/locks/gym-a-1",
        ):
            assert (await page.get(path)).status_code == 404, path
        assert (await page.post(f"/manage/{rid}/approve")).status_code == 404

    # the gym's own manager sees and approves it
    mine = api.as_user("manager")
    listed = await api.http.get("/api/reservations?status=pending", headers=mine)
    assert [r["id"] for r in listed.json()] == [rid]
    assert (await api.http.get(f"/api/facilities/{fid}/figures", headers=mine)).status_code == 200
    async with _logged_in(api, "manager", api.seed.manager.password) as page:
        assert f'data-testid="approve-{rid}"' in (await page.get("/manage")).text
        assert f'data-testid="rules-link-{fid}"' in (await page.get("/")).text
        for path in (f"/manage/facilities/{fid}", f"/manage/facilities/{fid}/figures"):
            assert (await page.get(path)).status_code == 200, path
        assert (await page.post(f"/manage/{rid}/approve")).status_code == 303
