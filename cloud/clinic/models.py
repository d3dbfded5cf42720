"""The clinic's tables: clinics and their departments and rooms, the patient registry and
its audit trail, appointments, the day's tickets, the agent's applied requests, the staff
action log and city announcements. Imported by :mod:`cloud.db.models`, so Alembic sees them.

Queue times (``queued_at``, ``called_at`` …) are epoch seconds as ``Float``: they are the
:class:`protocol.queue_rules.QueueTicket` times, compared to order the queue, and the
agent sends them as floats. Every other time is ``BigInteger`` as in the other tables.
"""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from cloud.db.base import Base, string_enum
from protocol.messages import ClinicTicketState, DisplayAnnouncementLevel


class TicketSource(StrEnum):
    """Where a ticket was issued."""

    KIOSK = "kiosk"  # the site's card reader, through the agent while online
    APP = "app"  # the patient's app (REST)
    DESK = "desk"  # reception staff (REST or the agent's staff page)
    AGENT = "agent"  # issued by the agent itself while the internet was down (700-999)


class Clinic(Base):
    """A clinic site: one gateway, its departments, and which departments each of its
    call-number displays shows (``displays``: ``[{"display_id", "departments"}]``).

    ``state_version`` and ``display_version`` are the versions of the last published
    ``clinic_state`` and ``display_state`` (only grow); the row is also the per-site lock
    every queue change takes (``SELECT … FOR UPDATE``)."""

    __tablename__ = "clinics"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    site: Mapped[str] = mapped_column(String(40), unique=True)
    gateway: Mapped[str] = mapped_column(String(40))
    name: Mapped[str] = mapped_column(String(200))
    walk_in_department: Mapped[str | None] = mapped_column(String(40))  # a department slug
    displays: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    state_version: Mapped[int] = mapped_column(BigInteger, server_default="0")
    display_version: Mapped[int] = mapped_column(BigInteger, server_default="0")
    # the newest agent event applied (UUIDv7: ids sort in time order)
    applied_through: Mapped[str | None] = mapped_column(String(64))
    published_day: Mapped[date | None] = mapped_column(Date)  # the day of the last state
    created_at: Mapped[int] = mapped_column(BigInteger)

    departments: Mapped[list[Department]] = relationship(
        back_populates="clinic", order_by="Department.id"
    )


