"""A patient's data at the clinics: deleted when its time is up, deleted when the patient
asks, handed over when the patient asks (APPI; :mod:`cloud.core.personal_data`).

**Retention** (:meth:`ClinicRetention.run_due`): ``clinic_retention_days`` (90) after an
Asia/Tokyo day, the day's tickets (who checked in when, waited how long, was called to
which room), the staff's actions and the agent's requests of that day, and the
appointments (card number and time) are deleted. First the day's figures
(:mod:`cloud.clinic.figures`: check-ins per hour, per department the waiting-time median
and 90th percentile, done and no-shows) are kept as counts without a patient
(:class:`~cloud.clinic.models.KeptDayFigures`), so the figures page shows the same numbers
afterwards. The network's patient registry is not the clinics' to expire: the hospitals
import it and keep it up to date.

**On request, at one clinic** (clinic staff of the site, or ops): the patient's tickets at
the site are cut from them (no patient, no appointment, a new status link: a number and
its times are left, which name nobody, and the day's figures stay), their appointments at
the site are deleted, and when nothing of theirs is left at any clinic, their registry
entry (name, card, email) and the mail sent to them go too.
"""

from __future__ import annotations

import secrets
from dataclasses import asdict, dataclass
from datetime import date, datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, Delete, delete, exists, func, select
from sqlalchemy.orm import Session, sessionmaker

from cloud.clinic.checkin import find_patient, parse_card
from cloud.clinic.day import lock_clinic
from cloud.clinic.figures import ClinicDayFigures, ClinicFigureService, kept_day
from cloud.clinic.models import (
    AppliedRequest,
    Appointment,
    ClinicAction,
    KeptDayFigures,
    KeptDepartmentFigures,
    Patient,
    Ticket,
)
from cloud.clinic.publish import day_bounds
from cloud.core.models import PersonalDataAction
from cloud.core.personal_data import forget_mail, log_personal_data, mask_card
from cloud.core.spreadsheet import csv_document
from cloud.db.engine import scrub_deleted
from cloud.errors import ConflictError, NotFoundError
from cloud.settings import CloudSettings
from protocol.clock import Clock
from protocol.patient_card import PatientCardNumber
from protocol.queue_rules import TOKYO, tokyo_day

DOMAIN = "clinic"


def _local(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, TOKYO).strftime("%Y-%m-%d %H:%M")


@dataclass(frozen=True, slots=True)
class PatientErasurePreview:
    """What an erasure at ``site`` would touch: the confirmation step shows it."""

    site: str
    tickets: int
    appointments: int


@dataclass(frozen=True, slots=True)
class PatientErasure:
    tickets_unlinked: int
    appointments_deleted: int
    registry_deleted: int
    mails_deleted: int


@dataclass(frozen=True, slots=True)
class PatientExport:
    """One patient's data at one site: their registry entry (None when the network does
    not know the card), their tickets and appointments there."""

    site: str
    patient: dict[str, Any] | None
    tickets: list[dict[str, Any]]
    appointments: list[dict[str, Any]]


EXPORT_COLUMNS = (
    "record",
    "site",
    "day",
    "number",
    "department",
    "state",
    "room",
    "checked_in_local",
    "first_called_local",
    "finished_local",
    "appointment_local",
    "cancelled",
)


def patient_csv(export: PatientExport) -> str:
    """The tickets and appointments of an export as CSV, one line each (the registry
    entry is in the JSON); cells that could be formulas are quoted."""
    rows = [{"record": "ticket", "site": export.site, **t} for t in export.tickets]
    rows += [
        {"record": "appointment", "site": export.site, **a, "appointment_local": a["at_local"]}
        for a in export.appointments
    ]
    return csv_document(EXPORT_COLUMNS, ([row.get(c) for c in EXPORT_COLUMNS] for row in rows))


def _deleted(session: Session, statement: Delete) -> int:
    result = cast(CursorResult[Any], session.execute(statement))  # a DELETE's result
    return int(result.rowcount or 0)


