"""A stolen password of a role that can open doors or see patients is not enough: the
login asks for the authenticator's code, the half-logged-in session reaches nothing, and
HTTP Basic (which cannot carry a code) takes only the user's API tokens for such roles."""

from __future__ import annotations

import pyotp

from tests.security.conftest import Cloud
from tests.support.cloud import basic, log_in, page_token


async def test_the_password_alone_reaches_no_staff_page(cloud: Cloud) -> None:
    ops, clock = cloud.seed.ops, cloud.app.state.clock
    async with cloud.browser() as owner:
        phone = await log_in(owner, clock, ops.username, ops.password)  # enrols at first
    async with cloud.browser("203.0.113.66") as thief:
        r = await thief.post("/login", data={"username": "ops", "password": ops.password})
        assert r.status_code == 303
        assert r.headers["location"].startswith("/login/code")
        for path in ("/mail", "/fleet", "/clinic", "/account", "/announcements"):
            r = await thief.get(path)
            assert r.status_code == 303, path
            assert r.headers["location"].startswith("/login"), path
        # nor can it enrol a phone of its own over the owner's
        assert (await thief.get("/account/2fa")).status_code == 409
        # guessed codes are refused, then throttled like passwords
        page = (await thief.get("/login/code")).text
        origin = {"Origin": "http://cloud"}
        answers = []
        for guess in ("000000", "123456", "111111", "999999", "424242", "777777"):
            form = {"code": guess, "csrf_token": page_token(page)}
            answers.append((await thief.post("/login/code", data=form, headers=origin)).status_code)
        assert answers[:4] == [401] * 4  # the password was one failure, then 4 codes
        assert answers[-1] == 429
    # the owner's code still works from the owner's desk
    async with cloud.browser() as owner:
        await log_in(owner, clock, ops.username, ops.password, phone)
        assert (await owner.get("/mail")).status_code == 200


async def test_a_used_code_does_not_open_a_second_time(cloud: Cloud) -> None:
    ops, clock = cloud.seed.ops, cloud.app.state.clock
    async with cloud.browser() as owner:
        phone = await log_in(owner, clock, ops.username, ops.password)
    clock.advance(30)
    code = pyotp.TOTP(phone.secret).at(clock.now())
    origin = {"Origin": "http://cloud"}
    async with cloud.browser() as first, cloud.browser("203.0.113.66") as shoulder:
        for browser, expected in ((first, 303), (shoulder, 401)):
            login = {"username": "ops", "password": ops.password}
            await browser.post("/login", data=login)
            page = (await browser.get("/login/code")).text
            form = {"code": code, "csrf_token": page_token(page)}
            r = await browser.post("/login/code", data=form, headers=origin)
            assert r.status_code == expected


async def test_basic_auth_with_the_password_of_a_second_factor_role_is_refused(
    cloud: Cloud,
) -> None:
    ops = cloud.seed.ops
    r = await cloud.http.get("/api/mail", headers=basic("ops", ops.password))
    assert r.status_code == 401
    assert "API tokens" in r.json()["detail"]
    assert (await cloud.http.get("/api/mail", headers=cloud.as_user("ops"))).status_code == 200
    # a token is the user's own: not another user's name with it
    assert (
        await cloud.http.get("/api/mail", headers=basic("manager", ops.api_token))
    ).status_code == 401
    # a manager (no second factor) keeps Basic with the password
    manager = cloud.seed.manager
    r = await cloud.http.get("/api/reservations", headers=basic("manager", manager.password))
    assert r.status_code == 200
