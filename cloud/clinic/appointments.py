"""Imports from the hospital systems: the patient registry and appointments.

Both are batch upserts, idempotent: a patient by card number, an appointment by its
source system and that system's id (``source``, ``external_id``), so the same batch sent
twice changes nothing and a changed time or a cancellation is just the row sent again.
A batch is all or nothing; an error names the entry (``appointments[3]: …``).

A cancelled appointment is no longer offered at check-in; a ticket already issued for it
stays (the patient is in the waiting room). An import touching a site's appointments of
today republishes that site (the agent needs them to check patients in offline).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload, sessionmaker

from cloud.clinic.checkin import parse_card
from cloud.clinic.models import Appointment, Clinic, Patient
from cloud.clinic.publish import ClinicChanged
from cloud.core.bus import ChangeBus
from cloud.errors import InvalidRequestError, NotFoundError
from protocol.clock import Clock
from protocol.errors import DenenError
from protocol.queue_rules import tokyo_day

log = logging.getLogger(__name__)

MAX_BATCH = 5000
_CHUNK = 500


@dataclass(frozen=True, slots=True)
class PatientRecord:
    card: str
    name: str
    email: str | None = None
    issuing_facility: str | None = None  # default: the facility digits of the card


@dataclass(frozen=True, slots=True)
class AppointmentRecord:
    external_id: str
    card: str
    site: str
    department: str
    at: int
    cancelled: bool = False


@dataclass(frozen=True, slots=True)
class ImportResult:
    created: int
    updated: int
    unchanged: int


def _check_size(kind: str, count: int) -> None:
    if count > MAX_BATCH:
        raise InvalidRequestError(f"send at most {MAX_BATCH} {kind} per request, not {count}")


class AppointmentService:
    """Upsert patients and appointments."""

    def __init__(self, sessions: sessionmaker[Session], clock: Clock, bus: ChangeBus) -> None:
        self._sessions = sessions
        self._clock = clock
        self._bus = bus

    def upsert_patients(self, records: Sequence[PatientRecord]) -> ImportResult:
        """Create or update patients by card number."""
        _check_size("patients", len(records))
        now = int(self._clock.now())
        cleaned: dict[str, tuple[str, str | None, str]] = {}
        for i, r in enumerate(records):
            try:
                card = parse_card(r.card)
            except DenenError as exc:
                raise InvalidRequestError(f"patients[{i}]: {exc}") from None
            name = r.name.strip()
            if not name:
                raise InvalidRequestError(f"patients[{i}]: the name is empty")
            email = (r.email or "").strip().lower() or None
            if email is not None and "@" not in email:
                raise InvalidRequestError(f"patients[{i}]: {email!r} is not an email address")
            cleaned[card.digits] = (name, email, r.issuing_facility or card.facility)
        created = updated = 0
        with self._sessions.begin() as session:
            cards = list(cleaned)
            existing: dict[str, Patient] = {}
            for chunk in range(0, len(cards), _CHUNK):
                part = cards[chunk : chunk + _CHUNK]
                existing.update(
                    (p.card_number, p)
                    for p in session.scalars(select(Patient).where(Patient.card_number.in_(part)))
                )
            for digits, (name, email, facility) in cleaned.items():
                row = existing.get(digits)
                if row is None:
                    session.add(
                        Patient(
                            card_number=digits,
                            name=name,
                            email=email,
                            issuing_facility=facility,
                            created_at=now,
                            updated_at=now,
                        )
                    )
                    created += 1
                elif (row.name, row.email, row.issuing_facility) != (name, email, facility):
                    row.name, row.email, row.issuing_facility = name, email, facility
                    row.updated_at = now
                    updated += 1
        log.info("patients imported: %d new, %d updated", created, updated)
        return ImportResult(created, updated, len(cleaned) - created - updated)

    def upsert_appointments(
        self, source: str, records: Sequence[AppointmentRecord]
    ) -> ImportResult:
        """Create or update appointments by ``(source, external_id)``."""
        _check_size("appointments", len(records))
        source = source.strip()
        if not source:
            raise InvalidRequestError("name the source system (e.g. the hospital's HIS)")
        now = int(self._clock.now())
        today = tokyo_day(now)
        created = updated = 0
        touched: set[tuple[str, str]] = set()
        with self._sessions.begin() as session:
            clinics = {
                c.site: c
                for c in session.scalars(
                    select(Clinic).options(selectinload(Clinic.departments))
                ).all()
            }
            cleaned: dict[str, AppointmentRecord] = {}
            for i, r in enumerate(records):
                try:
                    card = parse_card(r.card)
                except DenenError as exc:
                    raise InvalidRequestError(f"appointments[{i}]: {exc}") from None
                clinic = clinics.get(r.site)
                if clinic is None:
                    raise NotFoundError(f"appointments[{i}]: there is no clinic at site {r.site!r}")
                slugs = [d.slug for d in clinic.departments]
                if r.department not in slugs:
                    raise NotFoundError(
                        f"appointments[{i}]: {r.site} has no department {r.department!r} "
                        f"(departments: {', '.join(slugs)})"
                    )
                if not r.external_id.strip():
                    raise InvalidRequestError(f"appointments[{i}]: external_id is empty")
                cleaned[r.external_id] = AppointmentRecord(
                    r.external_id, card.digits, r.site, r.department, r.at, r.cancelled
                )
            ids = list(cleaned)
            existing: dict[str, Appointment] = {}
            for chunk in range(0, len(ids), _CHUNK):
                part = ids[chunk : chunk + _CHUNK]
                existing.update(
                    (a.external_id, a)
                    for a in session.scalars(
                        select(Appointment).where(
                            Appointment.source == source, Appointment.external_id.in_(part)
                        )
                    )
                )
            for external_id, r in cleaned.items():
                row = existing.get(external_id)
                wanted = (r.card, r.site, r.department, r.at, r.cancelled)
                if row is None:
                    session.add(
                        Appointment(
                            source=source,
                            external_id=external_id,
                            card_number=r.card,
                            site=r.site,
                            department=r.department,
                            at=r.at,
                            cancelled=r.cancelled,
                            imported_at=now,
                        )
                    )
                    created += 1
                elif (row.card_number, row.site, row.department, row.at, row.cancelled) != wanted:
                    if tokyo_day(row.at) == today:  # it leaves today's list
                        touched.add((row.site, clinics[row.site].gateway))
                    row.card_number, row.site, row.department, row.at, row.cancelled = wanted
                    row.imported_at = now
                    updated += 1
                else:
                    continue
                if tokyo_day(r.at) == today:
                    touched.add((r.site, clinics[r.site].gateway))
        log.info("appointments imported from %s: %d new, %d updated", source, created, updated)
        for site, gateway in sorted(touched):
            self._bus.publish(ClinicChanged(site, gateway))
        return ImportResult(created, updated, len(cleaned) - created - updated)
