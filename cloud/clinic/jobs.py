"""The clinic's periodic pass, a named background task of the web process: end expired
announcements (their displays are republished without them) and republish a site whose
last published state is of another day, so the agent has the new day's appointments and
card key before the first patient arrives. Tests call :meth:`ClinicJobs.run_due`."""

from __future__ import annotations

from dataclasses import dataclass

from cloud.clinic.announcements import AnnouncementService
from cloud.clinic.publish import ClinicChanged, ClinicPublisher
from cloud.core.bus import ChangeBus
from cloud.periodic import PeriodicPass
from cloud.settings import CloudSettings
from protocol.clock import Clock


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
        bus: ChangeBus,
    ) -> None:
        self._settings = settings
        self._clock = clock
        self._announcements = announcements
        self._publisher = publisher
        self._bus = bus
        self._pass = PeriodicPass("clinic-jobs", self.run_due, settings.clinic_poll_s)

    def run_due(self) -> ClinicRun:
        """One pass (blocking: the web process runs it in a worker thread)."""
        now = self._clock.now()
        expired = self._announcements.expire_due(now)
        stale = self._publisher.stale_sites(now)
        for site, gateway in stale:
            self._bus.publish(ClinicChanged(site, gateway))
        return ClinicRun(expired, len(stale))

    async def start(self) -> None:
        """Start the pass every ``clinic_poll_s`` (returns at once)."""
        await self._pass.start()

    async def stop(self) -> None:
        """Cancel the pass and wait for it."""
        await self._pass.stop()
