"""The account page and second-factor upkeep through the ASGI app (MQTT off): a wrong
first code at enrolment, API tokens made and revoked, new recovery codes, and ops'
``denen-cloud reset-2fa`` for a lost phone."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from cloud.app import create_app
from cloud.bootstrap import DemoSeed, seed_demo
from cloud.main import main
from cloud.settings import CloudSettings
from protocol.clock import ManualClock
from tests.support.cloud import basic, log_in, page_token

NOW = 1_799_971_200  # 2027-01-15 09:00 Tokyo
ORIGIN = {"Origin": "http://cloud"}


@dataclass
class Site:
    app: FastAPI
    seed: DemoSeed
    settings: CloudSettings

    def browser(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app),
            base_url="http://cloud",
            headers={"Accept-Language": "en"},
        )


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[Site]:
    settings = CloudSettings(
        database_url=f"sqlite:///{tmp_path}/account.db",
        secret_key="s" * 40,
        metrics_token="m" * 32,
        mqtt_enabled=False,
    )
    app = create_app(settings, clock=ManualClock(NOW))
    async with app.router.lifespan_context(app):
        with app.state.sessions.begin() as session:
            seed = seed_demo(session)
        yield Site(app, seed, settings)


async def test_a_wrong_first_code_shows_a_fresh_key_and_says_what_to_do(site: Site) -> None:
    async with site.browser() as browser:
        login = {"username": "ops", "password": site.seed.ops.password}
        assert (await browser.post("/login", data=login)).status_code == 303
        page = (await browser.get("/account/2fa")).text
        first_key = re.search(r'data-testid="totp-secret">(\w+)<', page)
        form = {"code": "000000", "csrf_token": page_token(page)}
        r = await browser.post("/account/2fa", data=form, headers=ORIGIN)
        assert r.status_code == 400
        assert "not the one the app shows now" in r.text
        second_key = re.search(r'data-testid="totp-secret">(\w+)<', r.text)
        assert first_key is not None
        assert second_key is not None
        assert first_key[1] != second_key[1]
        assert (await browser.get("/mail")).status_code == 303  # still not logged in


async def test_api_tokens_are_made_on_the_account_page_and_revoked_there(site: Site) -> None:
    async with site.browser() as browser, site.browser() as script:
        await log_in(browser, site.app.state.clock, "ops", site.seed.ops.password)
        r = await browser.post("/account/tokens", data={"label": "backup script"})
        assert r.status_code == 200
        token = re.search(r'data-testid="new-api-token">([^<]+)<', r.text)
        assert token is not None
        auth = basic("ops", token[1])
        assert (await script.get("/api/mail", headers=auth)).status_code == 200
        account = (await browser.get("/account")).text
        assert token[1] not in account  # shown once
        ids = re.findall(r'data-testid="revoke-api-token-(\d+)"', account)
        assert len(ids) == 2  # the seed's and this one
        r = await browser.post(f"/account/tokens/{max(map(int, ids))}/revoke")
        assert r.status_code == 303
        assert (await script.get("/api/mail", headers=auth)).status_code == 401
        seeded = basic("ops", site.seed.ops.api_token)
        assert (await script.get("/api/mail", headers=seeded)).status_code == 200


async def test_new_recovery_codes_replace_the_old_ones(site: Site) -> None:
    clock = site.app.state.clock
    async with site.browser() as browser:
        phone = await log_in(browser, clock, "ops", site.seed.ops.password)
        r = await browser.post("/account/recovery-codes")
        fresh = re.findall(r'data-testid="recovery-code">([a-z2-9-]+)<', r.text)
        assert len(fresh) == 10
        assert not set(fresh) & set(phone.recovery_codes)
    for code, expected in ((phone.recovery_codes[0], 401), (fresh[0], 303)):
        async with site.browser() as browser:
            login = {"username": "ops", "password": site.seed.ops.password}
            await browser.post("/login", data=login)
            page = (await browser.get("/login/code")).text
            form = {"code": code, "csrf_token": page_token(page)}
            r = await browser.post("/login/code", data=form, headers=ORIGIN)
            assert r.status_code == expected


async def test_ops_reset_a_lost_phone_and_the_user_enrols_again(
    site: Site, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    clock = site.app.state.clock
    async with site.browser() as browser:
        await log_in(browser, clock, "ops", site.seed.ops.password)
        monkeypatch.setenv("DENEN_CLOUD_DATABASE_URL", site.settings.database_url)
        monkeypatch.setenv("DENEN_CLOUD_SECRET_KEY", site.settings.secret_key)
        monkeypatch.setenv("DENEN_CLOUD_METRICS_TOKEN", "m" * 32)
        monkeypatch.setenv("DENEN_CLOUD_MQTT_ENABLED", "0")
        assert main(["reset-2fa", "ops"]) == 0
        assert "1 session(s) ended" in capsys.readouterr().out
        assert (await browser.get("/mail")).status_code == 303  # the old session is over
    async with site.browser() as browser:
        login = {"username": "ops", "password": site.seed.ops.password}
        r = await browser.post("/login", data=login)
        assert r.headers["location"].startswith("/account/2fa")
    assert main(["reset-2fa", "nobody"]) == 1
    assert "no user 'nobody'" in capsys.readouterr().err
