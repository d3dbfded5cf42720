"""What the booking services share: how a reservation is loaded and shown, a facility's
rules as values, and which locks serve a room."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from sqlalchemy import ColumnElement, and_, or_, select
from sqlalchemy.orm import Session, selectinload

from cloud.gym.models import (
    AccessGrant,
    Facility,
    Lock,
    OfflinePin,
    Reservation,
    ReservationStatus,
    Room,
)
from cloud.gym.pin_seal import PinSeal
from cloud.gym.rules import BookingRules
from cloud.gym.views import GrantView, ReservationView
from cloud.settings import CloudSettings
from protocol.offline_pin import HOUR_S, issue_offline_pin

if TYPE_CHECKING:
    from cloud.gym.payments import PaymentProvider


def offline_code(row: OfflinePin) -> str | None:
    """The code of an offline PIN, derived again from its lock's secret and its id (None
    without a secret): the code itself is never stored (see
    :mod:`cloud.gym.offline_pins`)."""
    secret = row.lock.offline_secret
    if secret is None:
        return None
    start = row.start_hour * HOUR_S
    end = start + row.hours * HOUR_S
    pin = issue_offline_pin(bytes.fromhex(secret), start, end, nonce=row.nonce, max_hours=row.hours)
    return pin.code


# the confirmed statuses that hold a room: a rejected or cancelled booking frees it; an
# unconfirmed one holds it while its link is valid (``holds_room``)
BLOCKING = (ReservationStatus.PENDING, ReservationStatus.APPROVED)


def holds_room(now: int) -> ColumnElement[bool]:
    """The bookings that hold their room at ``now``: pending, approved, or unconfirmed
    with a confirmation link still valid (the expiry job may not have run yet)."""
    return or_(
        Reservation.status.in_(BLOCKING),
        and_(
            Reservation.status == ReservationStatus.UNCONFIRMED,
            Reservation.confirm_until > now,
        ),
    )


def status_url(settings: CloudSettings, reservation_id: str, token: str) -> str:
    """The citizen's status link (absolute, under ``public_url``)."""
    return f"{settings.public_url.rstrip('/')}/r/{reservation_id}?token={token}"


LOAD = (
    selectinload(Reservation.grant)
    .selectinload(AccessGrant.offline_pin)
    .selectinload(OfflinePin.lock),
    selectinload(Reservation.room),
    selectinload(Reservation.facility),
)


def reservation_view(
    r: Reservation,
    providers: Mapping[str, PaymentProvider] | None = None,
    pins: PinSeal | None = None,
) -> ReservationView:
    """A frozen view of ``r`` (its grant, room, facility and payment instructions); the
    grant's PIN only with ``pins`` (the citizen's own view), else None."""
    grant = None
    g = r.grant
    if g is not None and g.revoked_at is None:
        offline = g.offline_pin
        if offline is None:
            pin = None
            if pins is not None and g.pin_sealed is not None:
                pin = pins.open(g.id, g.pin_sealed)
            grant = GrantView(g.id, pin, g.window_start, g.window_end)
        else:
            grant = GrantView(
                g.id,
                None if pins is None else offline_code(offline),
                g.window_start,
                g.window_end,
                offline=True,
                lock_id=offline.lock.lock_id,
                offline_reason=offline.reason,
            )
    provider = (providers or {}).get(r.payment_method)
    instructions = "" if provider is None else provider.instructions(r.fee_yen, r.facility.name)
    return ReservationView(
        id=r.id,
        facility_id=r.facility_id,
        facility_name=r.facility.name,
        room_id=r.room_id,
        room_name=r.room.name,
        citizen_name=r.citizen_name,
        email=r.email,
        group_size=r.group_size,
        purpose=r.purpose,
        starts_at=r.starts_at,
        ends_at=r.ends_at,
        status=r.status,
        created_at=r.created_at,
        fee_yen=r.fee_yen,
        payment_method=r.payment_method,
        payment_state=r.payment_state,
        payment_instructions=instructions,
        decided_by=r.decided_by,
        decided_at=r.decided_at,
        cancelled_by=r.cancelled_by,
        cancelled_at=r.cancelled_at,
        cancel_reason=r.cancel_reason,
        paid_at=r.paid_at,
        refunded_at=r.refunded_at,
        grant=grant,
    )


def rules_of(facility: Facility) -> BookingRules:
    """The rules of ``facility`` (its hours and closed days loaded) as plain values."""
    off_peak = None
    if facility.off_peak_from_minute is not None and facility.off_peak_until_minute is not None:
        off_peak = (facility.off_peak_from_minute, facility.off_peak_until_minute)
    return BookingRules(
        facility_name=facility.name,
        hours={h.weekday: (h.opens_minute, h.closes_minute) for h in facility.hours},
        closed_days={d.day: d.reason for d in facility.closed_days},
        min_minutes=facility.min_booking_minutes,
        max_minutes=facility.max_booking_minutes,
        lead_minutes=facility.lead_time_minutes,
        horizon_days=facility.horizon_days,
        hourly_fee_yen=facility.hourly_fee_yen,
        off_peak=off_peak,
    )


FACILITY_RULES = (selectinload(Facility.hours), selectinload(Facility.closed_days))


def locks_serving(session: Session, room: Room) -> list[Lock]:
    """The locks a PIN for ``room`` opens: the facility's entrance locks and its own."""
    return list(
        session.scalars(
            select(Lock)
            .where(
                Lock.facility_id == room.facility_id,
                or_(Lock.room_id.is_(None), Lock.room_id == room.id),
            )
            .order_by(Lock.lock_id)
        ).all()
    )


def rooms_served_by(session: Session, lock: Lock) -> list[Room]:
    """The rooms whose PIN opens ``lock``."""
    query = select(Room).where(Room.facility_id == lock.facility_id).order_by(Room.id)
    if lock.room_id is not None:
        query = query.where(Room.id == lock.room_id)
    return list(session.scalars(query).all())
