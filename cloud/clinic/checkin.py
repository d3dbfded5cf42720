"""Check-in: a patient card (or a desk check-in without one) becomes a ticket.

The rules, in order:

1. The card must be a valid card number (:class:`~protocol.patient_card.PatientCardNumber`)
   held by a registered patient; the registry is the network's, so a card issued at any
   facility works at every site. Otherwise: "this card is not registered; please see
   reception".
2. A patient who already holds an open ticket at the site today (waiting, called, in a
   room, skipped) gets that ticket back: a second tap never makes a second number.
3. Today's (Asia/Tokyo) appointments of the patient at the site that are not checked in
   and not cancelled: the earliest one that can be checked in (from
   ``clinic_checkin_opens_s``, 30 minutes, before its time) puts the patient in its
   department's queue with its appointment time. If every one of them is later than that,
   the check-in is refused with the time it opens. The window is
   :func:`protocol.checkin_window.checkin_window`, the rule the agent applies offline too.
4. Otherwise a walk-in ticket, in the department asked for (the kiosk's or the app's) or
   the clinic's walk-in department.

Logs name the ticket number, never the card number or the patient.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from cloud.clinic.day import SiteDay
from cloud.clinic.errors import CardNotRegisteredError, CheckinTooEarlyError, InvalidCardError
from cloud.clinic.models import Appointment, Clinic, Patient, Ticket, TicketSource
from cloud.clinic.notify import PatientNotifier, notify_patients
from cloud.clinic.publish import ClinicChanged, day_bounds
from cloud.core.bus import ChangeBus
from cloud.errors import InvalidRequestError, NotFoundError
from cloud.localtime import format_local
from cloud.settings import CloudSettings
from protocol.checkin_window import Open, TooEarly, checkin_window
from protocol.clock import Clock
from protocol.patient_card import CardNumberError, PatientCardNumber
from protocol.queue_rules import TicketState, tokyo_day

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CheckinResult:
    """The ticket a check-in gave (or gave back, ``existing``)."""

    site: str
    number: str
    department: str
    department_name: str
    estimated_wait_s: float
    ahead: int
    appointment_at: int | None
    existing: bool
    status_token: str


@dataclass(frozen=True, slots=True)
class TicketStatus:
    """Where a ticket stands, for the patient's status link (no name, no card)."""

    site: str
    clinic_name: str
    day: date
    number: str
    department: str
    department_name: str
    state: str
    room: str | None
    ahead: int
    estimated_wait_s: float


def parse_card(text: str) -> PatientCardNumber:
    """A card number from what a reader or a person gave; the error never echoes it."""
    try:
        return PatientCardNumber.parse(text)
    except CardNumberError as exc:
        raise InvalidCardError(exc.reason.value.replace("_", " ")) from None


def find_patient(session: Session, card: PatientCardNumber) -> Patient | None:
    """The registered holder of ``card``, whichever facility issued it."""
    return session.scalars(select(Patient).where(Patient.card_number == card.digits)).one_or_none()


def open_appointments(
    session: Session, site: str, card: PatientCardNumber, day: date
) -> list[Appointment]:
    """The card's appointments at ``site`` on ``day`` not cancelled and not checked in."""
    start, end = day_bounds(day)
    return list(
        session.scalars(
            select(Appointment)
            .where(
                Appointment.site == site,
                Appointment.card_number == card.digits,
                Appointment.at >= start,
                Appointment.at < end,
                Appointment.cancelled.is_(False),
                ~select(Ticket.id).where(Ticket.appointment_id == Appointment.id).exists(),
            )
            .order_by(Appointment.at, Appointment.id)
        ).all()
    )


@dataclass(frozen=True, slots=True)
class CheckinRules:
    """The settings a check-in follows."""

    opens_before_s: int
    settings: CloudSettings


