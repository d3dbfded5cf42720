"""What a kiosk shows: its messages, the screen built from a check-in's outcome, the screen
kept per kiosk in the day store, and a card tapped again (the same ticket, not a second).

A screen carries a ticket number, never a card number. The messages are in English; the
kiosk page (:mod:`edge.clinic.web`) puts the Japanese line above each.
"""

from __future__ import annotations

import logging
from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict

from edge.clinic.day_store import DayStore
from edge.clinic.desk_state import DeskState
from edge.clinic.in_flight import PendingAnswers
from edge.clinic.outcome import ActionResult, Running
from edge.config import ClinicConfig
from edge.outbox import Outbox
from protocol.clock import Clock
from protocol.queue_rules import TOKYO

log = logging.getLogger(__name__)

MISREAD = "The card could not be read. Please tap it again."
NO_DAY = "Check-in is not available right now. Please go to the reception desk."
NO_APPOINTMENT = "No appointment today for this card. Please go to the reception desk."
SHORTLY = "Checked in. Your number appears here shortly."
SENT = "Sent to the cloud; it has not answered yet. The queue shows the result when it does."
READY = "Please tap your patient card."
ALREADY = "You are already checked in."
CHECKING = "Checking you in…"


class ScreenKind(StrEnum):
    READY = "ready"
    CHECKING = "checking"
    TICKET = "ticket"
    PENDING = "pending"  # sent to the cloud, no answer yet
    ERROR = "error"


class KioskScreen(BaseModel):
    """What a kiosk shows: the last check-in (a number, never a card number) or an error."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kiosk: str
    kind: ScreenKind
    message: str
    number: str | None = None
    department: str | None = None  # the department's name
    estimated_wait_s: float | None = None
    at: float = 0.0
    request_id: str | None = None  # the online request it waits for (PENDING, CHECKING)


class KioskScreens:
    """Every kiosk's screen, kept in the day store until the day ends."""

    def __init__(
        self,
        clinic: ClinicConfig,
        *,
        store: DayStore,
        outbox: Outbox,
        clock: Clock,
        state: DeskState,
        pending: PendingAnswers,
    ) -> None:
        self.clinic = clinic
        self.store = store
        self.outbox = outbox
        self.clock = clock
        self.state = state
        self.pending = pending

    def kiosk_screen(self, kiosk_id: str) -> KioskScreen:
        """What ``kiosk_id`` shows now: its last check-in for ``screen_hold_s``, then READY."""
        now = self.clock.now()
        screen = self.stored_screen(kiosk_id)
        if screen is not None and now - screen.at < self.clinic.screen_hold_s:
            return screen
        return KioskScreen(kiosk=kiosk_id, kind=ScreenKind.READY, message=READY, at=now)

    def stored_screen(self, kiosk_id: str) -> KioskScreen | None:
        body = self.store.screen(kiosk_id)
        return None if body is None else KioskScreen.model_validate_json(body)

    def misread(self, kiosk_id: str) -> KioskScreen:
        """The reader sent a line that is not a card number: ask for another tap."""
        screen = KioskScreen(
            kiosk=kiosk_id, kind=ScreenKind.ERROR, message=MISREAD, at=self.clock.now()
        )
        self.store.set_screen(kiosk_id, screen.model_dump_json())
        log.info("kiosk %s: a card could not be read; asked to tap again", kiosk_id)
        return screen

    def tapped_again(self, kiosk_id: str, tag: str, now: float) -> KioskScreen | None:
        """The same card twice today gets the same ticket, not a second one."""
        record = self.store.card(tag)
        if record is None:
            return None
        if record.number is not None:
            ticket = self.state.find_ticket(record.number)
            if ticket is None or ticket.state.terminal:
                self.store.forget_card(tag)  # no-show or done: a new check-in, a new number
                return None
            log.info("kiosk %s: %s tapped again; same ticket", kiosk_id, record.number)
            return self.show(
                kiosk_id,
                self.state.ticket_result(ticket, self.state.running, now, ALREADY),
            )
        if record.request_id is None:
            return None
        if self.state.connected:  # its row may be on its way to the broker right now
            return self.show(
                kiosk_id,
                ActionResult(ok=True, by=Running.CLOUD, pending=True, message=SHORTLY),
                request_id=record.request_id,
            )
        # the first tap went to the cloud; the link went down since
        row = self.outbox.withdraw(record.request_id)
        if row is None:
            return self.show(
                kiosk_id,
                ActionResult(
                    ok=True,
                    by=Running.CLOUD,
                    pending=True,
                    message="Your check-in reached the hospital system. Your number appears "
                    "here when the connection is back; please ask at the reception desk.",
                ),
                request_id=record.request_id,
            )
        with self.store.transaction():
            self.store.drop_request(record.request_id)
            self.store.forget_card(tag)
        self.pending.discard(record.request_id)
        return None  # this tap checks in here

    def screen(
        self, kiosk_id: str, result: ActionResult, now: float, request_id: str | None = None
    ) -> KioskScreen:
        if result.pending:
            kind = ScreenKind.PENDING
        elif result.ok and result.number is not None:
            kind = ScreenKind.TICKET
        else:
            kind = ScreenKind.ERROR
        return KioskScreen(
            kiosk=kiosk_id,
            kind=kind,
            message=result.message or ("" if kind is ScreenKind.TICKET else NO_DAY),
            number=result.number,
            department=self.state.department_name(result.department),
            estimated_wait_s=result.estimated_wait_s,
            at=now,
            request_id=request_id,
        )

    def show(
        self, kiosk_id: str, result: ActionResult, request_id: str | None = None
    ) -> KioskScreen:
        screen = self.screen(kiosk_id, result, self.clock.now(), request_id)
        self.store.set_screen(kiosk_id, screen.model_dump_json())
        return screen


def hhmm(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, TOKYO).strftime("%H:%M")


__all__ = [
    "ALREADY",
    "CHECKING",
    "MISREAD",
    "NO_APPOINTMENT",
    "NO_DAY",
    "READY",
    "SENT",
    "SHORTLY",
    "KioskScreen",
    "KioskScreens",
    "ScreenKind",
    "hhmm",
]
