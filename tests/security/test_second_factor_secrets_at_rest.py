"""Whoever reads the database (a backup, a leaked dump) or any API answer does not get a
user's authenticator secret or recovery codes: the secret is kept encrypted under a key
derived from the secret key, the codes as keyed hashes, and no page shows either again
after enrolment; a recovery code opens once."""

from __future__ import annotations

from sqlalchemy import select

from cloud.core.models import RecoveryCode, User
from tests.security.conftest import Cloud
from tests.support.cloud import log_in, page_token


async def test_the_database_and_the_pages_do_not_give_the_secret_away(cloud: Cloud) -> None:
    ops, clock = cloud.seed.ops, cloud.app.state.clock
    async with cloud.browser() as browser:
        phone = await log_in(browser, clock, ops.username, ops.password)
        account = (await browser.get("/account")).text
        assert 'data-testid="2fa-on"' in account
        assert phone.secret not in account
        assert not any(code in account for code in phone.recovery_codes)
        assert (await browser.get("/account/2fa")).status_code == 303  # full session: no
    with cloud.app.state.sessions() as session:
        stored = session.scalar(select(User.totp_secret).where(User.username == "ops"))
        hashes = session.scalars(select(RecoveryCode.code_hash)).all()
    assert stored is not None
    assert phone.secret not in stored
    assert len(hashes) == 10
    plain = {c.replace("-", "") for c in phone.recovery_codes}
    assert not plain & set(hashes)
    for path in ("/openapi.json", "/api/mail"):
        r = await cloud.http.get(path, headers=cloud.as_user("ops"))
        assert phone.secret not in r.text
        assert "totp" not in r.text.lower()


async def test_a_recovery_code_opens_once(cloud: Cloud) -> None:
    ops, clock = cloud.seed.ops, cloud.app.state.clock
    async with cloud.browser() as browser:
        phone = await log_in(browser, clock, ops.username, ops.password)
    code = phone.recovery_codes[0]
    origin = {"Origin": "http://cloud"}
    for expected in (303, 401):
        async with cloud.browser() as browser:
            login = {"username": "ops", "password": ops.password}
            await browser.post("/login", data=login)
            page = (await browser.get("/login/code")).text
            form = {"code": code.upper(), "csrf_token": page_token(page)}  # as typed
            r = await browser.post("/login/code", data=form, headers=origin)
            assert r.status_code == expected
    clock.advance(30)  # the app's next code
    async with cloud.browser() as browser:
        await log_in(browser, clock, ops.username, ops.password, phone)
        assert "Recovery codes left: 9" in (await browser.get("/account")).text
