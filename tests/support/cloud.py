"""Helpers for the cloud's tests: a fresh database per test (SQLite file or a uniquely
named PostgreSQL database), settings, a seeded app, and logging in as a browser does
(second factor and CSRF token included)."""

from __future__ import annotations

import base64
import contextlib
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg
import pyotp
import pytest
from psycopg import sql
from sqlalchemy.engine import make_url

from protocol.clock import Clock
from tests.conftest import POSTGRES_URL

# parametrize a db fixture with these: every service test runs on both dialects
DB_KINDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
]


@contextlib.contextmanager
def fresh_database(kind: str, tmp_path: Path) -> Iterator[str]:
    """The URL of an empty database that is dropped afterwards."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path}/t.db"
        return
    admin = make_url(POSTGRES_URL)
    name = f"denen_t_{secrets.token_hex(6)}"
    dsn = admin.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield admin.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


def basic(username: str, password: str) -> dict[str, str]:
    """An ``Authorization: Basic`` header."""
    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


# ------------------------------------------------------------------ logging in as a browser

_TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')
_SECRET = re.compile(r'data-testid="totp-secret">([A-Z2-7]+)<')
_RECOVERY = re.compile(r'data-testid="recovery-code">([a-z2-9-]+)<')


def page_token(html: str) -> str:
    """The CSRF token a page's forms carry (what a browser posts back)."""
    found = _TOKEN.search(html)
    assert found is not None, "the page has no form with a CSRF token"
    return found[1]


@dataclass
class Authenticator:
    """A person's authenticator app, and the recovery codes they wrote down."""

    secret: str = ""
    recovery_codes: list[str] = field(default_factory=list)
    last_step: int = -1

    def code(self, clock: Clock) -> str:
        """The app's code now; a code works once, so a second login within the same
        30 s takes a recovery code, as a person in a hurry would."""
        step = int(clock.now() // 30)
        if step <= self.last_step:
            return self.recovery_codes.pop()
        self.last_step = step
        return pyotp.TOTP(self.secret).at(clock.now())


async def carry_token(http: httpx.AsyncClient) -> str:
    """Read the session's CSRF token from a page, as a browser's script would, and send
    it (and our origin, as a browser does) with every request to come."""
    token = page_token((await http.get("/account")).text)
    http.headers["X-CSRF-Token"] = token
    http.headers["Origin"] = str(http.base_url).rstrip("/")
    return token


async def log_in(
    http: httpx.AsyncClient,
    clock: Clock,
    username: str,
    password: str,
    phone: Authenticator | None = None,
) -> Authenticator:
    """Log in through the login page as a person would: the password, then for a role
    that needs it a code from their ``phone`` (enrolled at the first login by typing in
    the key the enrolment page shows); then carry the CSRF token (:func:`carry_token`).
    Returns the phone, to pass to the same person's next login."""
    phone = phone or Authenticator()
    origin = {"Origin": str(http.base_url).rstrip("/")}
    login = {"username": username, "password": password}
    r = await http.post("/login", data=login, follow_redirects=False)
    assert r.status_code == 303, r.text
    step = r.headers["location"].split("?")[0]
    if step == "/account/2fa":
        page = (await http.get(r.headers["location"])).text
        found = _SECRET.search(page)
        assert found is not None, "the enrolment page shows no key"
        phone.secret = found[1]
        form = {"code": phone.code(clock), "csrf_token": page_token(page)}
        r = await http.post("/account/2fa", data=form, headers=origin, follow_redirects=False)
        assert r.status_code == 200, r.text
        phone.recovery_codes = _RECOVERY.findall(r.text)
    elif step == "/login/code":
        assert phone.secret, f"{username} has enrolled already: pass their phone"
        page = (await http.get(r.headers["location"])).text
        form = {"code": phone.code(clock), "csrf_token": page_token(page)}
        r = await http.post("/login/code", data=form, headers=origin, follow_redirects=False)
        assert r.status_code == 303, r.text
    await carry_token(http)
    return phone
