"""The fleet's periodic pass, a named background task of the web process (every
``fleet_poll_s``, 15 s by default): gateways silent past their heartbeat, locks that
missed their sync, commands nobody answered, rollouts waiting on time (deferred targets,
soaks, config reports), and the history kept bounded. Like the clinic's pass, a plain
loop running the blocking work in a worker thread; tests call :meth:`FleetJobs.run_due`.
Several workers may run it: each step is idempotent in the database.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from cloud.fleet.health import HealthRun
from cloud.fleet.services import FleetServices
from cloud.periodic import PeriodicPass
from cloud.settings import CloudSettings
from protocol.clock import Clock


@dataclass(frozen=True, slots=True)
class FleetRun:
    health: HealthRun
    commands_expired: int
    rollouts_moved: int
    samples_purged: int


class FleetJobs:
    """Start and stop the fleet pass (``start()`` / ``stop()``)."""

    def __init__(
        self,
        settings: CloudSettings,
        clock: Clock,
        fleet: FleetServices,
        listening_since: Callable[[], float | None],
    ) -> None:
        self._settings = settings
        self._clock = clock
        self._fleet = fleet
        self._listening_since = listening_since
        self._pass = PeriodicPass("fleet-jobs", self.run_due, settings.fleet_poll_s)

    def run_due(self) -> FleetRun:
        """One pass (blocking)."""
        now = self._clock.now()
        health = self._fleet.health.check(now, self._listening_since())
        expired = self._fleet.commands.expire_due(now)
        moved = self._fleet.rollouts.step_all()
        purged = self._fleet.health.purge_samples(now)
        return FleetRun(health, expired, moved, purged)

    async def start(self) -> None:
        """Start the pass every ``fleet_poll_s`` (returns at once)."""
        await self._pass.start()

    async def stop(self) -> None:
        """Cancel the pass and wait for it."""
        await self._pass.stop()
