"""Reservations: book a slot on a lock, approve it into an access grant with a PIN."""

from __future__ import annotations

import hmac
import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload, sessionmaker

from cloud.db.models import AccessGrant, Lock, Reservation, ReservationStatus
from cloud.errors import ConflictError, InvalidRequestError, NotFoundError
from cloud.localtime import format_local, format_span
from cloud.services.access import AccessNotifier, bump_version
from cloud.services.mail import queue_mail
from cloud.services.views import GrantView, NewReservation, ReservationView
from cloud.settings import CloudSettings
from protocol.clock import Clock
from protocol.ids import uuid7
from protocol.pin import PinWindow, generate_pin

MAX_BOOKING_S = 24 * 3600
BLOCKING = (ReservationStatus.PENDING, ReservationStatus.APPROVED)
_ARTICLE = {ReservationStatus.PENDING: "a", ReservationStatus.APPROVED: "an"}


def _view(r: Reservation) -> ReservationView:
    grant = None
    if r.grant is not None:
        grant = GrantView(r.grant.id, r.grant.pin, r.grant.window_start, r.grant.window_end)
    return ReservationView(
        id=r.id,
        facility_id=r.facility_id,
        facility_name=r.facility.name,
        lock_id=r.lock.lock_id,
        lock_name=r.lock.name,
        citizen_name=r.citizen_name,
        email=r.email,
        starts_at=r.starts_at,
        ends_at=r.ends_at,
        status=r.status,
        created_at=r.created_at,
        grant=grant,
    )


_LOAD = (
    selectinload(Reservation.grant),
    selectinload(Reservation.lock),
    selectinload(Reservation.facility),
)


