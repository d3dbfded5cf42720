"""The gym's MQTT side, run by the cloud's bridge (:mod:`cloud.mqtt_bridge`): access
snapshots out (``access``, QoS 1, retained, versioned) and, as routes, what the gym
stores from the gateways: lock events (the audit), applied versions and the locks' part
of telemetry (:mod:`cloud.gym.lock_reports`).

A snapshot goes out after every change (:class:`~cloud.gym.access.AccessChanged` on the
change bus) and every gateway's again at each connect: it is retained and versioned, so
publishing it twice is harmless.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from sqlalchemy.exc import SQLAlchemyError

from cloud.gym.access import AccessChanged, AccessService
from cloud.gym.events import EventService
from cloud.gym.lock_reports import LockReportService
from cloud.mqtt_client import MqttClient, MqttConnectionError, PublishRefusedError
from cloud.mqtt_routes import Arrival, Routes, Storage
from protocol import topics
from protocol.clock import Clock
from protocol.messages import (
    AccessAppliedData,
    LockEventData,
    MessageType,
    TelemetryData,
    make,
)
from protocol.topics import Channel

log = logging.getLogger(__name__)

# when many access snapshots are due (at a connect: every gateway's), this many are built
# per transaction and published at once, each awaiting its PUBACK
SNAPSHOT_CHUNK = 200
SNAPSHOT_RETRY_S = 1.0  # a chunk that could not be built (the DB is away) is due again after
_BuiltSnapshot = tuple[str, str, int, bytes]  # site, gateway, version, payload
LOCK_EVENTS_ROUTE = "lock events"  # its stored count is the cloud's events-stored metric


def add_gym_routes(routes: Routes, events: EventService, locks: LockReportService) -> None:
    """Register what the gym stores from the gateways."""

    def lock_events(arrivals: list[Arrival[LockEventData]]) -> int:
        return events.ingest_batch([(a.site, a.gateway, a.data) for a in arrivals])

    def applied(arrivals: list[Arrival[AccessAppliedData]]) -> None:
        locks.record_applied_many([(a.site, a.gateway, a.data) for a in arrivals])

    def lock_reports(arrivals: list[Arrival[TelemetryData]]) -> None:
        locks.record_telemetry_many([(a.site, a.gateway, a.data) for a in arrivals])

    routes.add(LOCK_EVENTS_ROUTE, Channel.EVENTS, LockEventData, lock_events, Storage.DURABLE)
    routes.add(
        "applied versions", Channel.ACCESS_APPLIED, AccessAppliedData, applied, Storage.BEST_EFFORT
    )
    routes.add("lock reports", Channel.TELEMETRY, TelemetryData, lock_reports, Storage.LATEST)


@dataclass
class AccessLinkStats:
    snapshots_published: int = 0


class AccessLink:
    """Publishes access snapshots (an :class:`~cloud.mqtt_routes.Outlet` of the bridge)."""

    def __init__(self, access: AccessService, clock: Clock) -> None:
        self._access = access
        self._clock = clock
        self._loop: asyncio.AbstractEventLoop | None = None
        self._dirty: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
        self.stats = AccessLinkStats()

    def access_changed(self, change: AccessChanged) -> None:
        """Subscribed to the change bus: safe to call from any thread."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return  # never connected yet: every snapshot is published at the connect
        loop.call_soon_threadsafe(self._dirty.put_nowait, (change.site, change.gateway))

    async def run(self, client: MqttClient) -> None:
        """Every gateway's snapshot now, then each changed one, until the connection ends."""
        self._loop = asyncio.get_running_loop()
        for site, gateway in await asyncio.to_thread(self._access.gateways):
            self._dirty.put_nowait((site, gateway))
        await self._publish_snapshots(client)

    async def _publish_snapshots(self, client: MqttClient) -> None:
        """Publish the snapshots due, :data:`SNAPSHOT_CHUNK` gateways at a time (a connect
        makes every gateway's due at once): the next chunk is built (in a thread) while
        this one's PUBACKs come back. Whatever is not acknowledged when this stops (the
        connection was lost) goes back to ``_dirty``, to go out after the reconnect."""
        while True:
            pending = {await self._dirty.get()}
            while not self._dirty.empty():
                pending.add(self._dirty.get_nowait())
            unsent = set(pending)
            keys = sorted(pending)
            chunks = [keys[i : i + SNAPSHOT_CHUNK] for i in range(0, len(keys), SNAPSHOT_CHUNK)]
            building = asyncio.create_task(self._build_chunk(chunks[0]))
            try:
                for i in range(len(chunks)):
                    built = await building
                    if i + 1 < len(chunks):
                        building = asyncio.create_task(self._build_chunk(chunks[i + 1]))
                    if built is None:  # retried in a second
                        unsent.difference_update(chunks[i])
                    else:  # a snapshot that could not be built was logged; not again now
                        unsent.difference_update(set(chunks[i]) - {(s, g) for s, g, *_ in built})
                        await self._publish_chunk(client, built, unsent)
            finally:
                building.cancel()
                for key in sorted(unsent):
                    self._dirty.put_nowait(key)

    async def _build_chunk(self, keys: list[tuple[str, str]]) -> list[_BuiltSnapshot] | None:
        """The snapshots of ``keys``, built in one transaction and serialised, in a thread;
        None when the DB failed: then they are due again in :data:`SNAPSHOT_RETRY_S`."""
        try:
            return await asyncio.to_thread(self._build_snapshots, keys)
        except SQLAlchemyError:  # the DB is away: these gateways again shortly
            log.exception("could not build %d access snapshots; retrying", len(keys))
            asyncio.get_running_loop().call_later(SNAPSHOT_RETRY_S, self._snapshots_due, keys)
            return None

    def _build_snapshots(self, keys: list[tuple[str, str]]) -> list[_BuiltSnapshot]:
        access = self._access
        try:
            snapshots = access.snapshots(keys)
        except SQLAlchemyError:
            raise
        except Exception:  # a bad row (a bug) must cost only its own gateway
            log.exception("building %d access snapshots failed; one at a time now", len(keys))
            snapshots = {}
            for key in keys:
                try:
                    snapshots.update(access.snapshots([key]))
                except SQLAlchemyError:
                    raise
                except Exception:
                    log.exception(
                        "could not build the access snapshot of %s/%s: its gateway keeps "
                        "the last one until the next change or reconnect",
                        *key,
                    )
        now = self._clock.now()
        return [
            (site, gateway, snapshot.version, make(MessageType.ACCESS_SNAPSHOT, snapshot, ts=now))
            for (site, gateway), snapshot in snapshots.items()
        ]

    async def _publish_chunk(
        self, client: MqttClient, built: list[_BuiltSnapshot], unsent: set[tuple[str, str]]
    ) -> None:
        """Publish ``built`` all at once and await the PUBACKs together; discard each
        acknowledged key from ``unsent``; raise the first :class:`MqttConnectionError`.
        A snapshot the broker refuses (an ACL) is logged and not sent again before the
        next change or reconnect."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        results = await asyncio.gather(
            *(self._publish_one(client, *snapshot) for snapshot in built), return_exceptions=True
        )
        lost: MqttConnectionError | None = None
        for (site, gateway, _version, _payload), result in zip(built, results, strict=True):
            if result is None:
                unsent.discard((site, gateway))
            elif isinstance(result, PublishRefusedError):
                unsent.discard((site, gateway))
                log.error(
                    "the access snapshot of %s/%s was not published: %s", site, gateway, result
                )
            elif isinstance(result, MqttConnectionError):
                lost = lost or result
            else:
                raise result
        if lost is not None:
            raise lost
        elapsed_ms = (loop.time() - started) * 1000
        if len(built) == 1:  # a change (an approval, a cancellation): say where it went
            site, gateway, version, _payload = built[0]
            log.info("published access snapshot v%d to %s/%s", version, site, gateway)
        else:
            log.info("published %d access snapshots in %.0f ms", len(built), elapsed_ms)

    def _snapshots_due(self, keys: list[tuple[str, str]]) -> None:
        for key in keys:
            self._dirty.put_nowait(key)

    async def _publish_one(
        self, client: MqttClient, site: str, gateway: str, version: int, payload: bytes
    ) -> None:
        await client.publish(topics.access(site, gateway), payload, qos=1, retain=True)
        self.stats.snapshots_published += 1
        log.debug("published access snapshot v%d to %s/%s", version, site, gateway)
