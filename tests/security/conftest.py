"""The cloud as an attacker meets it: the real app over HTTP (httpx on ASGI), seeded as
the demo is, its staff signed in with Basic auth; ``mailed`` also delivers its mail to a
real SMTP server (aiosmtpd), the citizens' mailboxes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from cloud.app import create_app
from cloud.bootstrap import ClinicSeed, DemoSeed, seed_clinic, seed_demo
from cloud.core.models import Role
from cloud.settings import CloudSettings
from protocol.clock import ManualClock
from tests.support.cloud import basic
from tests.support.gym_site import GymSite, at, gym_site
from tests.support.secure_broker import SecureBroker
from tests.support.secure_cloud import World, running_world
from tests.support.smtp import SmtpServer, free_port, running_smtp_server

NOW = 1_799_971_200  # 2027-01-15 09:00 Tokyo
HOUR = 3600


@dataclass
class Cloud:
    app: FastAPI
    http: httpx.AsyncClient
    seed: DemoSeed

    def as_user(self, name: str) -> dict[str, str]:
        """The user's API token in an ``Authorization: Basic`` header."""
        return basic(name, self.seed.users[name].api_token)

    def browser(self, address: str = "127.0.0.1") -> httpx.AsyncClient:
        """A browser of its own (cookie jar) connecting from ``address``; use it in an
        ``async with``."""
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app, client=(address, 50_000)),
            base_url="http://cloud",
            headers={"Accept-Language": "en"},
        )


def settings_for(tmp_path: Path, **overrides: object) -> CloudSettings:
    """Production-like settings (not dev) with the secrets a city must set."""
    values: dict[str, object] = {
        "database_url": f"sqlite:///{tmp_path}/cloud.db",
        "secret_key": "s" * 40,
        "metrics_token": "m" * 32,
        "mqtt_enabled": False,
    }
    return CloudSettings(**{**values, **overrides})


@contextlib.asynccontextmanager
async def serving(settings: CloudSettings) -> AsyncIterator[Cloud]:
    """The app on ``settings`` at :data:`NOW` (a ManualClock), seeded, with a client."""
    app = create_app(settings, clock=ManualClock(NOW))
    async with app.router.lifespan_context(app):
        with app.state.sessions.begin() as session:
            seed = seed_demo(session)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://cloud", headers={"Accept-Language": "en"}
        ) as http:
            yield Cloud(app, http, seed)


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    """The cloud behind the production broker config, gyms A and B seeded
    (:func:`tests.support.secure_cloud.running_world`)."""
    async with running_world(tmp_path, NOW) as running:
        yield running


@pytest.fixture
async def cloud(tmp_path: Path) -> AsyncIterator[Cloud]:
    async with serving(settings_for(tmp_path)) as served:
        yield served


@dataclass
class Mailed:
    """The cloud and the SMTP server its mail goes to."""

    cloud: Cloud
    smtp: SmtpServer

    def deliver(self) -> None:
        """One pass of the cloud's own mail delivery (what its periodic task runs)."""
        run = self.cloud.app.state.services.mail_delivery.deliver_due()
        assert (run.retrying, run.failed) == (0, 0), run


@pytest.fixture
async def mailed(tmp_path: Path) -> AsyncIterator[Mailed]:
    with running_smtp_server() as smtp:
        settings = settings_for(
            tmp_path,
            smtp_host="127.0.0.1",
            smtp_port=smtp.port,
            smtp_starttls=False,
            mail_poll_s=3600,  # the test delivers, with Mailed.deliver
        )
        async with serving(settings) as served:
            yield Mailed(served, smtp)


