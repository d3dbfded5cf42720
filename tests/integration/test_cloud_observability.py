"""The cloud's /metrics, request ids and JSON log lines, through the real ASGI app."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from cloud.app import create_app
from cloud.settings import CloudSettings
from protocol.clock import ManualClock
from protocol.messages import GatewayState, StatusData
from protocol.tracing import JsonFormatter, traced

NOW = 1_799_971_200
METRICS_TOKEN = "m" * 32  # Prometheus sends it; the cloud does not start without one


async def _app(tmp_path: Path, **extra: object) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    token = str(extra.pop("metrics_token", METRICS_TOKEN))
    settings = CloudSettings(
        database_url=f"sqlite:///{tmp_path}/obs.db",
        secret_key="s" * 40,
        metrics_token=token,
        mqtt_enabled=False,
        **extra,  # type: ignore[arg-type]  # test-only keyword settings
    )
    app = create_app(settings, clock=ManualClock(NOW))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        scraper = {"Authorization": f"Bearer {token}"}  # as Prometheus scrapes
        async with httpx.AsyncClient(
            transport=transport, base_url="http://cloud", headers=scraper
        ) as http:
            yield app, http


@pytest.fixture
async def cloud(tmp_path: Path) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    async for pair in _app(tmp_path):
        yield pair


@pytest.fixture
def json_lines() -> Iterator[io.StringIO]:
    """Everything the cloud's request logger writes, as JSON lines."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter("cloud"))
    logger = logging.getLogger("cloud.http")
    logger.addHandler(handler)
    old = logger.level
    logger.setLevel(logging.INFO)
    try:
        yield out
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old)


def _sample(text: str, name: str, **labels: str) -> float | None:
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


async def test_requests_are_counted_by_route_template_not_by_path(
    cloud: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    _, http = cloud
    for facility in (1, 2, 3):
        await http.get(f"/api/facilities/{facility}")
    await http.get("/healthz")
    text = (await http.get("/metrics")).text
    by_template = _sample(text, "denen_http_requests_total", route="/api/facilities/{facility_id}")
    assert by_template == 3.0
    assert "/api/facilities/1" not in text  # the filled-in path never becomes a label
    assert _sample(text, "denen_http_requests_total", route="/healthz", status="200") == 1.0
    assert _sample(text, "denen_http_request_seconds_count", route="/healthz") == 1.0


async def test_request_id_is_kept_or_made_and_logged(
    cloud: tuple[FastAPI, httpx.AsyncClient], json_lines: io.StringIO
) -> None:
    _, http = cloud
    kept = await http.get("/healthz", headers={"X-Request-ID": "ops-42.a"})
    assert kept.headers["x-request-id"] == "ops-42.a"
    made = await http.get("/healthz", headers={"X-Request-ID": "bad id\twith spaces"})
    new_id = made.headers["x-request-id"]
    assert new_id != "bad id\twith spaces"
    assert len(new_id) == 36  # a fresh UUIDv7
    lines = [json.loads(line) for line in json_lines.getvalue().splitlines()]
    assert [line["trace_id"] for line in lines] == ["ops-42.a", new_id]
    assert lines[0]["msg"].startswith("GET /healthz -> 200")
    assert lines[0]["service"] == "cloud"


async def test_gateway_states_are_a_gauge(cloud: tuple[FastAPI, httpx.AsyncClient]) -> None:
    app, http = cloud
    health = app.state.services.fleet.health
    health.record_status("clinic-a", "gw-1", StatusData(state=GatewayState.ONLINE))
    health.record_status("gym-a", "gw-1", StatusData(state=GatewayState.ONLINE))
    health.record_status("gym-b", "gw-1", StatusData(state=GatewayState.OFFLINE))
    text = (await http.get("/metrics")).text
    assert _sample(text, "denen_gateways", state="online") == 2.0
    assert _sample(text, "denen_gateways", state="offline") == 1.0


async def test_open_alerts_are_a_gauge_by_kind_and_severity(
    cloud: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    app, http = cloud
    health = app.state.fleet.services.health
    health.record_status("gym-a", "gw-1", StatusData(state=GatewayState.ONLINE))
    health.record_status("gym-a", "gw-1", StatusData(state=GatewayState.OFFLINE))  # its will
    text = (await http.get("/metrics")).text
    assert _sample(text, "denen_alerts_open", kind="gateway_offline", severity="critical") == 1
    assert _sample(text, "denen_fleet_commands_published_total") == 0.0
    health.record_status("gym-a", "gw-1", StatusData(state=GatewayState.ONLINE))  # back
    text = (await http.get("/metrics")).text
    assert _sample(text, "denen_alerts_open", kind="gateway_offline") is None


async def test_metrics_token_is_asked_for_when_set(tmp_path: Path) -> None:
    async for _, http in _app(tmp_path, metrics_token="t" * 32):
        refused = await http.get("/metrics", headers={"Authorization": ""})
        assert refused.status_code == 401
        assert "Bearer" in refused.text
        wrong = await http.get("/metrics", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        ok = await http.get("/metrics", headers={"Authorization": "Bearer " + "t" * 32})
        assert ok.status_code == 200
        assert "denen_http_requests_total" in ok.text


def test_json_formatter_writes_the_trace_id_and_the_exception() -> None:
    record = logging.LogRecord(
        "x", logging.ERROR, __file__, 1, "ticket %s failed", ("A-012",), None
    )
    with traced("0193-abc"):
        line = json.loads(JsonFormatter("agent").format(record))
    assert line == {
        "ts": line["ts"],
        "level": "ERROR",
        "logger": "x",
        "msg": "ticket A-012 failed",
        "trace_id": "0193-abc",
        "service": "agent",
    }
    try:
        raise ValueError("boom")
    except ValueError:
        record.exc_info = sys.exc_info()
    assert "ValueError: boom" in json.loads(JsonFormatter().format(record))["exc"]
