"""The edge agent: one MQTT link, one coordinator per lock and per display, telemetry, fleet
commands, the ``/metrics`` listener, and at a clinic the desk, its kiosk readers and pages —
one TaskGroup — and the scheduler of each lock's periodic full sync.

``Agent`` is an async context manager: entering opens the store and the outbox and applies
the stored config twin, ``run()`` serves until ``stop()`` (or ``restart()``, which a fleet
command asks for: ``exit_status`` then says so), leaving closes them. ``main`` builds it
(composition root).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from types import TracebackType
from typing import Protocol

from edge.agent_config import ConfigTwin
from edge.cert_renewal import CertRenewal
from edge.clinic.desk import ClinicDesk
from edge.clinic.kiosk import KioskReader
from edge.clinic.web import ClinicPages
from edge.commands import CommandService
from edge.config import SiteConfig
from edge.devices.display_coordinator import DisplayCoordinator
from edge.devices.lock_coordinator import LockCoordinator
from edge.errors import OutboxError
from edge.log_ring import LogRing
from edge.metrics import MetricsServer
from edge.mqtt_link import MqttLink
from edge.outbox import Outbox
from edge.store import Store
from edge.sync_schedule import SyncSchedule
from protocol import messages, topics
from protocol.clock import Clock, is_trusted_time
from protocol.messages import (
    AccessSnapshotData,
    CardReaderTelemetry,
    DisplayStateData,
    DisplayTelemetry,
    MessageType,
    TelemetryData,
)

log = logging.getLogger(__name__)

STOP_GRACE_S = 10.0  # time the link gets to say offline before it is cancelled


class AccessService:
    """Keeps the newest snapshot and lets each lock's coordinator decide when to load it
    (at once, or at its next sync: see :meth:`LockCoordinator.snapshot_stored`)."""

    def __init__(self, store: Store, coordinators: list[LockCoordinator]) -> None:
        self.store = store
        self.coordinators = coordinators

    def apply(self, snapshot: AccessSnapshotData) -> None:
        """Store ``snapshot`` if newer and tell every lock; an older one is ignored."""
        if not self.store.save_snapshot(snapshot):
            log.info(
                "access snapshot v%d is not newer than the stored one; ignored", snapshot.version
            )
            return
        log.info("access snapshot v%d stored (%d locks)", snapshot.version, len(snapshot.locks))
        for coordinator in self.coordinators:
            coordinator.snapshot_stored()


class DisplayStateListener(Protocol):
    def state_stored(self) -> None: ...


class DisplayService:
    """Keeps the newest display state and tells every display's coordinator (or, at a
    clinic, the desk, which decides whether the displays follow it or its own queues)."""

    def __init__(self, store: Store, coordinators: Sequence[DisplayStateListener]) -> None:
        self.store = store
        self.coordinators = coordinators

    def apply(self, state: DisplayStateData) -> None:
        """Store ``state`` if newer and tell every display; an older one is ignored."""
        if not self.store.save_display_state(state):
            log.info("display state v%d is not newer than the stored one; ignored", state.version)
            return
        log.info("display state v%d stored (%d displays)", state.version, len(state.displays))
        for coordinator in self.coordinators:
            coordinator.state_stored()


class Agent:
    """The site gateway; see the module docstring."""

    def __init__(
        self,
        config: SiteConfig,
        *,
        store: Store,
        outbox: Outbox,
        link: MqttLink,
        coordinators: list[LockCoordinator],
        schedule: SyncSchedule,
        clock: Clock,
        displays: list[DisplayCoordinator] | None = None,
        desk: ClinicDesk | None = None,
        kiosks: list[KioskReader] | None = None,
        pages: ClinicPages | None = None,
        twin: ConfigTwin,
        log_ring: LogRing | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.outbox = outbox
        self.link = link
        self.coordinators = {c.lock_id: c for c in coordinators}
        self.displays = {d.display_id: d for d in displays or []}
        self.desk = desk
        self.kiosks = {k.kiosk_id: k for k in kiosks or []}
        self.pages = pages
        self.schedule = schedule
        self.clock = clock
        self.twin = twin
        self.log_ring = log_ring
        # wired by main once the agent exists (they call back into it)
        self.commands: CommandService | None = None
        self.metrics: MetricsServer | None = None
        self.renewal: CertRenewal | None = None
        self.exit_status = 0  # what the process exits with once run() returns
        self._stopping = asyncio.Event()
        self._started_at = 0.0

    async def __aenter__(self) -> Agent:
        self.store.open()
        try:
            self.outbox.open(now=self.clock.now())
            if self.desk is not None:
                self.desk.open()
            self.twin.load()
        except BaseException:
            self.outbox.close()
            self.store.close()
            raise
        if self.log_ring is not None:
            self.log_ring.install()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.log_ring is not None:
            self.log_ring.uninstall()
        if self.desk is not None:
            self.desk.close()
        self.outbox.close()
        self.store.close()

    def stop(self) -> None:
        """Ask ``run()`` to publish ``offline``, disconnect and return."""
        self._stopping.set()

    def restart(self, exit_status: int) -> None:
        """Stop as :meth:`stop` does, for the process to exit with ``exit_status`` (the
        service manager starts it again)."""
        self.exit_status = exit_status
        self.stop()

    async def run(self) -> None:
        """Serve the site until ``stop()``."""
        self._started_at = asyncio.get_running_loop().time()
        for coordinator in self.coordinators.values():
            self.schedule.add(coordinator.lock_id, coordinator.scheduled_sync)
        self.schedule.start()
        try:
            await self._serve()
        finally:
            self.schedule.stop()

    async def _serve(self) -> None:
        async with asyncio.TaskGroup() as tg:
            link = tg.create_task(self.link.run(), name="mqtt-link")
            others = [
                tg.create_task(c.run(), name=f"lock-{c.lock_id}")
                for c in self.coordinators.values()
            ]
            others += [
                tg.create_task(d.run(), name=f"display-{d.display_id}")
                for d in self.displays.values()
            ]
            others.append(tg.create_task(self._telemetry_loop(), name="telemetry"))
            if self.commands is not None:
                others.append(tg.create_task(self.commands.run(), name="fleet-commands"))
            if self.metrics is not None:
                others.append(tg.create_task(self.metrics.run(), name="metrics"))
            if self.renewal is not None:
                others.append(tg.create_task(self.renewal.run(self._publish), name="renewal"))
            if self.desk is not None:
                others.append(tg.create_task(self.desk.run(), name="clinic-desk"))
            others += [
                tg.create_task(k.run(), name=f"kiosk-{k.kiosk_id}") for k in self.kiosks.values()
            ]
            if self.pages is not None:
                tg.create_task(self.pages.run(), name="clinic-pages")
            await self._stopping.wait()
            for task in others:
                task.cancel()
            if self.pages is not None:
                self.pages.stop()  # lets uvicorn finish the requests it is serving
            self.link.stop()
            try:
                async with asyncio.timeout(STOP_GRACE_S):
                    await asyncio.shield(link)
            except TimeoutError:
                log.warning("MQTT link did not close within %.0f s; cancelling", STOP_GRACE_S)
                link.cancel()

    async def _publish(self, topic: str, payload: bytes) -> bool:
        return await self.link.publish_now(topic, payload, qos=1)

    # ------------------------------------------------------------ telemetry

    def telemetry(self) -> TelemetryData:
        """The agent's health now."""
        uptime = asyncio.get_running_loop().time() - self._started_at
        now = self.clock.now()
        depth, oldest = self._outbox_state()
        return TelemetryData(
            uptime_s=max(uptime, 0.0),
            outbox_depth=depth,
            frames_dropped=sum(c.stats.frames_dropped for c in self.coordinators.values()),
            time_trusted=is_trusted_time(now),
            locks=[c.telemetry() for c in self.coordinators.values()],
            outbox_oldest_age_s=None if oldest is None else max(now - oldest, 0.0),
            displays=[
                DisplayTelemetry(
                    display_id=d.display_id,
                    reachable=d.reachable,
                    firmware=None if d.firmware is None else d.firmware[:64],
                    shown_version=d.shown_version,
                )
                for d in self.displays.values()
            ],
            card_readers=[
                CardReaderTelemetry(reader_id=k.kiosk_id, reachable=k.connected)
                for k in self.kiosks.values()
            ],
            **self.twin.report(),
        )

    def _outbox_state(self) -> tuple[int, float | None]:
        try:
            return self.outbox.depth(), self.outbox.oldest_created_at()
        except OutboxError as exc:
            log.error("%s", exc)  # noqa: TRY400 - expected failure, no traceback
            return 0, None

    async def _telemetry_loop(self) -> None:
        topic = topics.telemetry(self.config.site, self.config.gateway)
        while True:
            # a new config (perhaps a new interval) is reported at once
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.twin.current.telemetry_interval_s):
                    await self.twin.changed.wait()
            self.twin.changed.clear()
            payload = messages.make(MessageType.TELEMETRY, self.telemetry(), ts=self.clock.now())
            await self.link.publish_now(topic, payload, qos=0)