def check_in_on(
    day: SiteDay,
    now: float,
    rules: CheckinRules,
    *,
    card: PatientCardNumber | None,
    department: str | None = None,
    urgent: bool = False,
    source: TicketSource = TicketSource.APP,
) -> CheckinResult:
    """Check in on ``day`` (locked by the caller) at ``now``: the module's rules."""
    session, clinic = day.session, day.clinic
    patient = None
    if card is not None:
        patient = find_patient(session, card)
        if patient is None:
            raise CardNotRegisteredError
        held = day.open_ticket_of(patient.id)
        if held is not None:
            return _result(day, held, now, existing=True)
    if department is not None:
        day.department(department)  # an unknown one is refused even if an appointment matches
    appointment = None
    if card is not None:
        appointments = [
            a
            for a in open_appointments(session, clinic.site, card, day.day)
            if a.department in day.queues
        ]
        window = checkin_window(appointments, now, rules.opens_before_s)
        if isinstance(window, TooEarly):
            first, opens = window.appointment, window.opens_at
            zone = rules.settings.zone
            raise CheckinTooEarlyError(
                format_local(first.at, zone)[-5:], format_local(opens, zone)[-5:], opens
            )
        if isinstance(window, Open):
            appointment = window.appointment
    target = appointment.department if appointment else department or _walk_in(clinic)
    queue = day.queues[day.department(target).slug]
    outcome = queue.check_in(
        now,
        urgent=urgent,
        appointment_at=None if appointment is None else float(appointment.at),
    )
    row = day.add(
        outcome,
        source=source,
        now=now,
        patient_id=None if patient is None else patient.id,
        appointment_id=None if appointment is None else appointment.id,
    )
    result = _result(day, row, now, existing=False)
    if result.ahead <= day.department(target).notify_when_left:
        row.left_notified_at = int(now)  # told at check-in: no "your turn is near" notice
    log.info(
        "check-in %s at %s (%s, %s%s)",
        row.number,
        clinic.site,
        target,
        source.value,
        ", appointment" if appointment is not None else "",
    )
    return result


def _walk_in(clinic: Clinic) -> str:
    if clinic.walk_in_department is None:
        have = ", ".join(d.slug for d in clinic.departments)
        raise InvalidRequestError(
            f"{clinic.site} has no walk-in department: say which department ({have})"
        )
    return clinic.walk_in_department


def _result(day: SiteDay, row: Ticket, now: float, *, existing: bool) -> CheckinResult:
    waiting = TicketState(row.state.value) is TicketState.WAITING
    return CheckinResult(
        site=day.clinic.site,
        number=row.number,
        department=row.department,
        department_name=day.department(row.department).name,
        estimated_wait_s=round(day.estimated_wait(row.number, now), 1) if waiting else 0.0,
        ahead=day.ahead(row.number, now),
        appointment_at=None if row.appointment_at is None else int(row.appointment_at),
        existing=existing,
        status_token=row.status_token,
    )


class CheckinService:
    """Check-ins from the app and the desk, and the ticket status link."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        clock: Clock,
        settings: CloudSettings,
        bus: ChangeBus,
        patients: PatientNotifier,
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        self._rules = CheckinRules(settings.clinic_checkin_opens_s, settings)
        self._bus = bus
        self._patients = patients

    @property
    def rules(self) -> CheckinRules:
        return self._rules

    def check_in(
        self,
        site: str,
        card: str | None,
        *,
        department: str | None = None,
        urgent: bool = False,
        source: TicketSource = TicketSource.APP,
    ) -> CheckinResult:
        """Check in at ``site`` now (module docstring); ``card`` None: a desk check-in of
        a patient without a card (a walk-in)."""
        parsed = None if card is None else parse_card(card)
        now = self._clock.now()
        with self._sessions.begin() as session:
            day = SiteDay.open(session, site, tokyo_day(now))
            result = check_in_on(
                day,
                now,
                self._rules,
                card=parsed,
                department=department,
                urgent=urgent,
                source=source,
            )
            if not result.existing:
                notify_patients(day, self._patients, now)
            gateway = day.clinic.gateway
        if not result.existing:
            self._bus.publish(ClinicChanged(site, gateway))
        return result

    def status(self, token: str) -> TicketStatus:
        """The ticket behind a status link (NotFoundError for an unknown token)."""
        now = self._clock.now()
        with self._sessions() as session:
            row = session.scalars(select(Ticket).where(Ticket.status_token == token)).one_or_none()
            if row is None:
                raise NotFoundError("no such ticket: the link may be mistyped or from another day")
            clinic = session.scalars(select(Clinic).where(Clinic.site == row.site)).one()
            day = SiteDay.load(session, clinic, row.day)
            state = TicketState(row.state.value)
            waiting = state is TicketState.WAITING and row.department in day.queues
            return TicketStatus(
                site=row.site,
                clinic_name=clinic.name,
                day=row.day,
                number=row.number,
                department=row.department,
                department_name=day.department(row.department).name,
                state=state.value,
                room=row.room,
                ahead=day.ahead(row.number, now) if waiting else 0,
                estimated_wait_s=round(day.estimated_wait(row.number, now), 1) if waiting else 0.0,
            )
