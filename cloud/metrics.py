"""Prometheus ``/metrics`` and request tracing for the cloud.

:class:`TracingMiddleware` (pure ASGI, so it adds microseconds, not a task per request)
runs every request under a trace id — the caller's ``X-Request-ID`` when it is usable, a
new UUIDv7 otherwise — returns it in ``X-Request-ID``, logs one line per request and
counts it by route template (``/api/clinic/{site}/queue``, never the filled-in path, so
the label set stays small). :func:`metrics_router` serves the registry in the text format
and asks for ``Authorization: Bearer <DENEN_CLOUD_METRICS_TOKEN>``; the settings refuse to
start without that token outside development, the only place it is served open.

Each app has its own :class:`~prometheus_client.CollectorRegistry` (tests build many apps
in one process); the MQTT bridge's counters and the fleet's gauges are read at scrape time
by :class:`CloudCollector`.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client import generate_latest as render_metrics
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cloud.fleet.models import Gateway
from cloud.gym.link import LOCK_EVENTS_ROUTE
from protocol.ids import uuid7
from protocol.messages import MessageType
from protocol.tracing import TRACE_ID, valid_trace_id

if TYPE_CHECKING:
    from cloud.fleet.link import FleetLinkStats
    from cloud.mqtt_bridge import BridgeStats

log = logging.getLogger("cloud.http")

REQUEST_ID_HEADER = "x-request-id"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class HttpMetrics:
    """The request counters of one app."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "denen_http_requests",
            "HTTP requests handled, by method, route template and status",
            ("method", "route", "status"),
            registry=registry,
        )
        self.latency = Histogram(
            "denen_http_request_seconds",
            "time to the response's first byte, by route template",
            ("route",),
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )


def _route_template(scope: Scope) -> str:
    # the router leaves the matched route in the scope (Starlette >= 0.33)
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "unmatched"


class TracingMiddleware:
    """Trace id, one log line and the counters per HTTP request (see the module doc)."""

    def __init__(self, app: ASGIApp, metrics: HttpMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = None
        for name, value in scope.get("headers", ()):
            if name == b"x-request-id":
                given = valid_trace_id(value.decode("latin-1"))
                break
        trace_id = given or uuid7()
        token = TRACE_ID.set(trace_id)
        started = time.perf_counter()
        status = 500

        async def send_traced(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", ()))
                headers.append((b"x-request-id", trace_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_traced)
        finally:
            elapsed = time.perf_counter() - started
            route = _route_template(scope)
            self.metrics.requests.labels(scope["method"], route, str(status)).inc()
            self.metrics.latency.labels(route).observe(elapsed)
            log.info("%s %s -> %d in %.1f ms", scope["method"], route, status, elapsed * 1000)
            TRACE_ID.reset(token)


class CloudCollector(Collector):
    """Reads the bridge's counters and the fleet's gauges when Prometheus scrapes."""

    def __init__(
        self,
        bridge_stats: Callable[[], BridgeStats | None],
        gateway_states: Callable[[], dict[str, int]],
        fleet_stats: Callable[[], FleetLinkStats] | None = None,
        open_alerts: Callable[[], dict[tuple[str, str], int]] | None = None,
        snapshots_published: Callable[[], int] = lambda: 0,
    ) -> None:
        self._snapshots_published = snapshots_published
        self._bridge_stats = bridge_stats
        self._gateway_states = gateway_states
        self._fleet_stats = fleet_stats
        self._open_alerts = open_alerts

    def collect(self) -> Iterable[Metric]:
        stats = self._bridge_stats()
        if stats is not None:
            for name, help_text, value in (
                ("denen_mqtt_connects", "broker connections made", stats.connects),
                ("denen_mqtt_malformed", "MQTT messages dropped as malformed", stats.malformed),
                (
                    "denen_mqtt_events_received",
                    "lock events received",
                    stats.received[MessageType.LOCK_EVENT.value],
                ),
                (
                    "denen_mqtt_events_stored",
                    "lock events stored (new)",
                    stats.stored[LOCK_EVENTS_ROUTE],
                ),
                (
                    "denen_mqtt_snapshots_published",
                    "access snapshots published",
                    self._snapshots_published(),
                ),
            ):
                counter = CounterMetricFamily(name, help_text)
                counter.add_metric([], value)
                yield counter
        if self._fleet_stats is not None:
            fleet = self._fleet_stats()
            for name, help_text, value in (
                ("denen_fleet_commands_published", "commands published", fleet.commands_published),
                (
                    "denen_fleet_configs_published",
                    "desired configs published",
                    fleet.configs_published,
                ),
                ("denen_fleet_replies_stored", "command replies stored", fleet.replies_stored),
                (
                    "denen_fleet_replies_ignored",
                    "command replies ignored (duplicates, unknown)",
                    fleet.replies_ignored,
                ),
            ):
                counter = CounterMetricFamily(name, help_text)
                counter.add_metric([], value)
                yield counter
        try:
            states = self._gateway_states()
            alerts = {} if self._open_alerts is None else self._open_alerts()
        except SQLAlchemyError:
            log.exception("metrics: could not count the gateways and alerts")
            return
        open_alerts = GaugeMetricFamily(
            "denen_alerts_open", "open fleet alerts", labels=("kind", "severity")
        )
        for (kind, severity), count in sorted(alerts.items()):
            open_alerts.add_metric([kind, severity], count)
        yield open_alerts
        gauge = GaugeMetricFamily(
            "denen_gateways", "gateways by their last reported state", labels=("state",)
        )
        for state, count in sorted(states.items()):
            gauge.add_metric([state], count)
        yield gauge


def gateway_states(sessions: sessionmaker[Session]) -> dict[str, int]:
    """Gateways by their last reported state, for :class:`CloudCollector`: one aggregate
    query, as Prometheus may scrape every second and a city has thousands of gateways."""
    query = select(Gateway.state, func.count()).group_by(Gateway.state)
    with sessions() as session:
        return {state: int(count) for state, count in session.execute(query)}


def metrics_router(registry: CollectorRegistry, token: str | None) -> APIRouter:
    """``GET /metrics`` in the Prometheus text format."""
    router = APIRouter()

    @router.get("/metrics", include_in_schema=False)
    async def metrics(request: Request) -> Response:
        if token is not None:
            sent = request.headers.get("authorization", "")
            if not hmac.compare_digest(sent.encode(), f"Bearer {token}".encode()):
                return Response(
                    "metrics need Authorization: Bearer <DENEN_CLOUD_METRICS_TOKEN>\n",
                    status_code=401,
                    media_type="text/plain",
                )
        return Response(render_metrics(registry), media_type=CONTENT_TYPE_LATEST)

    return router


def new_registry() -> CollectorRegistry:
    return CollectorRegistry(auto_describe=False)  # describing would query the DB at once
