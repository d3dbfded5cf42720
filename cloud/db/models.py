"""The cloud's tables. Times are UTC epoch seconds (``BigInteger``) on both dialects."""

from __future__ import annotations

from datetime import date
from enum import StrEnum

from sqlalchemy import (
    BigInteger,
    Date,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy import Enum as SqlEnum
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# Stable constraint names, so migrations read the same on SQLite and PostgreSQL.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base with the naming convention."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Role(StrEnum):
    OPS = "ops"
    MANAGER = "manager"


class ReservationStatus(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    CANCELLED = "cancelled"


class PaymentState(StrEnum):
    """unpaid → paid → refunded (the table of moves is in ``cloud.services.payments``)."""

    UNPAID = "unpaid"
    PAID = "paid"
    REFUNDED = "refunded"


def _enum(enum: type[StrEnum], name: str) -> SqlEnum:
    # VARCHAR + CHECK on both dialects; no native PostgreSQL type to migrate later
    return SqlEnum(
        enum,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=16,
        values_callable=lambda e: [m.value for m in e],
    )


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(256))
    role: Mapped[Role] = mapped_column(_enum(Role, "role"))
    created_at: Mapped[int] = mapped_column(BigInteger)


class Facility(Base):
    """A public facility (a school gym) with its booking rules; times are minutes from
    local midnight, durations minutes, fees yen."""

    __tablename__ = "facilities"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    site: Mapped[str] = mapped_column(String(40), index=True)
    gateway: Mapped[str] = mapped_column(String(40))
    hourly_fee_yen: Mapped[int] = mapped_column(Integer, server_default="0")
    min_booking_minutes: Mapped[int] = mapped_column(Integer, server_default="30")
    max_booking_minutes: Mapped[int] = mapped_column(Integer, server_default="1440")
    lead_time_minutes: Mapped[int] = mapped_column(Integer, server_default="0")
    horizon_days: Mapped[int] = mapped_column(Integer, server_default="90")
    # bookings on Mon-Fri inside [from, until) are approved by themselves; null: no such rule
    off_peak_from_minute: Mapped[int | None] = mapped_column(Integer)
    off_peak_until_minute: Mapped[int | None] = mapped_column(Integer)
    payment_method: Mapped[str] = mapped_column(String(16), server_default="counter")

    locks: Mapped[list[Lock]] = relationship(back_populates="facility", order_by="Lock.lock_id")
    rooms: Mapped[list[Room]] = relationship(back_populates="facility", order_by="Room.id")
    hours: Mapped[list[OpeningHours]] = relationship(order_by="OpeningHours.weekday")
    closed_days: Mapped[list[ClosedDay]] = relationship(order_by="ClosedDay.day")


class OpeningHours(Base):
    """When a facility is open on one weekday (0 = Monday); a missing weekday is closed."""

    __tablename__ = "opening_hours"

    facility_id: Mapped[int] = mapped_column(ForeignKey("facilities.id"), primary_key=True)
    weekday: Mapped[int] = mapped_column(Integer, primary_key=True)
    opens_minute: Mapped[int] = mapped_column(Integer)
    closes_minute: Mapped[int] = mapped_column(Integer)  # up to 1440 (midnight)


class ClosedDay(Base):
    """A local date the facility takes no bookings (a school event, a holiday)."""

    __tablename__ = "closed_days"

    facility_id: Mapped[int] = mapped_column(ForeignKey("facilities.id"), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    reason: Mapped[str] = mapped_column(String(200))


class RegisteredGroup(Base):
    """A group the facility knows (a club, a neighbourhood association): its bookings,
    recognised by the contact email, are approved by themselves."""

    __tablename__ = "registered_groups"
    __table_args__ = (UniqueConstraint("facility_id", "email"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    facility_id: Mapped[int] = mapped_column(ForeignKey("facilities.id"))
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str] = mapped_column(String(320))  # stored lower-case


class Room(Base):
    """A bookable unit of a facility (the hall, a court, the martial-arts room)."""

    __tablename__ = "rooms"
    __table_args__ = (UniqueConstraint("facility_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    facility_id: Mapped[int] = mapped_column(ForeignKey("facilities.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    capacity: Mapped[int | None] = mapped_column(Integer)  # largest group; null: no limit

    facility: Mapped[Facility] = relationship(back_populates="rooms")


class Lock(Base):
    """A keypad lock. ``room_id`` null: an entrance door that every room's PIN opens;
    set: the door of that room only."""

    __tablename__ = "locks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    lock_id: Mapped[str] = mapped_column(String(40), unique=True)
    facility_id: Mapped[int] = mapped_column(ForeignKey("facilities.id"), index=True)
    room_id: Mapped[int | None] = mapped_column(ForeignKey("rooms.id"))
    name: Mapped[str] = mapped_column(String(200))
    pin_key: Mapped[str] = mapped_column(String(64))
    applied_version: Mapped[int | None] = mapped_column(Integer)
    applied_at: Mapped[int | None] = mapped_column(BigInteger)

    facility: Mapped[Facility] = relationship(back_populates="locks")


class Reservation(Base):
    """A citizen's booking of a room. ``decided_by``/``cancelled_by`` say who acted:
    ``manager:<username>``, ``rule:<rule>`` or ``citizen``."""

    __tablename__ = "reservations"
    __table_args__ = (Index("ix_reservations_room_status", "room_id", "status"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    facility_id: Mapped[int] = mapped_column(ForeignKey("facilities.id"))
    room_id: Mapped[int] = mapped_column(ForeignKey("rooms.id"))
    citizen_name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str] = mapped_column(String(320))
    group_size: Mapped[int] = mapped_column(Integer, server_default="1")
    purpose: Mapped[str] = mapped_column(String(500), server_default="")
    starts_at: Mapped[int] = mapped_column(BigInteger)
    ends_at: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[ReservationStatus] = mapped_column(_enum(ReservationStatus, "status"))
    access_token: Mapped[str] = mapped_column(String(64))
    # a client's Idempotency-Key: a retried POST gets this booking back, not a second one
    idempotency_key: Mapped[str | None] = mapped_column(String(64), unique=True)
    created_at: Mapped[int] = mapped_column(BigInteger)
    decided_by: Mapped[str | None] = mapped_column(String(100))
    decided_at: Mapped[int | None] = mapped_column(BigInteger)
    cancelled_by: Mapped[str | None] = mapped_column(String(100))
    cancelled_at: Mapped[int | None] = mapped_column(BigInteger)
    cancel_reason: Mapped[str | None] = mapped_column(String(500))
    fee_yen: Mapped[int] = mapped_column(Integer, server_default="0")
    payment_method: Mapped[str] = mapped_column(String(16), server_default="counter")
    payment_state: Mapped[PaymentState] = mapped_column(
        _enum(PaymentState, "payment_state"), server_default=PaymentState.UNPAID.value
    )
    paid_at: Mapped[int | None] = mapped_column(BigInteger)
    paid_by: Mapped[str | None] = mapped_column(String(100))
    refunded_at: Mapped[int | None] = mapped_column(BigInteger)
    refunded_by: Mapped[str | None] = mapped_column(String(100))

    facility: Mapped[Facility] = relationship()
    room: Mapped[Room] = relationship()
    grant: Mapped[AccessGrant | None] = relationship(back_populates="reservation")


class AccessGrant(Base):
    """The PIN of one approved booking. It opens every lock that serves the booking's
    room (see :class:`Lock`); ``revoked_at`` set: cancelled, out of every snapshot."""

    __tablename__ = "access_grants"
    __table_args__ = (Index("ix_access_grants_window_end", "window_end"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    reservation_id: Mapped[str] = mapped_column(ForeignKey("reservations.id"), unique=True)
    pin: Mapped[str] = mapped_column(String(12))
    window_start: Mapped[int] = mapped_column(BigInteger)
    window_end: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[int] = mapped_column(BigInteger)
    revoked_at: Mapped[int | None] = mapped_column(BigInteger)

    reservation: Mapped[Reservation] = relationship(back_populates="grant")


class SiteAccessVersion(Base):
    """Per site and gateway, the version of the latest access snapshot (only grows)."""

    __tablename__ = "site_access_versions"

    site: Mapped[str] = mapped_column(String(40), primary_key=True)
    gateway: Mapped[str] = mapped_column(String(40), primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[int] = mapped_column(BigInteger)


class LockEvent(Base):
    """One event as the lock numbered it; ``(lock_id, seq)`` makes ingest idempotent."""

    __tablename__ = "lock_events"
    __table_args__ = (UniqueConstraint("lock_id", "seq"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    lock_id: Mapped[str] = mapped_column(String(40))
    seq: Mapped[int] = mapped_column(BigInteger)
    lock_ts: Mapped[int] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(String(32))
    grant_id: Mapped[str | None] = mapped_column(String(64))
    slot: Mapped[int | None] = mapped_column(Integer)
    value: Mapped[int | None] = mapped_column(BigInteger)
    received_at: Mapped[int] = mapped_column(BigInteger)


class Gateway(Base):
    __tablename__ = "gateways"

    site: Mapped[str] = mapped_column(String(40), primary_key=True)
    gateway: Mapped[str] = mapped_column(String(40), primary_key=True)
    state: Mapped[str] = mapped_column(String(16))
    agent_version: Mapped[str | None] = mapped_column(String(64))
    last_seen: Mapped[int] = mapped_column(BigInteger)


class MailMessage(Base):
    """The demo's mail outbox: what would have been sent by SMTP."""

    __tablename__ = "mail_outbox"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    to: Mapped[str] = mapped_column(String(320))
    subject: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[int] = mapped_column(BigInteger)


class EnrollmentToken(Base):
    """A one-time token city ops hand to a technician; only its SHA-256 is stored."""

    __tablename__ = "enrollment_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    site: Mapped[str] = mapped_column(String(40))
    gateway: Mapped[str] = mapped_column(String(40))
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[int] = mapped_column(BigInteger)
    expires_at: Mapped[int] = mapped_column(BigInteger)
    used_at: Mapped[int | None] = mapped_column(BigInteger)


class GatewayCertificate(Base):
    """A client certificate the cloud issued to a gateway (serial as hex: up to 159 bits)."""

    __tablename__ = "gateway_certificates"
    __table_args__ = (Index("ix_gateway_certificates_site_gateway", "site", "gateway"),)

    serial: Mapped[str] = mapped_column(String(40), primary_key=True)
    site: Mapped[str] = mapped_column(String(40))
    gateway: Mapped[str] = mapped_column(String(40))
    common_name: Mapped[str] = mapped_column(String(100))
    not_after: Mapped[int] = mapped_column(BigInteger)
    issued_at: Mapped[int] = mapped_column(BigInteger)
    revoked_at: Mapped[int | None] = mapped_column(BigInteger)
