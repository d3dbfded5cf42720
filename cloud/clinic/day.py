"""A clinic site's day as the queue rules see it, loaded from and written back to the DB.

Every change to a site's queues goes through :meth:`SiteDay.open` inside one transaction:
it takes the site's lock (``SELECT … FOR UPDATE`` on the ``clinics`` row on PostgreSQL;
SQLite transactions are ``BEGIN IMMEDIATE``, one writer at a time), so two rooms calling
at once are serialised and never get the same ticket. The rules themselves are
:class:`protocol.queue_rules.DepartmentQueue`; this module only loads the day's tickets
into one queue per department, takes each :class:`~protocol.queue_rules.Outcome` back and
writes the ticket it changed.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from cloud.clinic.models import Clinic, Department, Ticket, TicketSource
from cloud.errors import NotFoundError
from protocol.clinic_sync import number_value
from protocol.messages import ClinicTicketState
from protocol.queue_rules import (
    AGENT_NUMBERS,
    CLOUD_NUMBERS,
    SERVICE_HISTORY,
    Change,
    DepartmentQueue,
    IssuedNumber,
    NumberIssuer,
    NumberRange,
    Outcome,
    QueueTicket,
    TicketState,
    UnknownRoomError,
    UnknownTicketError,
)


def lock_clinic(session: Session, site: str) -> Clinic:
    """The site's clinic row, locked for the rest of the transaction (the site's lock)."""
    clinic = session.scalars(
        select(Clinic)
        .where(Clinic.site == site)
        .options(selectinload(Clinic.departments).selectinload(Department.rooms))
        .with_for_update(of=Clinic)
    ).one_or_none()
    if clinic is None:
        raise NotFoundError(f"there is no clinic at site {site!r}")
    return clinic


def queue_ticket(row: Ticket) -> QueueTicket:
    """The queue rules' view of a ticket row."""
    return QueueTicket(
        number=row.number,
        department=row.department,
        queued_at=row.queued_at,
        urgent=row.urgent,
        appointment_at=row.appointment_at,
        preferred_room=row.preferred_room,
        state=TicketState(row.state.value),
        room=row.room,
        call_seq=row.call_seq,
        called_at=row.called_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
    )


def _write(row: Ticket, ticket: QueueTicket) -> None:
    row.department = ticket.department
    row.state = ClinicTicketState(ticket.state.value)
    row.queued_at = ticket.queued_at
    row.urgent = ticket.urgent
    row.appointment_at = ticket.appointment_at
    row.preferred_room = ticket.preferred_room
    row.room = ticket.room
    row.call_seq = ticket.call_seq
    row.called_at = ticket.called_at
    row.started_at = ticket.started_at
    row.finished_at = ticket.finished_at
    if row.first_called_at is None and ticket.called_at is not None:
        row.first_called_at = ticket.called_at


def highest(rows: Iterable[Ticket], prefix: str, numbers: NumberRange) -> int | None:
    """The highest number of ``numbers`` issued under ``prefix`` (wherever the ticket is
    now: a transferred ticket keeps its number)."""
    values = [
        number_value(r.number)
        for r in rows
        if r.number.startswith(f"{prefix}-")
        and numbers.first <= number_value(r.number) <= numbers.last
    ]
    return max(values, default=None)


