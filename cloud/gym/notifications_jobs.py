"""The cloud's periodic notification work, as named background tasks of the web
process: ``mail-delivery`` (only with an SMTP host), ``notifications`` (reminders,
no-shows, surveys) and ``unconfirmed-bookings`` (lapse the bookings nobody confirmed from
their mail, freeing their slots). Each pass runs in a worker thread (the services are
blocking), asks the injected clock for the time, and survives its own errors. Several
workers may run them: the jobs are once-only in the database (see ``mail``,
``notifications`` and ``confirmations``).

A plain loop rather than APScheduler: a few fixed intervals need no scheduler, and the
cloud's install does not pull APScheduler in.
"""

from __future__ import annotations

from collections.abc import Callable

from cloud.core.mail import MailDelivery
from cloud.gym.confirmations import ConfirmationService
from cloud.gym.notifications import NotificationService
from cloud.periodic import PeriodicPass
from cloud.settings import CloudSettings
from protocol.clock import Clock


class NotificationJobs:
    """Start and stop the periodic mail delivery and notification passes."""

    def __init__(
        self,
        settings: CloudSettings,
        clock: Clock,
        notifications: NotificationService,
        delivery: MailDelivery | None,
        confirmations: ConfirmationService,
    ) -> None:
        self._settings = settings
        self._clock = clock
        self._notifications = notifications
        self._delivery = delivery
        self._confirmations = confirmations
        self._loops: list[PeriodicPass] = []

    async def start(self) -> None:
        """Start the loops (returns at once)."""
        s = self._settings
        if s.notifications_enabled:
            await self._spawn(
                "notifications",
                lambda: self._notifications.run_due(self._clock.now()),
                s.notifications_poll_s,
            )
        if self._delivery is not None:
            await self._spawn("mail-delivery", self._delivery.deliver_due, s.mail_poll_s)
        await self._spawn(
            "unconfirmed-bookings",
            lambda: self._confirmations.expire_due(self._clock.now()),
            s.booking_confirm_poll_s,
        )

    async def stop(self) -> None:
        """Cancel the loops and wait for them (a pass in a thread finishes by itself)."""
        for loop in self._loops:
            await loop.stop()
        self._loops.clear()

    async def _spawn(self, name: str, job: Callable[[], object], every_s: float) -> None:
        loop = PeriodicPass(name, job, every_s)
        await loop.start()
        self._loops.append(loop)
