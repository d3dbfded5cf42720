"""The cloud's tables. Times are UTC epoch seconds (``BigInteger``) on both dialects."""

from __future__ import annotations

from enum import StrEnum

from sqlalchemy import (
    BigInteger,
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
    __tablename__ = "facilities"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    site: Mapped[str] = mapped_column(String(40), index=True)
    gateway: Mapped[str] = mapped_column(String(40))

    locks: Mapped[list[Lock]] = relationship(back_populates="facility", order_by="Lock.lock_id")


class Lock(Base):
    __tablename__ = "locks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    lock_id: Mapped[str] = mapped_column(String(40), unique=True)
    facility_id: Mapped[int] = mapped_column(ForeignKey("facilities.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    pin_key: Mapped[str] = mapped_column(String(64))
    applied_version: Mapped[int | None] = mapped_column(Integer)
    applied_at: Mapped[int | None] = mapped_column(BigInteger)

    facility: Mapped[Facility] = relationship(back_populates="locks")


class Reservation(Base):
    __tablename__ = "reservations"
    __table_args__ = (Index("ix_reservations_lock_status", "lock_id", "status"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    facility_id: Mapped[int] = mapped_column(ForeignKey("facilities.id"))
    lock_id: Mapped[int] = mapped_column(ForeignKey("locks.id"))
    citizen_name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str] = mapped_column(String(320))
    starts_at: Mapped[int] = mapped_column(BigInteger)
    ends_at: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[ReservationStatus] = mapped_column(_enum(ReservationStatus, "status"))
    access_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[int] = mapped_column(BigInteger)

    facility: Mapped[Facility] = relationship()
    lock: Mapped[Lock] = relationship()
    grant: Mapped[AccessGrant | None] = relationship(back_populates="reservation")


class AccessGrant(Base):
    __tablename__ = "access_grants"
    __table_args__ = (Index("ix_access_grants_lock_window", "lock_id", "window_end"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    reservation_id: Mapped[str] = mapped_column(ForeignKey("reservations.id"), unique=True)
    lock_id: Mapped[int] = mapped_column(ForeignKey("locks.id"))
    pin: Mapped[str] = mapped_column(String(12))
    window_start: Mapped[int] = mapped_column(BigInteger)
    window_end: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[int] = mapped_column(BigInteger)

    reservation: Mapped[Reservation] = relationship(back_populates="grant")
    lock: Mapped[Lock] = relationship()


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
