"""The cloud as an attacker meets it: the real app over HTTP (httpx on ASGI), seeded as
the demo is, its staff signed in with Basic auth."""

from __future__ import annotations

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

NOW = 1_799_971_200  # 2027-01-15 09:00 Tokyo
HOUR = 3600


@dataclass
class Cloud:
    app: FastAPI
    http: httpx.AsyncClient
    seed: DemoSeed

    def as_user(self, name: str) -> dict[str, str]:
        return basic(name, self.seed.users[name].password)


def settings_for(tmp_path: Path, **overrides: object) -> CloudSettings:
    """Production-like settings (not dev) with the secrets a city must set."""
    values: dict[str, object] = {
        "database_url": f"sqlite:///{tmp_path}/cloud.db",
        "secret_key": "s" * 40,
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
