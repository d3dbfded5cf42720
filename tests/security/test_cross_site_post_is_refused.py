"""A page on another site that makes a logged-in manager's browser post to Denen (a
hidden form approving a booking) is refused: a state change with the session cookie needs
the session's token and our own origin (cloud/dashboard/csrf.py)."""

from __future__ import annotations

from tests.security.conftest import NOW, Cloud
from tests.support.cloud import log_in, page_token
from tests.support.confirm_mail import confirm_by_mail

EVIL = "https://evil.example"


async def _pending_booking(cloud: Cloud) -> str:
    body = {
        "lock_id": cloud.seed.lock_id,
        "name": "Taro",
        "email": "taro@example.jp",
        "start": NOW + 3600,
        "end": NOW + 7200,
    }
    r = await cloud.http.post("/api/reservations", json=body)
    assert r.status_code == 201, r.text
    rid: str = r.json()["id"]
    await confirm_by_mail(cloud.http, cloud.app.state.sessions, "taro@example.jp", rid)
    return rid


async def _status(cloud: Cloud, rid: str) -> str:
    for status in ("pending", "approved"):
        r = await cloud.http.get(
            "/api/reservations", params={"status": status}, headers=cloud.as_user("manager")
        )
        if rid in {b["id"] for b in r.json()}:
            return status
    return "neither"


async def test_a_cross_site_form_cannot_approve_a_booking(cloud: Cloud) -> None:
    rid = await _pending_booking(cloud)
    manager = cloud.seed.manager
    async with cloud.browser() as browser:
        await log_in(browser, cloud.app.state.clock, manager.username, manager.password)
        token = page_token((await browser.get("/manage")).text)
        del browser.headers["X-CSRF-Token"], browser.headers["Origin"]
        attempts = [
            ({"Origin": EVIL}, {}),  # the evil page's form: no token
            ({"Origin": EVIL}, {"csrf_token": token}),  # even with a leaked token
            ({"Referer": f"{EVIL}/win-a-prize"}, {"csrf_token": token}),  # no Origin sent
            ({"Origin": "null"}, {"csrf_token": token}),  # a sandboxed frame
            ({}, {"csrf_token": token}),  # neither Origin nor Referer
            ({"Origin": "http://cloud"}, {}),  # same origin, no token
            ({"Origin": "http://cloud"}, {"csrf_token": "0" * 64}),  # a made-up token
        ]
        for headers, form in attempts:
            r = await browser.post(f"/manage/{rid}/approve", data=form, headers=headers)
            assert r.status_code == 403, (headers, form)
            assert "reload the page and send it again" in r.text
        assert await _status(cloud, rid) == "pending"
        # the manager's own form, from the page, still works
        form = {"csrf_token": token}
        r = await browser.post(
            f"/manage/{rid}/approve", data=form, headers={"Origin": "http://cloud"}
        )
        assert r.status_code == 303
    assert await _status(cloud, rid) == "approved"


async def test_a_cross_site_post_to_the_api_is_refused_whatever_it_carries(
    cloud: Cloud,
) -> None:
    # a browser may re-send Basic credentials it remembers to a cross-site form's target
    rid = await _pending_booking(cloud)
    headers = {**cloud.as_user("manager"), "Origin": EVIL}
    r = await cloud.http.post(f"/api/reservations/{rid}/approve", headers=headers)
    assert r.status_code == 403
    assert await _status(cloud, rid) == "pending"
