"""The gym's tables: facilities, rooms, locks, reservations, grants, offline PINs, lock
sync, lock events, notices and bulk mailings. Times are UTC epoch seconds (``BigInteger``)
on both dialects."""

from __future__ import annotations

from datetime import date
from enum import StrEnum

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
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from cloud.db.base import Base, string_enum


class ReservationStatus(StrEnum):
    """unconfirmed (its mailbox has not answered; holds the slot until ``confirm_until``)
    → pending (a manager decides) or approved (by a rule or a manager); rejected and
    cancelled free the slot (:mod:`cloud.gym.confirmations`)."""

    UNCONFIRMED = "unconfirmed"
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    CANCELLED = "cancelled"


class PaymentState(StrEnum):
    """unpaid → paid → refunded (the table of moves is in ``cloud.gym.payments``)."""

    UNPAID = "unpaid"
    PAID = "paid"
    REFUNDED = "refunded"


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
    # 32 bytes as hex, from pairing; null: the cloud cannot issue offline PINs for it
    offline_secret: Mapped[str | None] = mapped_column(String(64))
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
    status: Mapped[ReservationStatus] = mapped_column(string_enum(ReservationStatus, "status"))
    access_token: Mapped[str] = mapped_column(String(64))
    # a client's Idempotency-Key: a retried POST gets this booking back, not a second one
    idempotency_key: Mapped[str | None] = mapped_column(String(64), unique=True)
    created_at: Mapped[int] = mapped_column(BigInteger)
    # unconfirmed: the mailed link works until then, and the expiry job frees the slot
    confirm_until: Mapped[int | None] = mapped_column(BigInteger)
    decided_by: Mapped[str | None] = mapped_column(String(100))
    decided_at: Mapped[int | None] = mapped_column(BigInteger)
    cancelled_by: Mapped[str | None] = mapped_column(String(100))
    cancelled_at: Mapped[int | None] = mapped_column(BigInteger)
    cancel_reason: Mapped[str | None] = mapped_column(String(500))
    fee_yen: Mapped[int] = mapped_column(Integer, server_default="0")
    payment_method: Mapped[str] = mapped_column(String(16), server_default="counter")
    payment_state: Mapped[PaymentState] = mapped_column(
        string_enum(PaymentState, "payment_state"), server_default=PaymentState.UNPAID.value
    )
    paid_at: Mapped[int | None] = mapped_column(BigInteger)
    paid_by: Mapped[str | None] = mapped_column(String(100))
    refunded_at: Mapped[int | None] = mapped_column(BigInteger)
    refunded_by: Mapped[str | None] = mapped_column(String(100))
    # set: name, email and free text are gone (cloud/gym/retention.py); figures remain
    anonymised_at: Mapped[int | None] = mapped_column(BigInteger)

    facility: Mapped[Facility] = relationship()
    room: Mapped[Room] = relationship()
    grant: Mapped[AccessGrant | None] = relationship(back_populates="reservation")


