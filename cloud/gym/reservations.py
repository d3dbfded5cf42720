"""Citizens book a room; the booking is checked against the facility's rules, never
overlaps another one (also under concurrent requests), and a retried request does not
make a second booking. A new booking is unconfirmed until its mailed link is opened
(:mod:`cloud.gym.confirmations`); an anonymous client books a limited number an hour
(:mod:`cloud.gym.booking_limits`).

Concurrency: the booking transaction locks the room's row (``SELECT … FOR UPDATE`` on
PostgreSQL; SQLite's ``BEGIN IMMEDIATE`` serialises every writer) before it looks for an
overlap, so two requests for one room are checked one after the other.

Double submit: a client may send an ``Idempotency-Key``; the same key again returns the
first booking (and its status link) instead of a new one. Without a key, the retry finds
its own booking in the way and is refused with 409 and a message saying so; the status
link is never handed out for an email address alone.
"""

from __future__ import annotations

import hmac
import re
import secrets
from collections.abc import Collection, Mapping
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from cloud.errors import (
    CloudError,
    ConflictError,
    IdempotencyKeyReusedError,
    InvalidRequestError,
    NotFoundError,
)
from cloud.gym import notices
from cloud.gym.booking_common import (
    FACILITY_RULES,
    LOAD,
    holds_room,
    reservation_view,
    rooms_served_by,
    rules_of,
    status_url,
)
from cloud.gym.booking_limits import BookingLimits
from cloud.gym.confirmations import confirm_url
from cloud.gym.models import Facility, Lock, Reservation, ReservationStatus, Room
from cloud.gym.payments import PaymentProvider
from cloud.gym.pin_seal import PinSeal
from cloud.gym.rules import check_slot, fee_yen
from cloud.gym.views import NewReservation, ReservationView
from cloud.localtime import format_span
from cloud.settings import CloudSettings
from protocol.clock import Clock
from protocol.ids import uuid7

IDEMPOTENCY_KEY = re.compile(r"[A-Za-z0-9._:-]{8,64}")
MAX_GROUP = 1000
_ARTICLE = {
    ReservationStatus.UNCONFIRMED: "an",
    ReservationStatus.PENDING: "a",
    ReservationStatus.APPROVED: "an",
}


@dataclass(frozen=True, slots=True)
class BookingRequest:
    """What a citizen asks for: a room (or, as before rooms, the lock of a one-room
    facility), a slot in epoch seconds, who and what for."""

    citizen_name: str
    email: str
    starts_at: int
    ends_at: int
    room_id: int | None = None
    lock_id: str | None = None
    group_size: int = 1
    purpose: str = ""
    idempotency_key: str | None = None


def _check_person(req: BookingRequest) -> tuple[str, str]:
    name, email = req.citizen_name.strip(), req.email.strip()
    if not name:
        raise InvalidRequestError("please give the name the booking is for")
    if "@" not in email or len(email) > 320:
        raise InvalidRequestError("please give an email address we can send the PIN to")
    if not 1 <= req.group_size <= MAX_GROUP:
        raise InvalidRequestError(
            f"a group has 1 to {MAX_GROUP} people; give how many of you will come"
        )
    if len(req.purpose) > 500:
        raise InvalidRequestError("please describe the purpose in at most 500 characters")
    if req.idempotency_key is not None and not IDEMPOTENCY_KEY.fullmatch(req.idempotency_key):
        raise InvalidRequestError(
            "an Idempotency-Key is 8 to 64 letters, digits or ._:- (send a fresh UUID)"
        )
    if (req.room_id is None) == (req.lock_id is None):
        raise InvalidRequestError("say which room to book: give room_id (or the lock_id)")
    return name, email


