"""The agent's Prometheus ``/metrics``: a small HTTP listener of its own.

Every agent serves it (a gym has no web app; a clinic's pages are on another port, for
the clinic network), on ``[metrics] host/port`` of the site file, by default
127.0.0.1:9108. Gauges are read from the agent at scrape time (:class:`AgentCollector`),
so nothing has to remember to update them. The listener speaks just enough HTTP/1.1 for a
scraper: ``GET /metrics``, one response, close. A port that is taken is logged and the
agent runs on without ``/metrics``: it is no reason to leave a site's doors unattended.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from edge.config import MetricsConfig
from edge.errors import OutboxError

if TYPE_CHECKING:
    from edge.agent import Agent

log = logging.getLogger(__name__)

REQUEST_TIMEOUT_S = 5.0
MAX_REQUEST_BYTES = 8192


class AgentCollector(Collector):
    """The agent's state as Prometheus metrics, read at each scrape."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent

    def collect(self) -> Iterable[Metric]:
        agent = self.agent
        now = agent.clock.now()
        try:
            depth: float = agent.outbox.depth()
            oldest = agent.outbox.oldest_created_at()
        except OutboxError:
            depth, oldest = float("nan"), None
        yield _gauge("denen_agent_outbox_depth", "messages waiting for the broker", depth)
        yield _gauge(
            "denen_agent_outbox_oldest_age_seconds",
            "age of the oldest message waiting in the outbox (0: none waits)",
            0.0 if oldest is None else max(now - oldest, 0.0),
        )
        yield _gauge(
            "denen_agent_mqtt_connected",
            "1 while the MQTT session is up",
            1.0 if agent.link.connected.is_set() else 0.0,
        )
        yield _gauge(
            "denen_agent_config_version",
            "the agent config twin version running (0: only the site file)",
            float(agent.twin.version or 0),
        )
        reachable = GaugeMetricFamily(
            "denen_agent_lock_reachable",
            "1 while the agent has a session with the lock",
            labels=["lock"],
        )
        battery = GaugeMetricFamily(
            "denen_agent_lock_battery_percent",
            "battery as the lock last reported it",
            labels=["lock"],
        )
        sync_age = GaugeMetricFamily(
            "denen_agent_lock_last_sync_age_seconds",
            "time since the lock's last confirmed sync",
            labels=["lock"],
        )
        for lock_id, coordinator in agent.coordinators.items():
            reachable.add_metric([lock_id], 1.0 if coordinator.reachable else 0.0)
            if coordinator.info is not None:
                battery.add_metric([lock_id], float(coordinator.info.battery_pct))
            if coordinator.last_sync is not None:
                sync_age.add_metric([lock_id], max(now - coordinator.last_sync.at, 0.0))
        yield from (reachable, battery, sync_age)
        displays = GaugeMetricFamily(
            "denen_agent_display_reachable",
            "1 while the agent has a session with the display",
            labels=["display"],
        )
        for display_id, display in agent.displays.items():
            displays.add_metric([display_id], 1.0 if display.reachable else 0.0)
        yield displays
        readers = GaugeMetricFamily(
            "denen_agent_card_reader_reachable",
            "1 while the reader's line is open",
            labels=["reader"],
        )
        for reader_id, kiosk in agent.kiosks.items():
            readers.add_metric([reader_id], 1.0 if kiosk.connected else 0.0)
        yield readers
        commands = CounterMetricFamily(
            "denen_agent_commands",
            "fleet commands handled, by verb and reply status",
            labels=["verb", "status"],
        )
        if agent.commands is not None:
            for (verb, status), count in sorted(agent.commands.handled.items()):
                commands.add_metric([verb, status], float(count))
        yield commands


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def agent_registry(agent: Agent) -> CollectorRegistry:
    """A registry of its own per agent (tests run many agents in one process)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(AgentCollector(agent))
    return registry


class MetricsServer:
    """Serves ``GET /metrics`` from ``render``; ``run()`` until cancelled."""

    def __init__(self, config: MetricsConfig, render: Callable[[], bytes]) -> None:
        self.config = config
        self.render = render
        self.port: int | None = None  # the bound port, once listening
        self.listening = asyncio.Event()

    async def run(self) -> None:
        """Listen until cancelled; a port that cannot be bound is logged, not fatal."""
        try:
            server = await asyncio.start_server(self._serve, self.config.host, self.config.port)
        except OSError as exc:
            log.error(  # noqa: TRY400 - expected failure, no traceback
                "metrics: cannot listen on %s:%d (%s); running without /metrics: set another "
                "port in [metrics] of the site config",
                self.config.host,
                self.config.port,
                exc.strerror or exc,
            )
            return
        async with server:
            self.port = int(server.sockets[0].getsockname()[1])
            self.listening.set()
            log.info("metrics on http://%s:%d/metrics", self.config.host, self.port)
            await server.serve_forever()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT_S):
                head = await reader.readuntil(b"\r\n\r\n")
            status, body, ctype = self._answer(head)
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
            pass  # a scraper that went away or sent no request: nothing to answer
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    def _answer(self, head: bytes) -> tuple[str, bytes, str]:
        text = "text/plain; charset=utf-8"
        if len(head) > MAX_REQUEST_BYTES:
            return "431 Request Header Fields Too Large", b"too large\n", text
        parts = head.split(b"\r\n", 1)[0].split()
        if len(parts) != 3:
            return "400 Bad Request", b"bad request\n", text
        method, target = parts[0], parts[1].split(b"?", 1)[0]
        if target != b"/metrics":
            return "404 Not Found", b"try /metrics\n", text
        if method != b"GET":
            return "405 Method Not Allowed", b"GET only\n", text
        return "200 OK", self.render(), CONTENT_TYPE_LATEST


def render_registry(registry: CollectorRegistry) -> Callable[[], bytes]:
    """The text exposition of ``registry``, rendered at each call."""
    return lambda: generate_latest(registry)