class AccessGrant(Base):
    """The PIN of one approved booking. It opens every lock that serves the booking's
    room (see :class:`Lock`); ``revoked_at`` set: cancelled, out of every snapshot.

    ``pin_sealed``: the slot PIN, encrypted (:mod:`cloud.gym.pin_seal`); null: the grant
    is an offline PIN (:class:`OfflinePin`) and travels in no snapshot; its window is then
    the code's whole-hour window."""

    __tablename__ = "access_grants"
    __table_args__ = (Index("ix_access_grants_window_end", "window_end"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    reservation_id: Mapped[str] = mapped_column(ForeignKey("reservations.id"), unique=True)
    pin_sealed: Mapped[str | None] = mapped_column(String(64))
    window_start: Mapped[int] = mapped_column(BigInteger)
    window_end: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[int] = mapped_column(BigInteger)
    revoked_at: Mapped[int | None] = mapped_column(BigInteger)

    reservation: Mapped[Reservation] = relationship(back_populates="grant")
    offline_pin: Mapped[OfflinePin | None] = relationship(back_populates="grant")


class OfflinePin(Base):
    """The id of an offline PIN issued for a grant on one lock. The code itself is never
    stored: it is derived again from the lock's ``offline_secret`` and this id whenever
    the citizen is shown it (``protocol.offline_pin.issue_offline_pin``). A cancelled one
    (its grant revoked) goes on the lock's revocation list until it expires."""

    __tablename__ = "offline_pins"
    __table_args__ = (UniqueConstraint("lock_id", "start_hour", "hours", "nonce"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    grant_id: Mapped[str] = mapped_column(ForeignKey("access_grants.id"), unique=True)
    lock_id: Mapped[int] = mapped_column(ForeignKey("locks.id"), index=True)
    start_hour: Mapped[int] = mapped_column(BigInteger)
    hours: Mapped[int] = mapped_column(Integer)
    nonce: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(String(200))  # why not a slot PIN (for the manager)
    created_at: Mapped[int] = mapped_column(BigInteger)

    grant: Mapped[AccessGrant] = relationship(back_populates="offline_pin")
    lock: Mapped[Lock] = relationship()


class LockSync(Base):
    """What the site's agent last said about one lock: its latest ``access/applied``
    report (which grants it holds since when) and its latest telemetry (reachable, last
    and next sync, drift). Times are the cloud's receive time unless named otherwise."""

    __tablename__ = "lock_sync"

    lock_id: Mapped[str] = mapped_column(ForeignKey("locks.lock_id"), primary_key=True)
    applied_version: Mapped[int | None] = mapped_column(BigInteger)
    grant_ids: Mapped[list[str] | None] = mapped_column(JSON)
    loaded_at: Mapped[dict[str, int] | None] = mapped_column(JSON)
    deferred: Mapped[list[str] | None] = mapped_column(JSON)
    clock_offset_s: Mapped[float | None] = mapped_column(Float)
    clock_set: Mapped[bool | None] = mapped_column(Boolean)
    reason: Mapped[str | None] = mapped_column(String(16))
    revocation_error: Mapped[str | None] = mapped_column(String(200))
    applied_received_at: Mapped[int | None] = mapped_column(BigInteger)
    reachable: Mapped[bool | None] = mapped_column(Boolean)
    last_sync_at: Mapped[int | None] = mapped_column(BigInteger)
    next_sync_at: Mapped[int | None] = mapped_column(BigInteger)
    clock_drift_s: Mapped[float | None] = mapped_column(Float)
    telemetry_received_at: Mapped[int | None] = mapped_column(BigInteger)


class SiteAccessVersion(Base):
    """Per site and gateway, the version of the latest access snapshot (only grows)."""

    __tablename__ = "site_access_versions"

    site: Mapped[str] = mapped_column(String(40), primary_key=True)
    gateway: Mapped[str] = mapped_column(String(40), primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[int] = mapped_column(BigInteger)


class LockEvent(Base):
    """One event as the lock numbered it. ``(site, lock_id, boot, seq)`` makes ingest
    idempotent: ``boot`` keeps a restarted lock's new events apart from its earlier ones,
    ``site`` (of the MQTT topic it came on, which the broker authenticated) keeps one
    gateway from claiming the keys of another site's locks. ``id`` is the arrival order."""

    __tablename__ = "lock_events"
    __table_args__ = (
        UniqueConstraint("site", "lock_id", "boot", "seq"),
        Index("ix_lock_events_lock_id_id", "lock_id", "id"),  # a lock's audit, newest first
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    site: Mapped[str] = mapped_column(String(40))
    lock_id: Mapped[str] = mapped_column(String(40))
    boot: Mapped[int] = mapped_column(BigInteger, server_default="0")
    seq: Mapped[int] = mapped_column(BigInteger)
    lock_ts: Mapped[int] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(String(32))
    grant_id: Mapped[str | None] = mapped_column(String(64))
    slot: Mapped[int | None] = mapped_column(Integer)
    value: Mapped[int | None] = mapped_column(BigInteger)
    received_at: Mapped[int] = mapped_column(BigInteger)


# --- notifications and figures (mail delivery, reminders, bulk mail, no-shows, scores) ---


class ReservationNotice(Base):
    """A one-off mail a booking got from a periodic job (``reminder``, ``survey``). The
    primary key makes it once only: the row is inserted in the transaction that queues
    the mail, so a restart or a second worker finds it and sends nothing."""

    __tablename__ = "reservation_notices"

    reservation_id: Mapped[str] = mapped_column(ForeignKey("reservations.id"), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    created_at: Mapped[int] = mapped_column(BigInteger)


class NoShow(Base):
    """An approved booking whose PIN opened no door by its end (removed again when a late
    unlock event arrives from a site that was offline)."""

    __tablename__ = "no_shows"

    reservation_id: Mapped[str] = mapped_column(ForeignKey("reservations.id"), primary_key=True)
    flagged_at: Mapped[int] = mapped_column(BigInteger)


class SatisfactionScore(Base):
    """The 1-5 score a citizen gave after the visit (once per booking)."""

    __tablename__ = "satisfaction_scores"

    reservation_id: Mapped[str] = mapped_column(ForeignKey("reservations.id"), primary_key=True)
    score: Mapped[int] = mapped_column(Integer)
    recorded_at: Mapped[int] = mapped_column(BigInteger)


class BulkMailing(Base):
    """A manager's mail to every citizen with a booking at a facility in a date range.
    ``submit_key`` makes a double submit send once."""

    __tablename__ = "bulk_mailings"
    __table_args__ = (Index("ix_bulk_mailings_facility_id_sent_at", "facility_id", "sent_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    facility_id: Mapped[int] = mapped_column(ForeignKey("facilities.id"))
    from_day: Mapped[date] = mapped_column(Date)
    to_day: Mapped[date] = mapped_column(Date)
    subject: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    sent_by: Mapped[str] = mapped_column(String(100))
    sent_at: Mapped[int] = mapped_column(BigInteger)
    recipients: Mapped[int] = mapped_column(Integer)
    submit_key: Mapped[str] = mapped_column(String(64), unique=True)
