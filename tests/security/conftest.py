"""The cloud as an attacker meets it: the real app over HTTP (httpx on ASGI), seeded as
the demo is, its staff signed in with Basic auth."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from cloud.app import create_app
from cloud.bootstrap import DemoSeed, seed_demo
from cloud.settings import CloudSettings
from protocol.clock import ManualClock
from tests.support.cloud import basic
from tests.support.smtp import free_port

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


@pytest.fixture
async def cloud(tmp_path: Path) -> AsyncIterator[Cloud]:
    app = create_app(settings_for(tmp_path), clock=ManualClock(NOW))
    async with app.router.lifespan_context(app):
        with app.state.sessions.begin() as session:
            seed = seed_demo(session)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://cloud", headers={"Accept-Language": "en"}
        ) as http:
            yield Cloud(app, http, seed)


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