@dataclass
class SiteDay:
    """One site's queues for one Asia/Tokyo day, and the rows behind them."""

    session: Session
    clinic: Clinic
    day: date
    queues: dict[str, DepartmentQueue]
    rows: dict[str, Ticket]  # by number
    # (number, room) of first calls made now (not replayed): the patient is told
    live_calls: list[tuple[str, str]] = field(default_factory=list)

    @classmethod
    def open(cls, session: Session, site: str, day: date) -> SiteDay:
        """Lock the site and load ``day``'s tickets (raises NotFoundError for no clinic)."""
        return cls.load(session, lock_clinic(session, site), day)

    @classmethod
    def load(cls, session: Session, clinic: Clinic, day: date) -> SiteDay:
        """``day``'s queues of ``clinic`` (already locked by the caller)."""
        rows = session.scalars(
            select(Ticket).where(Ticket.site == clinic.site, Ticket.day == day).order_by(Ticket.id)
        ).all()
        queues = {}
        for department in clinic.departments:
            own = [r for r in rows if r.department == department.slug]
            served = sorted(
                (r for r in own if r.state is ClinicTicketState.DONE and r.finished_at),
                key=lambda r: r.finished_at or 0.0,
            )
            last = highest(rows, department.prefix, CLOUD_NUMBERS)
            queues[department.slug] = DepartmentQueue(
                department=department.slug,
                issuer=NumberIssuer(department.prefix, CLOUD_NUMBERS),
                rooms=tuple(r.label for r in department.rooms),
                day=day,
                tickets=tuple(queue_ticket(r) for r in own),
                last_number=None if last is None else IssuedNumber(department.prefix, last, day),
                service_times=tuple(
                    max((r.finished_at or 0.0) - (r.started_at or r.finished_at or 0.0), 0.0)
                    for r in served
                )[-SERVICE_HISTORY:],
                tolerance=float(department.tolerance_s),
                default_service=float(department.default_service_s),
            )
        return cls(session, clinic, day, queues, {r.number: r for r in rows})

    # ------------------------------------------------------------------ reading

    def department(self, slug: str) -> Department:
        """The department ``slug`` of this clinic; NotFoundError names the ones it has."""
        for department in self.clinic.departments:
            if department.slug == slug:
                return department
        have = ", ".join(d.slug for d in self.clinic.departments) or "none"
        raise NotFoundError(f"{self.clinic.site} has no department {slug!r} (departments: {have})")

    def department_of_room(self, room: str) -> Department:
        """The department whose room ``room`` is (labels are unique within a site)."""
        for department in self.clinic.departments:
            if any(r.label == room for r in department.rooms):
                return department
        rooms = ", ".join(r.label for d in self.clinic.departments for r in d.rooms)
        raise UnknownRoomError(f"room {room} is not a room of {self.clinic.site} (rooms: {rooms})")

    def queue_of(self, number: str) -> DepartmentQueue:
        """The queue that holds ticket ``number`` today."""
        row = self.rows.get(number)
        if row is None or row.department not in self.queues:
            raise UnknownTicketError(f"no ticket {number} at {self.clinic.site} on {self.day}")
        return self.queues[row.department]

    def open_ticket_of(self, patient_id: int) -> Ticket | None:
        """The patient's ticket today that is not done or a no-show, if any."""
        for row in self.rows.values():
            if row.patient_id == patient_id and not TicketState(row.state.value).terminal:
                return row
        return None

    # ------------------------------------------------------------------ writing

    def record(self, outcome: Outcome, now: float, *, live: bool = True) -> Change:
        """Take the queue after an action and write the ticket it changed; a ticket
        transferred to another department is admitted there (keeping its place).
        ``live`` False: a replay of what the agent did earlier (nobody is told again)."""
        change = outcome.change
        updated = {outcome.queue.department: outcome.queue}
        ticket = change.ticket
        if change.moved_out is not None:
            target = self.queues[self.department(change.moved_out.department).slug]
            admitted = target.admit(change.moved_out, now)
            updated[target.department] = admitted.queue
            ticket = change.moved_out
        self.queues.update(updated)
        row = self.rows.get(ticket.number)
        if row is None:
            raise UnknownTicketError(f"no ticket {ticket.number} at {self.clinic.site}")
        first_call = row.first_called_at is None and ticket.called_at is not None
        _write(row, ticket)
        if live and first_call and change.new_call is not None:
            self.live_calls.append((ticket.number, change.new_call.room))
        return change

    def add(
        self,
        outcome: Outcome,
        *,
        source: TicketSource,
        now: float,
        patient_id: int | None = None,
        appointment_id: int | None = None,
    ) -> Ticket:
        """Take the queue after a check-in (or an admitted agent ticket) and insert its row."""
        change = outcome.change
        self.queues[outcome.queue.department] = outcome.queue
        row = Ticket(
            site=self.clinic.site,
            day=self.day,
            number=change.ticket.number,
            patient_id=patient_id,
            appointment_id=appointment_id,
            source=source,
            status_token=secrets.token_urlsafe(18)[:24],
            created_at=int(now),
        )
        _write(row, change.ticket)
        self.session.add(row)
        self.rows[row.number] = row
        return row

    def ticket(self, number: str) -> QueueTicket:
        """Ticket ``number`` as the queue holds it now."""
        return self.queue_of(number).ticket(number)

    def estimated_wait(self, number: str, now: float) -> float:
        """Seconds until ``number`` is likely called."""
        return self.queue_of(number).estimated_wait(number, now)

    def ahead(self, number: str, now: float) -> int:
        """How many waiting tickets are called before ``number`` (0 once called)."""
        order = [t.number for t in self.queue_of(number).waiting_order(now)]
        return order.index(number) if number in order else 0

    def last_numbers(self, prefix: str) -> tuple[int | None, int | None]:
        """The highest cloud-issued and agent-issued numbers under ``prefix`` today."""
        rows = self.rows.values()
        return highest(rows, prefix, CLOUD_NUMBERS), highest(rows, prefix, AGENT_NUMBERS)
