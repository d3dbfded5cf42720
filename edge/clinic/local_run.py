"""The agent running the site's queues by itself: a kiosk check-in gets a number from 700,
a staff action from the local page applies at once, with the same rules as the cloud
(:mod:`protocol.queue_rules`). Each change is committed with its journal entry in one
transaction, then handed to the outbox as a ``checkin`` with ``local`` or a
``clinic_action`` with ``local=True`` (a ``call_next`` is recorded as ``call`` with the
number it called); the journal never holds a card number."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from edge.clinic.day_store import DayStore
from edge.clinic.desk_state import DeskState
from edge.clinic.kiosk_screens import NO_APPOINTMENT, NO_DAY, KioskScreen, KioskScreens, hhmm
from edge.clinic.local_display import LocalDisplays
from edge.clinic.local_queues import apply_action, appointments_of, with_queues
from edge.clinic.outcome import ActionResult, Running
from edge.errors import OutboxError
from edge.outbox import Outbox
from protocol import messages
from protocol.checkin_window import Open, TooEarly, checkin_window
from protocol.clock import Clock
from protocol.messages import (
    CheckinData,
    ClinicAction,
    ClinicActionData,
    ClinicAppointment,
    ClinicStateData,
    LocalTicket,
    MessageType,
)
from protocol.patient_card import PatientCardNumber
from protocol.queue_rules import DepartmentQueue, QueueError

log = logging.getLogger(__name__)


class LocalRun:
    """Check-ins and staff actions decided by this agent, and the journal behind them."""

    def __init__(
        self,
        *,
        store: DayStore,
        outbox: Outbox,
        clock: Clock,
        state: DeskState,
        screens: KioskScreens,
        displays: LocalDisplays,
        events_topic: str,
    ) -> None:
        self.store = store
        self.outbox = outbox
        self.clock = clock
        self.state = state
        self.screens = screens
        self.displays = displays
        self.events_topic = events_topic

    def check_in(
        self,
        kiosk_id: str,
        walk_in: str | None,
        card: PatientCardNumber | None,
        tag: str | None,
        now: float,
    ) -> tuple[KioskScreen, ActionResult]:
        base = self.state.base()
        if base is None:
            log.warning("kiosk %s: no clinic day from the cloud yet; cannot check in", kiosk_id)
            result = ActionResult(ok=False, by=Running.AGENT, message=NO_DAY)
            return self.screens.show(kiosk_id, result), result
        queues = dict(self.state.writable_queues())  # committed below, or dropped
        appointments = appointments_of(base, tag)
        window = checkin_window(appointments, now, base.checkin_opens_before_s)
        if isinstance(window, TooEarly):
            message = (
                f"Your appointment is at {hhmm(window.appointment.at)}. "
                f"Please check in from {hhmm(window.opens_at)}."
            )
            result = ActionResult(ok=False, by=Running.AGENT, message=message)
            return self.screens.show(kiosk_id, result), result
        appointment = window.appointment if isinstance(window, Open) else None
        appointment_at: int | None = None
        if appointment is not None:
            department, appointment_at = appointment.department, appointment.at
        else:
            department = walk_in or base.walk_in_department or ""
        queue = queues.get(department)
        if queue is None:
            result = ActionResult(ok=False, by=Running.AGENT, message=NO_APPOINTMENT)
            return self.screens.show(kiosk_id, result), result
        try:
            outcome = queue.check_in(now, appointment_at=appointment_at)
        except QueueError as exc:
            log.warning("kiosk %s: local check-in refused: %s", kiosk_id, exc)
            result = ActionResult(ok=False, by=Running.AGENT, message=NO_DAY)
            return self.screens.show(kiosk_id, result), result
        ticket = outcome.change.ticket
        queues[department] = outcome.queue
        event_id = self.state.new_id()
        data = CheckinData(
            card=None if card is None else card.digits,
            kiosk=kiosk_id,
            at=int(now),
            department=walk_in,
            local=LocalTicket(
                number=ticket.number, department=department, appointment_at=appointment_at
            ),
        )
        result = self.state.ticket_result(ticket, Running.AGENT, now, "", queue=outcome.queue)
        screen = self.screens.screen(kiosk_id, result, now)
        remaining = [a for a in base.appointments if a is not appointment]
        self.commit(
            queues,
            base,
            event_id=event_id,
            kind=MessageType.CHECKIN,
            data=data,
            now=now,
            appointments=remaining,
            card=(tag, ticket.number, department) if tag is not None else None,
            screen=screen,
        )
        log.info(
            "kiosk %s: checked in %s (%s, issued by this agent)",
            kiosk_id,
            ticket.number,
            "appointment" if appointment is not None else "walk-in",
        )
        return screen, result

    def act(self, data: ClinicActionData, now: float) -> ActionResult:
        base = self.state.base()
        if base is None:
            return ActionResult(
                ok=False,
                by=Running.AGENT,
                message="the queues are not available: this agent has not received the "
                "clinic's day from the cloud yet",
            )
        queues = dict(self.state.writable_queues())  # committed below, or dropped
        queue = queues.get(data.department)
        if queue is None:
            return ActionResult(
                ok=False, by=Running.AGENT, message=f"no department {data.department!r}"
            )
        try:
            outcome = apply_action(queue, data, now)
            queues[data.department] = outcome.queue
            moved = outcome.change.moved_out
            if moved is not None:
                target = queues.get(moved.department)
                if target is None:
                    return ActionResult(
                        ok=False, by=Running.AGENT, message=f"no department {moved.department!r}"
                    )
                queues[moved.department] = target.admit(moved, now).queue
        except QueueError as exc:
            return ActionResult(ok=False, by=Running.AGENT, message=str(exc))
        ticket = outcome.change.ticket
        recorded = data.model_copy(
            update={
                "action": ClinicAction.CALL
                if data.action is ClinicAction.CALL_NEXT
                else data.action,
                "number": ticket.number,
                "local": True,
            }
        )
        event_id = self.state.new_id()
        self.commit(
            queues,
            base,
            event_id=event_id,
            kind=MessageType.CLINIC_ACTION,
            data=recorded,
            now=now,
            appointments=list(base.appointments),
        )
        where = f" to room {ticket.room}" if ticket.room and data.action in _CALLS else ""
        log.info("staff %s %s%s (applied by this agent)", data.action.value, ticket.number, where)
        return ActionResult(
            ok=True,
            by=Running.AGENT,
            number=ticket.number,
            department=ticket.department,
            message=f"{ticket.number}: {ticket.state.value}{where}",
        )

    def commit(
        self,
        queues: dict[str, DepartmentQueue],
        base: ClinicStateData,
        *,
        event_id: str,
        kind: MessageType,
        data: CheckinData | ClinicActionData,
        now: float,
        appointments: list[ClinicAppointment],
        card: tuple[str, str, str] | None = None,
        screen: KioskScreen | None = None,
    ) -> None:
        """One local change: the queues, the journal and the card tag in one transaction,
        then the event into the outbox (with the card number, which the journal never holds)."""
        local = with_queues(base, queues, appointments)
        full = messages.make(kind, data, ts=now, message_id=event_id)
        journal = full
        if isinstance(data, CheckinData) and data.card is not None:
            journal = messages.make(
                kind, data.model_copy(update={"card": None}), ts=now, message_id=event_id
            )
        with self.store.transaction():
            self.store.set_local(local, event_id)
            self.store.journal_add(event_id, journal)
            if card is not None:
                tag, number, department = card
                self.store.set_card(
                    tag, number=number, department=department, request_id=None, at=now
                )
            if screen is not None:
                self.store.set_screen(screen.kiosk, screen.model_dump_json())
        if self.state.local is None:
            log.info("this agent now runs the clinic queues (first local event %s)", event_id)
        self.state.local, self.state.queues = local, queues
        self.state.last_local_event = event_id
        self.flush_journal({event_id: full})
        self.displays.refresh()

    def flush_journal(self, with_card: Mapping[str, bytes]) -> None:
        """Hand journalled events to the outbox in the order they were made (after a crash
        or a full disk, without their card number); the outbox ignores one it has seen."""
        for event_id, body in self.store.journal():
            payload = with_card.get(event_id, body)
            try:
                self.outbox.add(
                    self.events_topic,
                    payload,
                    event_id,
                    now=self.clock.now(),
                    sensitive=payload is not body,
                )
            except OutboxError as exc:
                log.error("local event %s waits for the outbox: %s", event_id, exc)  # noqa: TRY400 - expected failure, no traceback
                return
            self.store.journal_drop(event_id)


_CALLS = (ClinicAction.CALL_NEXT, ClinicAction.CALL, ClinicAction.RECALL)


__all__ = ["LocalRun"]
