"""Attack: read ``/metrics`` without a token. It names every route, counts gateways and
lock events, and was open whenever DENEN_CLOUD_METRICS_TOKEN was unset. Outside
development the cloud now refuses to start without the token, and asks for it."""

from __future__ import annotations

from pathlib import Path

import httpx

from cloud.app import create_app
from protocol.clock import ManualClock
from tests.security.conftest import NOW, settings_for, start_cloud

TOKEN = "m" * 32


def test_cloud_refuses_to_start_without_a_metrics_token(tmp_path: Path) -> None:
    ended = start_cloud({"DENEN_CLOUD_METRICS_TOKEN": None}, tmp_path)
    assert not ended.started, "the cloud started with /metrics open to anyone"
    assert ended.returncode == 2
    assert "set DENEN_CLOUD_METRICS_TOKEN" in ended.stderr


def test_dev_cloud_starts_without_a_metrics_token(tmp_path: Path) -> None:
    ended = start_cloud({"DENEN_CLOUD_DEV": "1", "DENEN_CLOUD_METRICS_TOKEN": None}, tmp_path)
    assert ended.started, ended.stderr


async def test_metrics_without_the_token_are_refused(tmp_path: Path) -> None:
    app = create_app(settings_for(tmp_path, metrics_token=TOKEN), clock=ManualClock(NOW))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://cloud") as http:
            assert (await http.get("/metrics")).status_code == 401
            wrong = await http.get("/metrics", headers={"Authorization": "Bearer " + "x" * 32})
            assert wrong.status_code == 401
            ok = await http.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
            assert ok.status_code == 200
            assert "denen_http_requests" in ok.text
