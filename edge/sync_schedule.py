"""The periodic full sync of every lock: one APScheduler interval job per lock.

``AsyncIOScheduler(timezone="UTC")`` with ``coalesce=True`` (a Pi that slept through
several syncs runs one, not a burst), ``max_instances=1`` (a slow lock never syncs twice
at once) and ``jitter`` (a city's gateways, restarted together after a power cut, do not
all wake their locks in the same second). ``misfire_grace_time=None``: a sync that is late
because the event loop was busy still runs; skipping it would leave a lock 24 h stale.

APScheduler counts time on the machine's clock. The agent's domain code asks the injected
:class:`~protocol.clock.Clock`, so :meth:`SyncSchedule.next_sync_at` maps the job's
countdown onto that clock (the two agree under :class:`~protocol.clock.SystemClock`).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from edge.config import SyncConfig
from protocol.clock import Clock, SystemClock

log = logging.getLogger(__name__)

SyncJob = Callable[[], Awaitable[None]]


def job_id(lock_id: str) -> str:
    """The scheduler's id of a lock's full-sync job."""
    return f"full-sync:{lock_id}"


class SyncSchedule:
    """Owns the scheduler; ``add()`` jobs, ``start()`` inside the loop, ``stop()`` after."""

    def __init__(
        self, config: SyncConfig, clock: Clock, *, machine_clock: Clock | None = None
    ) -> None:
        self.config = config
        self.clock = clock
        self.machine_clock = machine_clock or SystemClock()
        self.scheduler = AsyncIOScheduler(timezone="UTC")

    def add(self, lock_id: str, sync: SyncJob) -> None:
        """Run ``sync`` every ``full_sync_interval_s`` (plus jitter), first one interval
        from now: a lock is synced in full when the agent connects to it anyway."""
        self.scheduler.add_job(
            sync,
            self._trigger(),
            id=job_id(lock_id),
            name=f"full sync of lock {lock_id}",
            coalesce=True,
            max_instances=1,
            misfire_grace_time=None,
            replace_existing=True,
        )

    def retime(self, config: SyncConfig) -> None:
        """Take a new interval and jitter (the config twin): every job runs one new
        interval from now. Unchanged settings leave the jobs alone."""
        old, self.config = self.config, config
        if (old.full_sync_interval_s, old.jitter_s) == (
            config.full_sync_interval_s,
            config.jitter_s,
        ):
            return
        for job in self.scheduler.get_jobs():
            job.reschedule(self._trigger())
        log.info(
            "full sync every %.0f s (jitter up to %.0f s) from now on",
            config.full_sync_interval_s,
            config.jitter_s,
        )

    def _trigger(self) -> IntervalTrigger:
        return IntervalTrigger(
            seconds=self.config.full_sync_interval_s,
            jitter=self.config.jitter_s or None,
            timezone="UTC",
        )

    def start(self) -> None:
        """Start the scheduler on the running event loop."""
        self.scheduler.start()
        log.info(
            "full sync of %d lock(s) every %.0f s (jitter up to %.0f s)",
            len(self.scheduler.get_jobs()),
            self.config.full_sync_interval_s,
            self.config.jitter_s,
        )

    def stop(self) -> None:
        """Stop the scheduler without waiting for a running sync (its task is cancelled)."""
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)

    def job(self, lock_id: str) -> Any:  # apscheduler ships no type hints
        """The APScheduler job of ``lock_id``, or ``None``."""
        return self.scheduler.get_job(job_id(lock_id))

    def next_sync_at(self, lock_id: str) -> float | None:
        """When ``lock_id`` is next synced, on the injected clock; ``None`` when unknown."""
        job = self.job(lock_id)
        when: datetime | None = None if job is None else getattr(job, "next_run_time", None)
        if when is None:
            return None  # not scheduled yet (scheduler not started) or paused
        remaining = when.timestamp() - self.machine_clock.now()
        return self.clock.now() + max(remaining, 0.0)

    def machine_time(self, at: float) -> datetime:
        """The machine-clock datetime for ``at`` on the injected clock (for ``job.modify``)."""
        remaining = at - self.clock.now()
        return datetime.fromtimestamp(self.machine_clock.now() + remaining, UTC)
