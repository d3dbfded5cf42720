"""The desk's requests in flight: a kiosk check-in or a staff action sent to the cloud,
waiting for its answer in the retained ``clinic_state``'s ``results``.

:class:`PendingAnswers` holds the futures the kiosk and the staff page await, keyed by
request id (the event's envelope id), the way :class:`edge.devices.lock_channel.LockChannel`
keeps its pending replies by ``seq``. :class:`RequestsInFlight` keeps the open requests in
the day store and settles them when the cloud answers: the card remembers its number, the
kiosk that still shows the request shows the answer, and whoever waits is told.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from edge.clinic.day_store import DayStore, OpenRequest
from edge.clinic.outcome import ActionResult, Running
from protocol.clock import Clock
from protocol.messages import ClinicResult

if TYPE_CHECKING:  # the screens need the pending answers, not the other way round
    from edge.clinic.kiosk_screens import KioskScreens

log = logging.getLogger(__name__)


class PendingAnswers:
    """Futures for the answers the kiosk and the staff page wait for, by request id."""

    def __init__(self, reply_timeout_s: float) -> None:
        self.reply_timeout_s = reply_timeout_s
        self._waiters: dict[str, asyncio.Future[ActionResult]] = {}

    def expect(self, request_id: str) -> asyncio.Future[ActionResult]:
        waiter: asyncio.Future[ActionResult] = asyncio.get_running_loop().create_future()
        self._waiters[request_id] = waiter
        return waiter

    async def wait(
        self, request_id: str, waiter: asyncio.Future[ActionResult], *, pending: str
    ) -> ActionResult:
        try:
            async with asyncio.timeout(self.reply_timeout_s):
                return await waiter
        except TimeoutError:
            return ActionResult(ok=True, by=Running.CLOUD, pending=True, message=pending)
        finally:
            self._waiters.pop(request_id, None)

    def resolve(self, request_id: str, result: ActionResult) -> None:
        waiter = self._waiters.pop(request_id, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(result)

    def discard(self, request_id: str) -> None:
        self._waiters.pop(request_id, None)

    def end_all(self, running: Running) -> None:
        """The day ended: every waiter is told so."""
        for waiter in self._waiters.values():
            if not waiter.done():
                waiter.set_result(ActionResult(ok=False, by=running, message="the day ended"))
        self._waiters.clear()


class RequestsInFlight:
    """The open requests in the day store, settled by the cloud's answers."""

    def __init__(
        self,
        *,
        store: DayStore,
        clock: Clock,
        pending: PendingAnswers,
        screens: KioskScreens,
    ) -> None:
        self.store = store
        self.clock = clock
        self.pending = pending
        self.screens = screens

    def forget(self, request_id: str) -> None:
        request = self.store.request(request_id)
        with self.store.transaction():
            self.store.drop_request(request_id)
            if request is not None and request.tag is not None:
                self.store.forget_card(request.tag)
        self.pending.discard(request_id)

    def settle(self, results: Sequence[ClinicResult]) -> None:
        """Answers from the cloud to requests still open here."""
        open_ids = {r.request_id: r for r in self.store.requests()}
        for answer in results:
            request = open_ids.get(answer.request_id)
            if request is not None:
                self.answered(request, answer)

    def answered(self, request: OpenRequest, answer: ClinicResult) -> None:
        now = self.clock.now()
        result = ActionResult(
            ok=answer.ok,
            by=Running.CLOUD,
            number=answer.number,
            department=answer.department,
            estimated_wait_s=answer.estimated_wait_s,
            message=answer.error or "",
        )
        with self.store.transaction():
            self.store.drop_request(request.request_id)
            if request.kind == "checkin" and request.tag is not None:
                if answer.ok and answer.number is not None:
                    self.store.set_card(
                        request.tag,
                        number=answer.number,
                        department=answer.department,
                        request_id=None,
                        at=now,
                    )
                else:
                    self.store.forget_card(request.tag)
            if request.kiosk is not None:
                shown = self.screens.stored_screen(request.kiosk)
                if shown is not None and shown.request_id == request.request_id:
                    self.screens.show(request.kiosk, result)
        if request.kind == "checkin":
            log.info(
                "kiosk %s: the cloud answered request %s: %s",
                request.kiosk,
                request.request_id,
                answer.number if answer.ok else "refused",
            )
        self.pending.resolve(request.request_id, result)


__all__ = ["PendingAnswers", "RequestsInFlight"]
