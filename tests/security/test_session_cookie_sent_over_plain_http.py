"""Behind the city's TLS proxy, a session cookie without ``Secure`` would also be sent on
any plain-http request to the host (a mistyped link, a downgrade on hostile Wi-Fi), and
one without ``SameSite=Strict`` rides along on requests from other sites."""

from __future__ import annotations

from pathlib import Path

import httpx

from cloud.app import create_app
from cloud.bootstrap import seed_demo
from protocol.clock import ManualClock
from tests.security.conftest import NOW, settings_for

PROXY = "10.0.0.2"


async def _login_cookie(tmp_path: Path, peer: str, headers: dict[str, str]) -> str:
    settings = settings_for(tmp_path, trusted_proxies=[PROXY])
    app = create_app(settings, clock=ManualClock(NOW))
    async with app.router.lifespan_context(app):
        with app.state.sessions.begin() as session:
            seed = seed_demo(session)
        transport = httpx.ASGITransport(app=app, client=(peer, 40_000))
        async with httpx.AsyncClient(transport=transport, base_url="http://cloud") as http:
            login = {"username": "manager", "password": seed.manager.password}
            r = await http.post("/login", data=login, headers=headers)
            assert r.status_code == 303
            return r.headers["set-cookie"].lower()


async def test_behind_the_https_proxy_the_session_cookie_is_secure_and_strict(
    tmp_path: Path,
) -> None:
    https = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "198.51.100.7"}
    cookie = await _login_cookie(tmp_path, PROXY, https)
    assert cookie.startswith("denen_session=")
    assert "; secure" in cookie
    assert "; httponly" in cookie
    assert "samesite=strict" in cookie


async def test_a_forwarded_proto_from_anyone_else_is_not_believed(tmp_path: Path) -> None:
    # a client cannot make the cloud think it is behind TLS (nor pick its address)
    https = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "198.51.100.7"}
    cookie = await _login_cookie(tmp_path, "203.0.113.66", https)
    assert "; secure" not in cookie
    assert "; httponly" in cookie
    assert "samesite=strict" in cookie