def _keep(session: Session, figures: ClinicDayFigures, now: int) -> None:
    session.add(
        KeptDayFigures(
            site=figures.site,
            day=figures.day,
            checkins=figures.checkins,
            offline_tickets=figures.offline_tickets,
            checkins_per_hour=[[h.hour, h.checkins] for h in figures.checkins_per_hour],
            kept_at=now,
        )
    )
    session.add_all(
        KeptDepartmentFigures(
            site=figures.site,
            day=figures.day,
            department=d.department,
            position=position,
            name=d.name,
            tickets=d.tickets,
            called=d.called,
            wait_median_s=d.wait_median_s,
            wait_p90_s=d.wait_p90_s,
            done=d.done,
            no_shows=d.no_shows,
        )
        for position, d in enumerate(figures.departments)
    )


class ClinicRetention:
    """The clinic's :class:`~cloud.core.personal_data.RetentionPolicy`, and erasure and
    export on a patient's request."""

    domain = DOMAIN

    def __init__(
        self,
        sessions: sessionmaker[Session],
        clock: Clock,
        settings: CloudSettings,
        figures: ClinicFigureService,
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        self._settings = settings
        self._figures = figures

    def first_kept_day(self, now: float) -> date:
        """The oldest Asia/Tokyo day whose check-ins are still kept at ``now``."""
        return tokyo_day(now) - timedelta(days=self._settings.clinic_retention_days)

    def run_due(self, now: int) -> dict[str, int]:
        """Keep the figures of every day past the period, then delete its tickets, the
        actions and requests of its time, and the appointments before it."""
        first = self.first_kept_day(now)
        cut, _ = day_bounds(first)
        with self._sessions() as session:
            days = session.execute(
                select(Ticket.site, Ticket.day).where(Ticket.day < first).distinct()
            ).all()
        kept = tickets = 0
        for site, day in days:
            try:
                figures = self._figures.day(site, day)
            except NotFoundError:  # the clinic is gone: no page shows its figures
                figures = None
            with self._sessions.begin() as session:
                if figures is not None:
                    lock_clinic(session, site)  # no queue change of the site meanwhile
                    if kept_day(session, site, day) is None:
                        _keep(session, figures, now)
                        kept += 1
                tickets += _deleted(
                    session, delete(Ticket).where(Ticket.site == site, Ticket.day == day)
                )
        with self._sessions.begin() as session:
            appointments = _deleted(
                session,
                delete(Appointment).where(
                    Appointment.at < cut, ~exists().where(Ticket.appointment_id == Appointment.id)
                ),
            )
            actions = _deleted(session, delete(ClinicAction).where(ClinicAction.day < first))
            requests = _deleted(
                session, delete(AppliedRequest).where(AppliedRequest.applied_at < cut)
            )
        return {
            "days_kept_as_figures": kept,
            "tickets_deleted": tickets,
            "appointments_deleted": appointments,
            "actions_deleted": actions,
            "requests_deleted": requests,
        }

    def preview(self, card: str, site: str) -> PatientErasurePreview:
        """How many tickets and appointments of the card at ``site`` an erasure touches;
        NotFoundError when there are none."""
        number = parse_card(card)
        with self._sessions() as session:
            tickets, appointments = self._counts(session, number, site)
        if not tickets and not appointments:
            raise NotFoundError(
                "this card has no check-in and no appointment at this clinic (or they are "
                "already deleted); check the number with the patient"
            )
        return PatientErasurePreview(site, tickets, appointments)

    def erase(self, card: str, site: str, actor: str, expected: tuple[int, int]) -> PatientErasure:
        """Erase the card's data at ``site`` (module docstring); logged. ``expected`` is
        the (tickets, appointments) the confirmation showed: a ConflictError when that
        changed. ``actor`` is ``<role>:<username>``."""
        number = parse_card(card)
        now = int(self._clock.now())
        with self._sessions.begin() as session:
            lock_clinic(session, site)
            seen = self._counts(session, number, site)
            if seen != expected or seen == (0, 0):
                raise ConflictError(
                    f"this card now has {seen[0]} check-ins and {seen[1]} appointments here, "
                    f"not the {expected[0]} and {expected[1]} you confirmed; look again"
                )
            patient = find_patient(session, number)
            tickets = (
                []
                if patient is None
                else session.scalars(
                    select(Ticket).where(Ticket.site == site, Ticket.patient_id == patient.id)
                ).all()
            )
            for ticket in tickets:
                ticket.patient_id = ticket.appointment_id = None
                ticket.status_token = secrets.token_urlsafe(18)[:24]  # the old link leads nowhere
            session.flush()  # before its appointments go
            deleted = _deleted(
                session,
                delete(Appointment).where(
                    Appointment.site == site, Appointment.card_number == number.digits
                ),
            )
            registry = mails = 0
            if patient is not None and not self._held_anywhere(session, patient):
                if patient.email:
                    mails = forget_mail(session, patient.email)
                session.delete(patient)
                registry = 1
            result = PatientErasure(len(tickets), deleted, registry, mails)
            log_personal_data(
                session,
                now=now,
                actor=actor,
                action=PersonalDataAction.ERASURE,
                domain=DOMAIN,
                site=site,
                subject=mask_card(number.digits),
                counts=asdict(result),
            )
        scrub_deleted(self._sessions)
        return result

    def export(self, card: str, site: str, actor: str) -> PatientExport:
        """The card's registry entry, tickets and appointments at ``site``; logged."""
        number = parse_card(card)
        now = int(self._clock.now())
        with self._sessions.begin() as session:
            patient = find_patient(session, number)
            tickets = (
                []
                if patient is None
                else session.scalars(
                    select(Ticket)
                    .where(Ticket.site == site, Ticket.patient_id == patient.id)
                    .order_by(Ticket.queued_at)
                ).all()
            )
            appointments = session.scalars(
                select(Appointment)
                .where(Appointment.site == site, Appointment.card_number == number.digits)
                .order_by(Appointment.at)
            ).all()
            export = PatientExport(
                site=site,
                patient=None
                if patient is None
                else {
                    "card": number.grouped,
                    "name": patient.name,
                    "email": patient.email,
                    "issuing_facility": patient.issuing_facility,
                },
                tickets=[
                    {
                        "day": t.day.isoformat(),
                        "number": t.number,
                        "department": t.department,
                        "state": t.state.value,
                        "room": t.room,
                        "checked_in_local": _local(t.queued_at),
                        "first_called_local": _local(t.first_called_at),
                        "finished_local": _local(t.finished_at),
                    }
                    for t in tickets
                ],
                appointments=[
                    {
                        "department": a.department,
                        "at_local": _local(a.at),
                        "cancelled": a.cancelled,
                    }
                    for a in appointments
                ],
            )
            log_personal_data(
                session,
                now=now,
                actor=actor,
                action=PersonalDataAction.EXPORT,
                domain=DOMAIN,
                site=site,
                subject=mask_card(number.digits),
                counts={"tickets": len(export.tickets), "appointments": len(appointments)},
            )
        return export

    @staticmethod
    def _counts(session: Session, card: PatientCardNumber, site: str) -> tuple[int, int]:
        patient = find_patient(session, card)
        tickets = (
            0
            if patient is None
            else session.scalar(
                select(func.count())
                .select_from(Ticket)
                .where(Ticket.site == site, Ticket.patient_id == patient.id)
            )
            or 0
        )
        appointments = (
            session.scalar(
                select(func.count())
                .select_from(Appointment)
                .where(Appointment.site == site, Appointment.card_number == card.digits)
            )
            or 0
        )
        return tickets, appointments

    @staticmethod
    def _held_anywhere(session: Session, patient: Patient) -> bool:
        ticket = session.scalar(select(Ticket.id).where(Ticket.patient_id == patient.id).limit(1))
        appointment = session.scalar(
            select(Appointment.id).where(Appointment.card_number == patient.card_number).limit(1)
        )
        return ticket is not None or appointment is not None
