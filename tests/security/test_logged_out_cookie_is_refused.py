"""A session cookie copied before its owner logged out (from a shared PC, a proxy log)
opens nothing afterwards: logging out ends the session on the server, and "log out
everywhere" ends all of the user's sessions."""

from __future__ import annotations

from tests.security.conftest import Cloud
from tests.support.cloud import log_in

COOKIE = "denen_session"


async def test_a_cookie_kept_after_logout_is_refused(cloud: Cloud) -> None:
    manager, clock = cloud.seed.manager, cloud.app.state.clock
    async with cloud.browser() as browser, cloud.browser("203.0.113.66") as thief:
        await log_in(browser, clock, manager.username, manager.password)
        copied = browser.cookies[COOKIE]
        thief.cookies.set(COOKIE, copied)
        assert (await thief.get("/manage")).status_code == 200  # the copy works while live
        r = await browser.post("/logout")
        assert r.status_code == 303
        assert COOKIE not in browser.cookies
        r = await thief.get("/manage")
        assert r.status_code == 303
        assert r.headers["location"] == "/login?next=/manage"


async def test_log_out_everywhere_ends_the_other_browsers_sessions(cloud: Cloud) -> None:
    ops, clock = cloud.seed.ops, cloud.app.state.clock
    async with cloud.browser() as office, cloud.browser("198.51.100.7") as laptop:
        phone = await log_in(office, clock, ops.username, ops.password)
        await log_in(laptop, clock, ops.username, ops.password, phone)
        assert (await laptop.get("/mail")).status_code == 200
        r = await office.post("/logout/everywhere")
        assert r.status_code == 303
        for browser in (office, laptop):
            r = await browser.get("/mail")
            assert r.status_code == 303
            assert r.headers["location"].startswith("/login")