def start_cloud(env: dict[str, str | None], tmp_path: Path, timeout_s: float = 60.0) -> StartUp:
    """Run the real ``denen-cloud serve`` with ``env`` over a production-like base (a value
    of None unsets a variable) and say how it went: it answered HTTP (then it is stopped),
    or it exited first with a status and its standard error."""
    port = free_port()
    base: dict[str, str | None] = {
        "PATH": os.environ.get("PATH", ""),
        "DENEN_CLOUD_DATABASE_URL": f"sqlite:///{tmp_path}/startup.db",
        "DENEN_CLOUD_SECRET_KEY": "s" * 40,
        "DENEN_CLOUD_METRICS_TOKEN": "m" * 32,
        "DENEN_CLOUD_MQTT_ENABLED": "0",
    }
    merged = {k: v for k, v in {**base, **env}.items() if v is not None}
    cmd = [str(Path(sys.executable).parent / "denen-cloud"), "serve", "--port", str(port)]
    with subprocess.Popen(
        cmd, env=merged, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    ) as proc:
        deadline = time.monotonic() + timeout_s
        while proc.poll() is None and time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                proc.terminate()
                _, err = proc.communicate(timeout=timeout_s)
                return StartUp(started=True, returncode=None, stderr=err)
            time.sleep(0.1)  # polling a port that has no event to await
        if proc.poll() is None:
            proc.kill()
        _, err = proc.communicate(timeout=timeout_s)
        return StartUp(started=False, returncode=proc.returncode, stderr=err)


@dataclass(frozen=True)
class StartUp:
    started: bool
    returncode: int | None
    stderr: str


@dataclass
class Clinics:
    """The real app with two clinics: ``clinic-a`` (staff ``clinic-a``) and ``clinic-b``
    (staff ``clinic-b``) in different city departments, and ``ops``."""

    app: FastAPI
    clock: ManualClock
    a: ClinicSeed
    b: ClinicSeed

    def as_user(self, name: str) -> dict[str, str]:
        for seed in (self.a, self.b):
            if name in seed.users:
                return basic(name, seed.users[name].api_token)
        raise KeyError(name)

    def http(self, address: str = "203.0.113.7") -> httpx.AsyncClient:
        """A client of the app calling from ``address`` (close it: ``async with``)."""
        transport = httpx.ASGITransport(app=self.app, client=(address, 50000))
        return httpx.AsyncClient(transport=transport, base_url="http://cloud")


@pytest.fixture
async def clinics(tmp_path: Path) -> AsyncIterator[Clinics]:
    clock = ManualClock(NOW)
    app = create_app(settings_for(tmp_path), clock=clock)
    async with app.router.lifespan_context(app):
        with app.state.sessions.begin() as session:
            a = seed_clinic(session, users={"clinic-a": Role.CLINIC, "ops": Role.OPS}, clock=clock)
            b = seed_clinic(
                session,
                site="clinic-b",
                gateway="gw-b",
                name="Yonago Clinic B",
                displays=("clinic-b-disp-1",),
                users={"clinic-b": Role.CLINIC},
                department="health-b",
                clock=clock,
            )
        yield Clinics(app, clock, a, b)


@pytest.fixture
async def gym(tmp_path: Path, secure_broker: SecureBroker) -> AsyncIterator[GymSite]:
    """A whole gym site at 08:00 (:mod:`tests.support.gym_site`: the cloud, the real agent,
    the lock simulator on a pty) on Mosquitto with the production config and certificates."""
    async with gym_site(tmp_path, secure_broker, "serial", start=at(8)) as site:
        yield site


async def alerts(site: GymSite, state: str = "open") -> list[dict[str, Any]]:
    """The fleet's alerts inbox as on-call reads it."""
    ops = basic("ops", site.seed.ops.api_token)
    res = await site.http.get("/api/fleet/alerts", params={"state": state}, headers=ops)
    assert res.status_code == 200, res.text
    rows: list[dict[str, Any]] = res.json()
    return rows


async def alerts_until(site: GymSite, kind: str) -> dict[str, Any]:
    """The one open alert of ``kind``, once it is there (10 s at most)."""
    async with asyncio.timeout(10):
        while not (found := [a for a in await alerts(site) if a["kind"] == kind]):  # noqa: ASYNC110
            await asyncio.sleep(0.05)
    (alert,) = found
    return alert
