"""The fleet: N gateway links on one event loop, started at a bounded rate, reconnected
with jitter, and one ticker for what is periodic (keepalive, telemetry, a steady stream of
lock events). See the package docstring for why it is built this way.
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from firmware_sim.fleet.link import GatewayLink, Kind
from firmware_sim.fleet.model import SimGateway, site_name
from protocol.clock import Clock

log = logging.getLogger(__name__)

TICK_S = 0.5


@dataclass(frozen=True, slots=True)
class FleetTls:
    """Mutual TLS, as the production broker asks of every gateway: trust ``ca``, present a
    client certificate. ``cert`` and ``key`` are paths that may name ``{site}`` and
    ``{gateway}`` (one pair per gateway, e.g. ``certs/{site}.{gateway}.crt``: each gateway
    has its own identity and ACL user) or not (one pair shared by the whole fleet)."""

    ca: Path
    cert: str
    key: str

    def files(self, site: str, gateway: str) -> tuple[str, str]:
        """The certificate and key paths of one gateway."""
        return (
            self.cert.format(site=site, gateway=gateway),
            self.key.format(site=site, gateway=gateway),
        )

    def context(self, cert: str, key: str) -> ssl.SSLContext:
        """A client context for one certificate: the broker is checked against ``ca``
        (and its name or IP against the certificate's SANs)."""
        ctx = ssl.create_default_context(cafile=str(self.ca))
        ctx.load_cert_chain(cert, key)
        return ctx


@dataclass(frozen=True, slots=True)
class FleetSettings:
    """How the fleet connects and what it sends."""

    host: str = "127.0.0.1"
    port: int = 1883
    keepalive_s: int = 60
    session_expiry_s: int = 7 * 24 * 3600
    telemetry_s: float = 60.0
    inflight: int = 20  # QoS 1 messages in flight per gateway (Mosquitto's default)
    connect_rate: float = 500.0  # new connections per second when the fleet starts
    # after a lost connection the first attempt is uniform over this window; then the
    # window doubles per failed attempt (full jitter), up to the cap
    reconnect_window_s: float = 10.0
    reconnect_cap_s: float = 60.0
    connect_timeout_s: float = 15.0
    events_per_s: float = 0.0  # a steady stream of lock events over the whole fleet
    tls: FleetTls | None = None  # None: plain TCP

    def __post_init__(self) -> None:
        if self.connect_rate <= 0 or self.reconnect_window_s <= 0 or self.inflight < 1:
            raise ValueError("connect_rate, reconnect_window_s and inflight must be positive")


@dataclass(frozen=True, slots=True)
class FleetShape:
    """Which gateways the fleet plays: sites ``{prefix}-00001`` … each with gateway
    ``gateway``, ``locks`` locks, and ``displays`` displays on every ``clinic_every``-th
    site (0: no clinics)."""

    gateways: int
    prefix: str = "fleet"
    gateway: str = "gw-1"
    locks: int = 2
    clinic_every: int = 10
    displays: int = 2

    def build(self, started_at: float, rng: random.Random) -> list[SimGateway]:
        """The gateways, batteries spread between 40 and 100 %."""
        out = []
        for i in range(1, self.gateways + 1):
            clinic = self.clinic_every > 0 and i % self.clinic_every == 0
            out.append(
                SimGateway.create(
                    site_name(self.prefix, i),
                    self.gateway,
                    locks=self.locks,
                    displays=self.displays if clinic else 0,
                    started_at=started_at,
                    battery_start=rng.uniform(40, 100),
                )
            )
        return out


@dataclass
class FleetStats:
    """Counters for the control API and the bench (times are monotonic seconds)."""

    gateways: int = 0
    connected: int = 0
    sessions: int = 0  # sessions made ready, ever
    connections_lost: int = 0
    connect_failures: int = 0
    snapshots_taken: int = 0
    last_snapshot_at: float | None = None
    events_queued: int = 0
    events_acked: int = 0
    last_event_acked_at: float | None = None
    applied_queued: int = 0
    applied_acked: int = 0
    births_acked: int = 0
    telemetry_sent: int = 0
    outbox_depth: int = 0
    access_versions: dict[int, int] = field(default_factory=dict)  # version -> gateways

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["access_versions"] = {str(k): v for k, v in sorted(self.access_versions.items())}
        return out


class Fleet:
    """``run()`` until ``stop()``; thread-unsafe: call everything on the loop."""

    def __init__(
        self,
        gateways: Sequence[SimGateway],
        settings: FleetSettings,
        clock: Clock,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.rng = rng or random.Random()  # noqa: S311 - jitter, not crypto
        self.links = [
            GatewayLink(
                gw,
                self,
                keepalive_s=settings.keepalive_s,
                session_expiry_s=settings.session_expiry_s,
                inflight_max=settings.inflight,
            )
            for gw in gateways
        ]
        self.stats = FleetStats(gateways=len(self.links))
        self._loop: asyncio.AbstractEventLoop | None = None
        self._group: asyncio.TaskGroup | None = None
        self._stopping = asyncio.Event()
        self._started = 0.0
        self._event_credit = 0.0
        self._opening: set[asyncio.Task[None]] = set()
        # one context per certificate: made at a gateway's first connect, then kept (a
        # context costs ~0.7 ms of CPU and ~26 KB; one per connect would double the
        # client side of every handshake)
        self._contexts: dict[tuple[str, str], ssl.SSLContext] = {}
        self._tls_warned = False

    # ------------------------------------------------------------ LinkOwner

    def now(self) -> float:
        assert self._loop is not None
        return self._loop.time()

    def epoch(self) -> float:
        return self.clock.now()

    def link_ready(self, link: GatewayLink) -> None:
        self.stats.connected += 1
        self.stats.sessions += 1

    def link_lost(self, link: GatewayLink, *, was_ready: bool) -> None:
        self.stats.connections_lost += 1
        if was_ready:
            self.stats.connected -= 1
        self._retry(link)

    def published(self, kind: Kind) -> None:
        """Nothing to count when a message is first sent."""

    def acknowledged(self, kind: Kind) -> None:
        if kind is Kind.EVENT:
            self.stats.events_acked += 1
            self.stats.last_event_acked_at = self.now()
        elif kind is Kind.APPLIED:
            self.stats.applied_acked += 1
        else:
            self.stats.births_acked += 1

    def snapshot_taken(self, link: GatewayLink, reports: int) -> None:
        self.stats.snapshots_taken += 1
        self.stats.applied_queued += reports
        self.stats.last_snapshot_at = self.now()

    # ------------------------------------------------------------ run

    async def run(self) -> None:
        """Connect every gateway (``connect_rate`` per second), then serve until
        ``stop()``; a clean stop says ``offline`` for every gateway."""
        self._loop = asyncio.get_running_loop()
        self._started = self.now()
        # like the agent, each gateway reports on its own clock, connected or not (a report
        # due while it is away is skipped): spread over one interval from the start, not
        # all at once after a broker restart
        for link in self.links:
            link.next_telemetry = self._started + self.rng.uniform(0, self.settings.telemetry_s)
        try:
            async with asyncio.TaskGroup() as group:
                self._group = group
                group.create_task(self._ramp(), name="fleet-ramp")
                ticker = group.create_task(self._tick(), name="fleet-ticker")
                await self._stopping.wait()
                ticker.cancel()
                for task in list(self._opening):
                    task.cancel()
                for link in self.links:
                    link.close()
                await asyncio.sleep(0.2)  # let the transports flush their last bytes
        finally:
            self._group = None

    def stop(self) -> None:
        self._stopping.set()

    def emit_events(self, per_gateway: int) -> tuple[int, float]:
        """Queue ``per_gateway`` lock events on every gateway (built first, then queued,
        so the clock starts when they start to flow); returns (count, monotonic start)."""
        epoch = self.epoch()
        batches = [link.gateway.lock_events(per_gateway, epoch) for link in self.links]
        started = self.now()
        for link, payloads in zip(self.links, batches, strict=True):
            for payload in payloads:
                link.enqueue(link.gateway.topic_events, payload, Kind.EVENT)
        count = per_gateway * len(self.links)
        self.stats.events_queued += count
        return count, started

    def snapshot(self) -> FleetStats:
        """The counters now, with the outbox depth and the versions held."""
        self.stats.outbox_depth = sum(link.outbox_depth for link in self.links)
        self.stats.access_versions = dict(
            Counter(link.gateway.access_version for link in self.links)
        )
        return self.stats

    def gateways(self) -> list[dict[str, Any]]:
        """Every gateway: connected, and the access version it holds since when."""
        return [
            {
                "site": link.gateway.site,
                "gateway": link.gateway.gateway,
                "connected": link.ready,
                "access_version": link.gateway.access_version,
                "access_taken_at": link.gateway.access_taken_at,
                "sessions": link.sessions,
            }
            for link in self.links
        ]

    # ------------------------------------------------------------ connecting

    async def _ramp(self) -> None:
        gap = 1.0 / self.settings.connect_rate
        for i, link in enumerate(self.links):
            self._connect(link)
            if i % 50 == 49:  # a sleep per 50 keeps the rate without a timer per link
                await asyncio.sleep(50 * gap)

    def _connect(self, link: GatewayLink) -> None:
        if self._group is None or self._stopping.is_set():
            return
        task = self._group.create_task(self._open(link), name=f"connect-{link.gateway.site}")
        self._opening.add(task)
        task.add_done_callback(self._opening.discard)

    async def _open(self, link: GatewayLink) -> None:
        assert self._loop is not None
        s = self.settings
        try:
            tls = self._tls_context(link)
            async with asyncio.timeout(s.connect_timeout_s):
                await self._loop.create_connection(lambda: link, s.host, s.port, ssl=tls)
        except (OSError, TimeoutError) as exc:  # ssl.SSLError is an OSError
            self.stats.connect_failures += 1
            if isinstance(exc, ssl.SSLError) and not self._tls_warned:
                self._tls_warned = True  # once: a wrong CA or key fails every gateway alike
                log.warning("%s: TLS failed: %s", link.gateway.client_id, exc)
            log.debug("%s: connect failed: %s", link.gateway.client_id, exc)
            self._retry(link)

    def _tls_context(self, link: GatewayLink) -> ssl.SSLContext | None:
        tls = self.settings.tls
        if tls is None:
            return None
        files = tls.files(link.gateway.site, link.gateway.gateway)
        ctx = self._contexts.get(files)
        if ctx is None:
            ctx = self._contexts[files] = tls.context(*files)
        return ctx

    def _retry(self, link: GatewayLink) -> None:
        """Capped exponential backoff with full jitter, widest-first: the first delay is
        already uniform over ``reconnect_window_s``, so a fleet that lost its broker at
        once comes back spread over that window, not in the same second."""
        if self._loop is None or self._stopping.is_set():
            return
        s = self.settings
        ceiling = min(s.reconnect_cap_s, s.reconnect_window_s * 2 ** min(link.attempt, 16))
        link.attempt += 1
        self._loop.call_later(self.rng.uniform(0, ceiling), self._connect, link)

    # ------------------------------------------------------------ periodic

    async def _tick(self) -> None:
        connected_before = -1
        while True:
            await asyncio.sleep(TICK_S)
            now = self.now()
            epoch = self.epoch()
            s = self.settings
            for link in self.links:
                link.keepalive(now)
                if link.transport is not None and not link.ready:
                    if now - link.connected_at > s.connect_timeout_s:
                        link.abort()  # no CONNACK / SUBACK: try again
                elif now >= link.next_telemetry:
                    missed = (now - link.next_telemetry) // s.telemetry_s
                    link.next_telemetry += (missed + 1) * s.telemetry_s
                    if link.ready:
                        gw = link.gateway
                        payload = gw.telemetry(epoch, now - self._started, link.outbox_depth)
                        link.publish_now(gw.topic_telemetry, payload)
                        self.stats.telemetry_sent += 1
            self._steady_events(epoch)
            if self.stats.connected != connected_before:
                connected_before = self.stats.connected
                log.info("%d of %d gateways connected", connected_before, len(self.links))

    def _steady_events(self, epoch: float) -> None:
        if self.settings.events_per_s <= 0:
            return
        self._event_credit += self.settings.events_per_s * TICK_S
        ready = [link for link in self.links if link.ready]
        while self._event_credit >= 1 and ready:
            self._event_credit -= 1
            link = self.rng.choice(ready)
            (payload,) = link.gateway.lock_events(1, epoch)
            link.enqueue(link.gateway.topic_events, payload, Kind.EVENT)
            self.stats.events_queued += 1
        if not ready:
            self._event_credit = 0.0