class Department(Base):
    """A department of a clinic: number prefix (unique in the clinic), rooms, how long an
    appointment may go ahead of a walk-in (``tolerance_s``), and how many patients before
    a ticket trigger the "your turn is near" notice (``notify_when_left``)."""

    __tablename__ = "clinic_departments"
    __table_args__ = (
        UniqueConstraint("clinic_id", "slug"),
        UniqueConstraint("clinic_id", "prefix"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    clinic_id: Mapped[int] = mapped_column(ForeignKey("clinics.id"))
    slug: Mapped[str] = mapped_column(String(40))
    name: Mapped[str] = mapped_column(String(60))
    prefix: Mapped[str] = mapped_column(String(3))
    tolerance_s: Mapped[int] = mapped_column(Integer, server_default="900")
    default_service_s: Mapped[int] = mapped_column(Integer, server_default="600")
    notify_when_left: Mapped[int] = mapped_column(Integer, server_default="3")

    clinic: Mapped[Clinic] = relationship(back_populates="departments")
    rooms: Mapped[list[DepartmentRoom]] = relationship(order_by="DepartmentRoom.id")


class DepartmentRoom(Base):
    """A consultation room; its label is unique within the site (it names the room on
    the displays and in the staff's "call next for room 2")."""

    __tablename__ = "clinic_rooms"
    __table_args__ = (UniqueConstraint("clinic_id", "label"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    clinic_id: Mapped[int] = mapped_column(ForeignKey("clinics.id"))
    department_id: Mapped[int] = mapped_column(ForeignKey("clinic_departments.id"), index=True)
    label: Mapped[str] = mapped_column(String(16))


class Patient(Base):
    """The network's patient registry: a card issued at one facility works at all."""

    __tablename__ = "patients"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    card_number: Mapped[str] = mapped_column(String(16), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str | None] = mapped_column(String(320))
    issuing_facility: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[int] = mapped_column(BigInteger)


class PatientChange(Base):
    """The registry's audit trail: who created or changed a patient, when, and what
    (``changes``: ``{field: [before, after]}``, ``before`` null for a new patient)."""

    __tablename__ = "patient_changes"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    at: Mapped[int] = mapped_column(BigInteger)
    actor: Mapped[str] = mapped_column(String(100))
    card_number: Mapped[str] = mapped_column(String(16), index=True)
    action: Mapped[str] = mapped_column(String(16))  # "created" or "updated"
    changes: Mapped[dict[str, list[str | None]]] = mapped_column(JSON)


class Appointment(Base):
    """An appointment imported from a hospital system; ``(source, site, external_id)``
    makes the import idempotent, and keeps each clinic's appointments its own (the same
    id sent for another site is another appointment). Checked in when a ticket points at
    it."""

    __tablename__ = "appointments"
    __table_args__ = (
        UniqueConstraint("source", "site", "external_id"),
        Index("ix_appointments_site_at", "site", "at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source: Mapped[str] = mapped_column(String(40))
    external_id: Mapped[str] = mapped_column(String(100))
    card_number: Mapped[str] = mapped_column(String(16), index=True)
    site: Mapped[str] = mapped_column(String(40))
    department: Mapped[str] = mapped_column(String(40))  # a department slug of the site
    at: Mapped[int] = mapped_column(BigInteger)
    cancelled: Mapped[bool] = mapped_column(Boolean, server_default="0")
    imported_at: Mapped[int] = mapped_column(BigInteger)


class Ticket(Base):
    """One ticket of one Asia/Tokyo day at a site: a :class:`protocol.queue_rules.
    QueueTicket` plus who holds it and where it came from. ``first_called_at`` keeps the
    first call (``called_at`` moves on a recall) for the waiting-time figures;
    ``left_notified_at`` / ``called_notified_at`` make each patient notice once only."""

    __tablename__ = "clinic_tickets"
    __table_args__ = (UniqueConstraint("site", "day", "number"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    site: Mapped[str] = mapped_column(String(40))
    day: Mapped[date] = mapped_column(Date)
    department: Mapped[str] = mapped_column(String(40))
    number: Mapped[str] = mapped_column(String(12))
    state: Mapped[ClinicTicketState] = mapped_column(string_enum(ClinicTicketState, "ticket_state"))
    queued_at: Mapped[float] = mapped_column(Float)
    urgent: Mapped[bool] = mapped_column(Boolean, server_default="0")
    appointment_at: Mapped[float | None] = mapped_column(Float)
    preferred_room: Mapped[str | None] = mapped_column(String(16))
    room: Mapped[str | None] = mapped_column(String(16))
    call_seq: Mapped[int] = mapped_column(Integer, server_default="0")
    called_at: Mapped[float | None] = mapped_column(Float)
    first_called_at: Mapped[float | None] = mapped_column(Float)
    started_at: Mapped[float | None] = mapped_column(Float)
    finished_at: Mapped[float | None] = mapped_column(Float)
    appointment_id: Mapped[int | None] = mapped_column(ForeignKey("appointments.id"), unique=True)
    patient_id: Mapped[int | None] = mapped_column(ForeignKey("patients.id"), index=True)
    source: Mapped[TicketSource] = mapped_column(string_enum(TicketSource, "ticket_source"))
    status_token: Mapped[str] = mapped_column(String(32), unique=True)
    left_notified_at: Mapped[int | None] = mapped_column(BigInteger)
    called_notified_at: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[int] = mapped_column(BigInteger)


class AppliedRequest(Base):
    """An agent's ``checkin`` or ``clinic_action`` (by envelope id), applied once, with its
    answer (sent back in ``clinic_state.results``)."""

    __tablename__ = "clinic_requests"
    __table_args__ = (Index("ix_clinic_requests_site_applied_at", "site", "applied_at"),)

    request_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    site: Mapped[str] = mapped_column(String(40))
    gateway: Mapped[str] = mapped_column(String(40))
    kind: Mapped[str] = mapped_column(String(16))
    ok: Mapped[bool] = mapped_column(Boolean)
    number: Mapped[str | None] = mapped_column(String(12))
    department: Mapped[str | None] = mapped_column(String(40))
    estimated_wait_s: Mapped[float | None] = mapped_column(Float)
    error: Mapped[str | None] = mapped_column(String(300))
    applied_at: Mapped[int] = mapped_column(BigInteger)


class ClinicAction(Base):
    """The staff action log of a site (who did what to which ticket, and whether the
    cloud's queue accepted it: an offline action replayed later may be refused)."""

    __tablename__ = "clinic_actions"
    __table_args__ = (Index("ix_clinic_actions_site_day", "site", "day"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    site: Mapped[str] = mapped_column(String(40))
    day: Mapped[date] = mapped_column(Date)
    at: Mapped[float] = mapped_column(Float)
    actor: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(16))
    number: Mapped[str | None] = mapped_column(String(12))
    department: Mapped[str | None] = mapped_column(String(40))
    room: Mapped[str | None] = mapped_column(String(16))
    ok: Mapped[bool] = mapped_column(Boolean)
    detail: Mapped[str | None] = mapped_column(String(300))


class Announcement(Base):
    """A city announcement on the displays of every clinic site (``sites`` null) or of
    the listed ones, until ``expires_at`` or until ops clear it; ``ended_at`` is set when
    it was cleared or its expiry republished the displays."""

    __tablename__ = "announcements"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    text: Mapped[str] = mapped_column(String(240))
    level: Mapped[DisplayAnnouncementLevel] = mapped_column(
        string_enum(DisplayAnnouncementLevel, "announcement_level")
    )
    expires_at: Mapped[int] = mapped_column(BigInteger)
    sites: Mapped[list[str] | None] = mapped_column(JSON)
    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[int] = mapped_column(BigInteger)
    ended_at: Mapped[int | None] = mapped_column(BigInteger)


class KeptDayFigures(Base):
    """A site's figures of one day (:mod:`cloud.clinic.figures`), kept when the day's
    tickets are deleted (:mod:`cloud.clinic.retention`): counts only, no patient.
    ``checkins_per_hour`` is ``[[hour, checkins], …]``."""

    __tablename__ = "clinic_kept_days"

    site: Mapped[str] = mapped_column(String(40), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    checkins: Mapped[int] = mapped_column(Integer)
    offline_tickets: Mapped[int] = mapped_column(Integer)
    checkins_per_hour: Mapped[list[list[int]]] = mapped_column(JSON)
    kept_at: Mapped[int] = mapped_column(BigInteger)


class KeptDepartmentFigures(Base):
    """One department's line of a :class:`KeptDayFigures` (waiting times as the median
    and 90th percentile the figures page shows)."""

    __tablename__ = "clinic_kept_departments"

    site: Mapped[str] = mapped_column(String(40), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    department: Mapped[str] = mapped_column(String(40), primary_key=True)
    position: Mapped[int] = mapped_column(Integer)  # the order the page lists them in
    name: Mapped[str] = mapped_column(String(60))
    tickets: Mapped[int] = mapped_column(Integer)
    called: Mapped[int] = mapped_column(Integer)
    wait_median_s: Mapped[float | None] = mapped_column(Float)
    wait_p90_s: Mapped[float | None] = mapped_column(Float)
    done: Mapped[int] = mapped_column(Integer)
    no_shows: Mapped[int] = mapped_column(Integer)
