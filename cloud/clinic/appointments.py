"""Imports from the hospital systems: the patient registry and appointments.

Both are batch upserts, idempotent: a patient by card number, an appointment by its
source system, its site and that system's id (``source``, ``site``, ``external_id``), so
the same batch sent twice changes nothing and a changed time or a cancellation is just
the row sent again. A batch is all or nothing; an error names the entry
(``appointments[3]: …``).

**Trust.** The patient registry is the network's: only an integration account with the
``ops`` role writes it (the API says so), and every patient created or changed is
recorded with who, when and what (:class:`~cloud.clinic.models.PatientChange`, read by
:meth:`AppointmentService.patient_changes`). Appointments belong to their site: the site
is part of the key, so a clinic's import can only ever create or change its own (the
same ``external_id`` sent for another site is a new appointment there; to move an
appointment, cancel it at the old site and send it for the new one). The counts an
import answers with say nothing about other clinics' appointments or the registry.

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
from cloud.clinic.models import Appointment, Clinic, Patient, PatientChange
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
class PatientChangeEntry:
    """One entry of the registry's audit trail; ``changes``: field -> [before, after]."""

    at: int
    actor: str
    card: str
    action: str
    changes: dict[str, list[str | None]]


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

    def upsert_patients(self, records: Sequence[PatientRecord], actor: str) -> ImportResult:
        """Create or update patients by card number, each change recorded as ``actor``'s."""
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
                wanted = {"name": name, "email": email, "issuing_facility": facility}
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
                    changes = {k: [None, v] for k, v in wanted.items()}
                    session.add(
                        PatientChange(
                            at=now,
                            actor=actor[:100],
                            card_number=digits,
                            action="created",
                            changes=changes,
                        )
                    )
                    created += 1
                    continue
                had = {
                    "name": row.name,
                    "email": row.email,
                    "issuing_facility": row.issuing_facility,
                }
                changes = {k: [had[k], v] for k, v in wanted.items() if had[k] != v}
                if changes:
                    row.name, row.email, row.issuing_facility = name, email, facility
                    row.updated_at = now
                    session.add(
                        PatientChange(
                            at=now,
                            actor=actor[:100],
                            card_number=digits,
                            action="updated",
                            changes=changes,
                        )
                    )
                    updated += 1
        log.info("patients imported by %s: %d new, %d updated", actor, created, updated)
        return ImportResult(created, updated, len(cleaned) - created - updated)

    def patient_changes(
        self, card: str | None = None, limit: int = 500
    ) -> list[PatientChangeEntry]:
        """The registry's audit trail, newest first; of one card when ``card`` is given."""
        query = select(PatientChange).order_by(PatientChange.id.desc()).limit(limit)
        if card is not None:
            query = query.where(PatientChange.card_number == parse_card(card).digits)
        with self._sessions() as session:
            return [
                PatientChangeEntry(r.at, r.actor, r.card_number, r.action, dict(r.changes))
                for r in session.scalars(query)
            ]

    def upsert_appointments(
        self, source: str, records: Sequence[AppointmentRecord]
    ) -> ImportResult:
        """Create or update appointments by ``(source, site, external_id)``."""
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
            cleaned: dict[tuple[str, str], AppointmentRecord] = {}
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
                cleaned[(r.site, r.external_id)] = AppointmentRecord(
                    r.external_id, card.digits, r.site, r.department, r.at, r.cancelled
                )
            ids = sorted({external_id for _site, external_id in cleaned})
            existing: dict[tuple[str, str], Appointment] = {}
            for chunk in range(0, len(ids), _CHUNK):
                part = ids[chunk : chunk + _CHUNK]
                existing.update(
                    ((a.site, a.external_id), a)
                    for a in session.scalars(
                        select(Appointment).where(
                            Appointment.source == source,
                            Appointment.site.in_(sorted({site for site, _ in cleaned})),
                            Appointment.external_id.in_(part),
                        )
                    )
                )
            for (site, external_id), r in cleaned.items():
                row = existing.get((site, external_id))
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