class ReservationService:
    """Citizens book; managers approve or reject; approval issues the PIN."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        clock: Clock,
        settings: CloudSettings,
        notifier: AccessNotifier,
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        self._settings = settings
        self._notifier = notifier

    def create(
        self, lock_id: str, citizen_name: str, email: str, starts_at: int, ends_at: int
    ) -> NewReservation:
        """Book ``lock_id`` from ``starts_at`` to ``ends_at`` (epoch seconds), pending."""
        zone = self._settings.zone
        now = int(self._clock.now())
        name, email = citizen_name.strip(), email.strip()
        if not name:
            raise InvalidRequestError("please give the name the booking is for")
        if "@" not in email or len(email) > 320:
            raise InvalidRequestError("please give an email address we can send the PIN to")
        if ends_at <= starts_at:
            raise InvalidRequestError(
                f"the booking must end after it starts (from {format_local(starts_at, zone)} "
                f"to {format_local(ends_at, zone)}); pick a later end time"
            )
        span = format_span(starts_at, ends_at, zone)
        if ends_at - starts_at > MAX_BOOKING_S:
            raise InvalidRequestError(f"the slot {span} is longer than 24 hours; book it in parts")
        if starts_at < now:
            raise InvalidRequestError(f"the slot {span} is in the past; pick a time from now on")
        with self._sessions.begin() as session:
            # the row lock serialises bookings of one lock on PostgreSQL (SQLite: BEGIN IMMEDIATE)
            lock = session.scalars(
                select(Lock).where(Lock.lock_id == lock_id).with_for_update()
            ).first()
            if lock is None:
                raise NotFoundError(f"no lock {lock_id!r}; pick one from the facilities list")
            clash = session.scalars(
                select(Reservation)
                .where(
                    Reservation.lock_id == lock.id,
                    Reservation.status.in_(BLOCKING),
                    Reservation.starts_at < ends_at,
                    Reservation.ends_at > starts_at,
                )
                .order_by(Reservation.starts_at)
            ).first()
            if clash is not None:
                other = format_span(clash.starts_at, clash.ends_at, zone)
                kind = f"{_ARTICLE[clash.status]} {clash.status.value}"
                raise ConflictError(
                    f"the slot {span} overlaps {kind} booking ({other}); pick another time"
                )
            token = secrets.token_urlsafe(24)
            reservation = Reservation(
                id=uuid7(now * 1000),
                facility_id=lock.facility_id,
                lock_id=lock.id,
                citizen_name=name,
                email=email,
                starts_at=starts_at,
                ends_at=ends_at,
                status=ReservationStatus.PENDING,
                access_token=token,
                created_at=now,
            )
            session.add(reservation)
            session.flush()
            session.refresh(reservation, ["facility", "lock", "grant"])
            view = _view(reservation)
            queue_mail(
                session,
                email,
                f"Booking received: {view.facility_name}",
                f"Dear {name},\n\nwe received your booking of {view.lock_name} "
                f"({view.facility_name}) for {span} ({self._settings.timezone}).\n"
                "A manager will approve it; your PIN will then be shown here:\n"
                f"{self.status_url(view.id, token)}\n",
                now,
            )
        return NewReservation(view, token)

    def status_url(self, reservation_id: str, token: str) -> str:
        """The citizen's status link (absolute, under ``public_url``)."""
        return f"{self._settings.public_url.rstrip('/')}/r/{reservation_id}?token={token}"

    def for_citizen(self, reservation_id: str, token: str) -> ReservationView:
        """The reservation behind a status link; the token must match."""
        with self._sessions() as session:
            r = session.get(Reservation, reservation_id, options=_LOAD)
            if r is None or not hmac.compare_digest(r.access_token, token):
                raise NotFoundError(
                    "no booking matches this link; use the link from your confirmation"
                )
            return _view(r)

    def get(self, reservation_id: str) -> ReservationView:
        """One reservation (staff view)."""
        with self._sessions() as session:
            r = session.get(Reservation, reservation_id, options=_LOAD)
            if r is None:
                raise NotFoundError(f"no reservation {reservation_id}")
            return _view(r)

    def list(self, status: ReservationStatus | None = None) -> list[ReservationView]:
        """Reservations, soonest first, optionally of one status."""
        query = select(Reservation).options(*_LOAD).order_by(Reservation.starts_at)
        if status is not None:
            query = query.where(Reservation.status == status)
        with self._sessions() as session:
            return [_view(r) for r in session.scalars(query).all()]

    def approve(self, reservation_id: str) -> ReservationView:
        """Approve a pending booking: issue the grant and PIN, mail it, publish the snapshot."""
        zone, now = self._settings.zone, int(self._clock.now())
        with self._sessions.begin() as session:
            r = self._pending(session, reservation_id, "approved")
            window = PinWindow.around(
                r.starts_at,
                r.ends_at,
                before_s=self._settings.pin_margin_before_s,
                after_s=self._settings.pin_margin_after_s,
            )
            taken = session.scalars(
                select(AccessGrant.pin).where(
                    AccessGrant.lock_id == r.lock_id,
                    AccessGrant.window_start < window.end,
                    AccessGrant.window_end > window.start,
                )
            ).all()
            pin = generate_pin(self._settings.pin_length, avoid=set(taken))
            session.add(
                AccessGrant(
                    id=uuid7(now * 1000),
                    reservation_id=r.id,
                    lock_id=r.lock_id,
                    pin=pin,
                    window_start=window.start,
                    window_end=window.end,
                    created_at=now,
                )
            )
            r.status = ReservationStatus.APPROVED
            session.flush()
            session.refresh(r, ["grant"])
            site, gateway = r.facility.site, r.facility.gateway
            bump_version(session, site, gateway, now)
            queue_mail(
                session,
                r.email,
                f"Your PIN for {r.lock.name}",
                f"Dear {r.citizen_name},\n\nyour booking of {r.lock.name} ({r.facility.name}) "
                f"for {format_span(r.starts_at, r.ends_at, zone)} ({self._settings.timezone}) "
                "is approved.\n\n"
                f"PIN: {pin}\n"
                f"Valid from {format_local(window.start, zone)} to "
                f"{format_local(window.end, zone)} ({self._settings.timezone}).\n"
                "Type the PIN and # on the keypad; the door locks itself again.\n\n"
                f"Your booking: {self.status_url(r.id, r.access_token)}\n",
                now,
            )
            view = _view(r)
        self._notifier.access_changed(site, gateway)
        return view

    def reject(self, reservation_id: str) -> ReservationView:
        """Reject a pending booking and tell the citizen."""
        now = int(self._clock.now())
        with self._sessions.begin() as session:
            r = self._pending(session, reservation_id, "rejected")
            r.status = ReservationStatus.REJECTED
            queue_mail(
                session,
                r.email,
                f"Booking not approved: {r.facility.name}",
                f"Dear {r.citizen_name},\n\nyour booking of {r.lock.name} could not be "
                "approved. Please pick another time.\n",
                now,
            )
            return _view(r)

    def _pending(self, session: Session, reservation_id: str, verb: str) -> Reservation:
        r = session.get(Reservation, reservation_id, options=_LOAD, with_for_update=True)
        if r is None:
            raise NotFoundError(f"no reservation {reservation_id}")
        if r.status is not ReservationStatus.PENDING:
            raise ConflictError(
                f"reservation {reservation_id} is {r.status.value}; only a pending one "
                f"can be {verb}"
            )
        return r
