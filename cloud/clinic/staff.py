"""Staff actions on a site's queues (call next for my room, call a chosen number, recall,
start, done, no-show, skip, transfer to a room or a department), and the staff's view of a
department's queue.

Each action loads the site's day under its lock (:class:`~cloud.clinic.day.SiteDay`), goes
through :class:`protocol.queue_rules.DepartmentQueue`, writes the ticket it changed and an
entry of the action log, and tells the publisher. What the rules refuse comes back as
their error (unknown ticket 404, a clash with the queue 409, a bad request 400), with a
message that says what to do.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from cloud.clinic.audit import log_action
from cloud.clinic.day import SiteDay
from cloud.clinic.models import Clinic, Patient
from cloud.clinic.notify import PatientNotifier, notify_patients
from cloud.clinic.publish import ClinicChanged
from cloud.core.bus import ChangeBus
from cloud.errors import InvalidRequestError, NotFoundError
from protocol.clinic_sync import apply_action
from protocol.clock import Clock
from protocol.messages import ClinicAction
from protocol.queue_rules import Outcome, QueueTicket, tokyo_day

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class StaffRequest:
    """One action: ``number`` for all but call_next; ``room`` for call_next and call."""

    action: ClinicAction
    number: str | None = None
    room: str | None = None
    to_department: str | None = None
    to_room: str | None = None


@dataclass(frozen=True, slots=True)
class ActionResult:
    """The ticket after the action."""

    action: ClinicAction
    number: str
    department: str
    state: str
    room: str | None
    call_seq: int


def act_on(day: SiteDay, now: float, request: StaffRequest, *, live: bool = True) -> QueueTicket:
    """Apply ``request`` to ``day`` (locked by the caller); the ticket afterwards."""
    action, number, room = request.action, request.number, request.room
    if action is ClinicAction.CALL_NEXT:
        if room is None:
            raise InvalidRequestError("call_next needs the room that calls")
        department = day.department_of_room(room)
        outcome = day.queues[department.slug].call_next(room, now)
    else:
        if number is None:
            raise InvalidRequestError(f"{action.value} needs a ticket number")
        outcome = queue_outcome(day, number, now, request)
    change = day.record(outcome, now, live=live)
    return change.moved_out or change.ticket


def queue_outcome(day: SiteDay, number: str, now: float, request: StaffRequest) -> Outcome:
    """What the queue rules make of ``request`` on ticket ``number``."""
    queue = day.queue_of(number)
    target = request.to_department
    if request.action is ClinicAction.TRANSFER:
        if request.to_room is not None:
            of_room = day.department_of_room(request.to_room).slug
            if target is not None and target != of_room:
                raise InvalidRequestError(
                    f"room {request.to_room} is in {of_room}, not {target}: give one of them"
                )
            target = of_room
        if target is None:
            raise InvalidRequestError(f"say where {number} goes: to_room or to_department")
        day.department(target)  # NotFoundError names the departments
    return apply_action(
        queue,
        request.action,
        now,
        number=number,
        room=request.room,
        to_department=target,
        to_room=request.to_room,
    )


@dataclass(frozen=True, slots=True)
class QueueEntry:
    """A ticket as the staff page lists it (the staff may see the patient's name)."""

    number: str
    state: str
    urgent: bool
    queued_at: float
    appointment_at: float | None
    preferred_room: str | None
    room: str | None
    position: int | None  # 1 = next, for waiting tickets
    estimated_wait_s: float | None
    patient_name: str | None


@dataclass(frozen=True, slots=True)
class RoomEntry:
    room: str
    number: str | None
    state: str | None


@dataclass(frozen=True, slots=True)
class QueueView:
    site: str
    department: str
    name: str
    prefix: str
    rooms: tuple[RoomEntry, ...]
    waiting: tuple[QueueEntry, ...]  # in call order
    others: tuple[QueueEntry, ...]  # called, in a room, skipped, done, no-show


class StaffService:
    """Staff actions and the staff's queue view."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        clock: Clock,
        bus: ChangeBus,
        patients: PatientNotifier,
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        self._bus = bus
        self._patients = patients

    def act(self, site: str, request: StaffRequest, actor: str) -> ActionResult:
        """Apply ``request`` now, log it, notify patients, publish the site."""
        now = self._clock.now()
        with self._sessions.begin() as session:
            day = SiteDay.open(session, site, tokyo_day(now))
            ticket = act_on(day, now, request)
            log_action(
                session,
                site,
                now,
                actor,
                request.action.value,
                number=ticket.number,
                department=ticket.department,
                room=request.room or request.to_room or ticket.room,
            )
            notify_patients(day, self._patients, now)
            gateway = day.clinic.gateway
        log.info("%s %s at %s by %s", request.action.value, ticket.number, site, actor)
        self._bus.publish(ClinicChanged(site, gateway))
        return ActionResult(
            request.action,
            ticket.number,
            ticket.department,
            ticket.state.value,
            ticket.room,
            ticket.call_seq,
        )

    def queue(self, site: str, department: str, *, names: bool = True) -> QueueView:
        """``department``'s queue today: rooms, waiting tickets in call order, the rest."""
        now = self._clock.now()
        with self._sessions() as session:
            clinic = session.scalars(select(Clinic).where(Clinic.site == site)).one_or_none()
            if clinic is None:
                raise NotFoundError(f"there is no clinic at site {site!r}")
            day = SiteDay.load(session, clinic, tokyo_day(now))
            dept = day.department(department)
            queue = day.queues[dept.slug]
            holders: dict[int, str] = {}
            ids = {r.patient_id for r in day.rows.values() if r.patient_id is not None}
            if names and ids:
                rows = session.execute(select(Patient.id, Patient.name).where(Patient.id.in_(ids)))
                holders = {row.id: row.name for row in rows}

            def entry(t: QueueTicket, position: int | None) -> QueueEntry:
                pid = day.rows[t.number].patient_id
                return QueueEntry(
                    number=t.number,
                    state=t.state.value,
                    urgent=t.urgent,
                    queued_at=t.queued_at,
                    appointment_at=t.appointment_at,
                    preferred_room=t.preferred_room,
                    room=t.room,
                    position=position,
                    estimated_wait_s=(
                        None if position is None else round(queue.estimated_wait(t.number, now), 1)
                    ),
                    patient_name=None if pid is None else holders.get(pid),
                )

            order = queue.waiting_order(now)
            waiting = tuple(entry(t, i + 1) for i, t in enumerate(order))
            seen = {t.number for t in order}
            others = tuple(entry(t, None) for t in queue.tickets if t.number not in seen)
            rooms = []
            for label in queue.rooms:
                current = queue.in_room(label)
                rooms.append(
                    RoomEntry(
                        label,
                        None if current is None else current.number,
                        None if current is None else current.state.value,
                    )
                )
            return QueueView(site, dept.slug, dept.name, dept.prefix, tuple(rooms), waiting, others)