class ReservationService:
    """Book, look up and list reservations."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        clock: Clock,
        settings: CloudSettings,
        providers: Mapping[str, PaymentProvider],
        limits: BookingLimits,
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        self._settings = settings
        self._providers = providers
        self._limits = limits

    def create(self, req: BookingRequest, client: str | None = None) -> NewReservation:
        """Book a room, unconfirmed: the citizen is mailed the link that confirms it. An
        anonymous ``client`` (its address) is held to the hourly limits; a retry with the
        same Idempotency-Key is no new booking and takes no place in them."""
        name, email = _check_person(req)
        place: tuple[str, int, float] | None = None  # a refused booking gives it back
        try:
            with self._sessions.begin() as session:
                room = self._room_for_update(session, req)
                # after the room lock: a concurrent retry with the same key sees the first
                if req.idempotency_key is not None:
                    replay = self._replay(session, req)
                    if replay is not None:
                        return replay
                if client is not None:
                    at = self._clock.now()
                    self._limits.take(client, room.facility_id, at)
                    place = (client, room.facility_id, at)
                new = self._book(session, room, req, name, email)
        except CloudError:
            if place is not None:
                self._limits.give_back(*place)
            raise
        except IntegrityError:
            if place is not None:
                self._limits.give_back(*place)
            # the same Idempotency-Key raced in on another room's lock: answer as a replay
            with self._sessions() as session:
                replay = self._replay(session, req) if req.idempotency_key else None
            if replay is None:
                raise
            return replay
        return new

    def _replay(self, session: Session, req: BookingRequest) -> NewReservation | None:
        r = session.scalars(
            select(Reservation)
            .options(*LOAD)
            .where(Reservation.idempotency_key == req.idempotency_key)
        ).first()
        if r is None:
            return None
        same = (
            r.email.lower() == req.email.strip().lower()
            and (r.starts_at, r.ends_at) == (req.starts_at, req.ends_at)
            and (req.room_id is None or req.room_id == r.room_id)
        )
        if not same:
            raise IdempotencyKeyReusedError(
                f"the Idempotency-Key {req.idempotency_key!r} was used for another booking; "
                "send a new key with a new booking"
            )
        return NewReservation(reservation_view(r, self._providers), r.access_token, replayed=True)

    def _room_for_update(self, session: Session, req: BookingRequest) -> Room:
        room_id = req.room_id
        if room_id is None:
            lock = session.scalars(select(Lock).where(Lock.lock_id == req.lock_id)).first()
            if lock is None:
                raise NotFoundError(f"no lock {req.lock_id!r}; pick one from the facilities list")
            rooms = rooms_served_by(session, lock)
            if len(rooms) != 1:
                names = ", ".join(f"{r.name} (room_id {r.id})" for r in rooms) or "none"
                raise InvalidRequestError(
                    f"lock {req.lock_id!r} serves {len(rooms)} rooms ({names}); "
                    "book by room_id instead"
                )
            room_id = rooms[0].id
        # the row lock serialises bookings of one room on PostgreSQL (SQLite: BEGIN IMMEDIATE)
        room = session.get(Room, room_id, with_for_update=True)
        if room is None:
            raise NotFoundError(
                f"no room {room_id}; see GET /api/facilities for the rooms you can book"
            )
        return room

    def _book(
        self, session: Session, room: Room, req: BookingRequest, name: str, email: str
    ) -> NewReservation:
        zone, now = self._settings.zone, int(self._clock.now())
        facility = session.get(Facility, room.facility_id, options=FACILITY_RULES)
        assert facility is not None
        rules = rules_of(facility)
        if room.capacity is not None and req.group_size > room.capacity:
            raise InvalidRequestError(
                f"{room.name} holds groups of up to {room.capacity}; you are {req.group_size}: "
                "book a larger room or split the group"
            )
        check_slot(rules, req.starts_at, req.ends_at, now, zone)
        self._refuse_overlap(session, room, req, email, now)
        token = secrets.token_urlsafe(24)
        until = now + self._settings.booking_confirm_ttl_s
        r = Reservation(
            id=uuid7(now * 1000),
            facility_id=facility.id,
            room_id=room.id,
            citizen_name=name,
            email=email,
            group_size=req.group_size,
            purpose=req.purpose.strip(),
            starts_at=req.starts_at,
            ends_at=req.ends_at,
            status=ReservationStatus.UNCONFIRMED,
            access_token=token,
            idempotency_key=req.idempotency_key,
            created_at=now,
            confirm_until=until,
            fee_yen=fee_yen(facility.hourly_fee_yen, req.starts_at, req.ends_at),
            payment_method=facility.payment_method,
        )
        session.add(r)
        session.flush()
        session.refresh(r, ["facility", "room", "grant"])
        notices.confirm_address(
            session,
            r,
            self._settings,
            confirm_url=confirm_url(self._settings, r.id, until),
            valid_minutes=self._settings.booking_confirm_ttl_s // 60,
            now=now,
        )
        return NewReservation(reservation_view(r, self._providers), token)

    def _refuse_overlap(
        self, session: Session, room: Room, req: BookingRequest, email: str, now: int
    ) -> None:
        clash = session.scalars(
            select(Reservation)
            .where(
                Reservation.room_id == room.id,
                holds_room(now),
                Reservation.starts_at < req.ends_at,
                Reservation.ends_at > req.starts_at,
            )
            .order_by(Reservation.starts_at)
        ).first()
        if clash is None:
            return
        zone = self._settings.zone
        span = format_span(req.starts_at, req.ends_at, zone)
        kind = f"{_ARTICLE[clash.status]} {clash.status.value}"
        if clash.email.lower() == email.lower() and (clash.starts_at, clash.ends_at) == (
            req.starts_at,
            req.ends_at,
        ):
            raise ConflictError(
                f"you booked {room.name} for {span} already ({kind} booking under {email}); "
                "open the link in the mail we sent you instead of booking again"
            )
        other = format_span(clash.starts_at, clash.ends_at, zone)
        raise ConflictError(
            f"the slot {span} overlaps {kind} booking of {room.name} ({other}); pick another time"
        )

    def status_url(self, reservation_id: str, token: str) -> str:
        """The citizen's status link (absolute, under ``public_url``)."""
        return status_url(self._settings, reservation_id, token)

    def for_citizen(self, reservation_id: str, token: str) -> ReservationView:
        """The reservation behind a status link, with its PIN; the token must match."""
        with self._sessions() as session:
            r = session.get(Reservation, reservation_id, options=LOAD)
            if r is None or not hmac.compare_digest(r.access_token, token):
                raise NotFoundError(
                    "no booking matches this link; use the link from your confirmation"
                )
            return reservation_view(r, self._providers, PinSeal(self._settings.secret_key))

    def get(self, reservation_id: str) -> ReservationView:
        """One reservation (staff view)."""
        with self._sessions() as session:
            r = session.get(Reservation, reservation_id, options=LOAD)
            if r is None:
                raise NotFoundError(f"no reservation {reservation_id}")
            return reservation_view(r, self._providers)

    def list(
        self,
        status: ReservationStatus | None = None,
        facility_id: int | None = None,
        *,
        sites: Collection[str] | None = None,
    ) -> list[ReservationView]:
        """Reservations, soonest first, optionally of one status and facility, and of the
        facilities at ``sites`` only (a user's scope: :mod:`cloud.core.scope`)."""
        query = select(Reservation).options(*LOAD).order_by(Reservation.starts_at)
        if status is not None:
            query = query.where(Reservation.status == status)
        if facility_id is not None:
            query = query.where(Reservation.facility_id == facility_id)
        if sites is not None:
            in_scope = select(Facility.id).where(Facility.site.in_(sites))
            query = query.where(Reservation.facility_id.in_(in_scope))
        with self._sessions() as session:
            return [reservation_view(r, self._providers) for r in session.scalars(query).all()]
