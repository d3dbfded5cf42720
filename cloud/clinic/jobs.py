"""The clinic's periodic pass, a named background task of the web process: end expired
announcements (their displays are republished without them) and republish a site whose
last published state is of another day, so the agent has the new day's appointments and
card key before the first patient arrives. Tests call :meth:`ClinicJobs.run_due`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

from cloud.clinic.announcements import AnnouncementService
from cloud.clinic.publish import ClinicNotifier, ClinicPublisher
from cloud.settings import CloudSettings
from protocol.clock import Clock

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ClinicRun:
    expired: int
    new_day: int


class ClinicJobs:
    """Start and stop the clinic pass (``start()`` / ``stop()``)."""

    def __init__(
        self,
        settings: CloudSettings,
        clock: Clock,
        announcements: AnnouncementService,
        publisher: ClinicPublisher,
        notifier: ClinicNotifier,
    ) -> None:
        self._settings = settings
        self._clock = clock
        self._announcements = announcements
        self._publisher = publisher
        self._notifier = notifier
        self._task: asyncio.Task[None] | None = None

    def run_due(self) -> ClinicRun:
        """One pass (blocking: the web process runs it in a worker thread)."""
        now = self._clock.now()
        expired = self._announcements.expire_due(now)
        stale = self._publisher.stale_sites(now)
        for site, gateway in stale:
            self._notifier.clinic_changed(site, gateway)
        return ClinicRun(expired, len(stale))

    async def start(self) -> None:
        """Start the loop (returns at once)."""
        self._task = asyncio.create_task(self._loop(), name="clinic-jobs")

    async def stop(self) -> None:
        """Cancel the loop and wait for it."""
        if self._task is None:
            return
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None

    async def _loop(self) -> None:
        every = self._settings.clinic_poll_s
        while True:
            await asyncio.sleep(every)
            try:
                result = await asyncio.to_thread(self.run_due)
                log.debug("clinic pass: %s", result)
            except Exception:  # a bad pass (DB away) must not end the loop; the next retries
                log.exception("clinic pass failed; retrying in %.0f s", every)
