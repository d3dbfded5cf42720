"""The gym's answers to the fleet's questions (:mod:`cloud.fleet.ports`)."""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy import select, tuple_
from sqlalchemy.orm import Session

from cloud.gym.models import AccessGrant, Facility, Lock, Reservation, ReservationStatus
from cloud.localtime import format_span
from cloud.settings import CloudSettings


class BookingGuard:
    """:class:`~cloud.fleet.ports.LockUse`: a lock is in use while a booking is."""

    def __init__(self, settings: CloudSettings) -> None:
        self._settings = settings

    def lock_busy(self, session: Session, lock_id: str, now: int) -> str | None:
        """A booking's PIN window is open on the lock, or opens within
        ``fleet_booking_guard_s``: say which."""
        return booking_in_progress(
            session, lock_id, now, self._settings.fleet_booking_guard_s, self._settings
        )


class FacilityNames:
    """:class:`~cloud.fleet.ports.SiteNames`: a site is called as its (first) facility."""

    def site_name(self, session: Session, site: str) -> str | None:
        query = select(Facility.name).where(Facility.site == site).order_by(Facility.id)
        return session.scalar(query.limit(1))


class FacilityLocks:
    """:class:`~cloud.fleet.ports.DeviceOwners`: a lock is its facility's gateway's."""

    def registered(
        self, session: Session, devices: Collection[tuple[str, str]]
    ) -> dict[tuple[str, str], str]:
        keys = list(devices)
        out: dict[tuple[str, str], str] = {}
        for start in range(0, len(keys), _LOCKS_PER_QUERY):  # within every database's limit
            query = (
                select(Facility.site, Lock.lock_id, Facility.gateway)
                .join(Facility, Facility.id == Lock.facility_id)
                .where(
                    tuple_(Facility.site, Lock.lock_id).in_(keys[start : start + _LOCKS_PER_QUERY])
                )
            )
            out.update({(site, lock): gw for site, lock, gw in session.execute(query)})
        return out


_LOCKS_PER_QUERY = 500


def booking_in_progress(
    session: Session, lock_id: str, now: int, guard_s: int, settings: CloudSettings
) -> str | None:
    """Why ``lock_id`` must not be updated now (a booking's PIN window is open or opens
    within ``guard_s``), or None."""
    lock = session.scalars(select(Lock).where(Lock.lock_id == lock_id)).first()
    if lock is None:
        return None  # not a lock the booking side knows: nobody books it
    query = (
        select(Reservation.starts_at, Reservation.ends_at)
        .join(AccessGrant, AccessGrant.reservation_id == Reservation.id)
        .where(
            Reservation.facility_id == lock.facility_id,
            Reservation.status == ReservationStatus.APPROVED,
            AccessGrant.revoked_at.is_(None),
            AccessGrant.window_start < now + guard_s,
            AccessGrant.window_end > now,
        )
        .order_by(AccessGrant.window_start)
        .limit(1)
    )
    if lock.room_id is not None:  # a room's own door; an entrance serves every room
        query = query.where(Reservation.room_id == lock.room_id)
    row = session.execute(query).first()
    if row is None:
        return None
    return f"booking {format_span(row[0], row[1], settings.zone)} in progress or about to start"
