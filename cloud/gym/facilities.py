"""Facilities (a school gym), their rooms and their locks.

A room is what a citizen books (the hall, a court). A lock either belongs to the whole
facility (``room_id`` None: the entrance every visitor passes, so every room's PIN opens
it) or to one room (a room with its own keypad door). That is how a school gym is built:
courts inside one hall share the entrance door, a separate room may have its own.
"""

from __future__ import annotations

import secrets
from collections.abc import Collection

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload, sessionmaker

from cloud.core.bus import ChangeBus
from cloud.errors import ConflictError, InvalidRequestError, NotFoundError
from cloud.fleet.site_rows import ensure_site
from cloud.gym.access import AccessChanged, bump_version
from cloud.gym.models import Facility, Lock, OpeningHours, Room
from cloud.gym.views import FacilityView, LockView, RoomView
from protocol.clock import Clock
from protocol.ids import is_slug

PIN_KEY_BYTES = 32
# a new facility is open 09:00-21:00 every day until a manager says otherwise
DEFAULT_HOURS = (9 * 60, 21 * 60)
_WITH_ROOMS = (selectinload(Facility.locks), selectinload(Facility.rooms))


def _lock_view(lock: Lock) -> LockView:
    return LockView(lock.lock_id, lock.name, lock.facility_id, lock.room_id)


def _room_view(room: Room, locks: list[Lock]) -> RoomView:
    served = tuple(x.lock_id for x in locks if x.room_id in (None, room.id))
    return RoomView(room.id, room.facility_id, room.name, room.capacity, served)


def _facility_view(facility: Facility) -> FacilityView:
    return FacilityView(
        facility.id,
        facility.name,
        facility.site,
        facility.gateway,
        tuple(_lock_view(lock) for lock in facility.locks),
        tuple(_room_view(room, facility.locks) for room in facility.rooms),
    )


def _check_slug(kind: str, value: str) -> None:
    if not is_slug(value):
        raise InvalidRequestError(f"{kind} {value!r} must be a slug: 1-40 of a-z, 0-9 and '-'")


def _is_key_hex(key: str) -> bool:
    try:
        return len(bytes.fromhex(key)) == PIN_KEY_BYTES
    except ValueError:
        return False


def check_offline_secret(secret: str | None) -> str | None:
    """``secret`` as lower-case hex, None when not given; refuses a malformed one."""
    if not secret:
        return None
    secret = secret.strip().lower()
    if not _is_key_hex(secret):
        raise InvalidRequestError(
            f"an offline_secret is {PIN_KEY_BYTES} bytes as hex ({2 * PIN_KEY_BYTES} digits), "
            "as in the lock's pairing file (ID.cloud.json)"
        )
    return secret


class FacilityService:
    """Register facilities and locks; list them."""

    def __init__(self, sessions: sessionmaker[Session], clock: Clock, bus: ChangeBus) -> None:
        self._sessions = sessions
        self._clock = clock
        self._bus = bus

    def create_facility(self, name: str, site: str, gateway: str) -> FacilityView:
        """Register a facility served by gateway ``gateway`` at ``site``."""
        _check_slug("site", site)
        _check_slug("gateway", gateway)
        if not name.strip():
            raise InvalidRequestError("a facility needs a name")
        with self._sessions.begin() as session:
            facility = Facility(name=name.strip(), site=site, gateway=gateway)
            session.add(facility)
            session.flush()
            opens, closes = DEFAULT_HOURS
            session.add_all(
                OpeningHours(
                    facility_id=facility.id, weekday=d, opens_minute=opens, closes_minute=closes
                )
                for d in range(7)
            )
            now = int(self._clock.now())
            bump_version(session, site, gateway, now)
            # on the fleet's pages before its gateway reports
            ensure_site(session, site, now, name=facility.name)
            view = FacilityView(facility.id, facility.name, site, gateway)
        self._bus.publish(AccessChanged(site, gateway))
        return view

    def add_room(self, facility_id: int, name: str, capacity: int | None = None) -> RoomView:
        """Add a bookable room (a court, the hall); ``capacity``: the largest group."""
        name = name.strip()
        if not name:
            raise InvalidRequestError("a room needs a name (e.g. 'Main hall', 'Court A')")
        if capacity is not None and capacity < 1:
            raise InvalidRequestError("a room's capacity is at least 1 (or leave it out)")
        try:
            with self._sessions.begin() as session:
                facility = session.get(Facility, facility_id, options=_WITH_ROOMS)
                if facility is None:
                    raise NotFoundError(
                        f"no facility {facility_id}; list them with GET /api/facilities"
                    )
                room = Room(facility_id=facility_id, name=name, capacity=capacity)
                session.add(room)
                session.flush()
                return _room_view(room, facility.locks)
        except IntegrityError:
            raise ConflictError(
                f"facility {facility_id} has a room called {name!r} already; pick another name"
            ) from None

    def add_lock(
        self,
        facility_id: int,
        lock_id: str,
        name: str,
        pin_key: str | None = None,
        room_id: int | None = None,
        *,
        offline_secret: str | None = None,
    ) -> tuple[LockView, str]:
        """Register a lock; return it and its PIN key (hex, generated unless given).
        ``room_id`` None: an entrance lock every room's PIN opens. ``offline_secret``
        (hex, from the lock's pairing) lets the cloud issue offline PINs for it; without
        it the lock only ever gets slot PINs."""
        _check_slug("lock id", lock_id)
        key = pin_key.lower() if pin_key else secrets.token_hex(PIN_KEY_BYTES)
        if not _is_key_hex(key):
            raise InvalidRequestError(
                f"a pin_key is {PIN_KEY_BYTES} bytes as hex ({2 * PIN_KEY_BYTES} digits)"
            )
        secret = check_offline_secret(offline_secret)
        try:
            with self._sessions.begin() as session:
                facility = session.get(Facility, facility_id)
                if facility is None:
                    raise NotFoundError(
                        f"no facility {facility_id}; list them with GET /api/facilities"
                    )
                if room_id is not None:
                    room = session.get(Room, room_id)
                    if room is None or room.facility_id != facility.id:
                        raise NotFoundError(
                            f"facility {facility_id} has no room {room_id}; leave room_id out "
                            "for an entrance lock"
                        )
                lock = Lock(
                    lock_id=lock_id,
                    facility_id=facility.id,
                    room_id=room_id,
                    name=name or lock_id,
                    pin_key=key,
                    offline_secret=secret,
                )
                session.add(lock)
                session.flush()
                bump_version(session, facility.site, facility.gateway, int(self._clock.now()))
                site, gateway, view = facility.site, facility.gateway, _lock_view(lock)
        except IntegrityError:
            raise ConflictError(f"lock {lock_id!r} is registered already") from None
        self._bus.publish(AccessChanged(site, gateway))
        return view, key

    def facilities(self, sites: Collection[str] | None = None) -> list[FacilityView]:
        """Every facility with its locks (at ``sites`` only, when given)."""
        query = select(Facility).options(*_WITH_ROOMS).order_by(Facility.id)
        if sites is not None:
            query = query.where(Facility.site.in_(list(sites)))
        with self._sessions() as session:
            return [_facility_view(f) for f in session.scalars(query).all()]

    def facility(self, facility_id: int) -> FacilityView:
        """One facility with its locks."""
        with self._sessions() as session:
            facility = session.get(Facility, facility_id, options=_WITH_ROOMS)
            if facility is None:
                raise NotFoundError(
                    f"no facility {facility_id}; list them with GET /api/facilities"
                )
            return _facility_view(facility)

    def lock(self, lock_id: str) -> LockView:
        """One lock by its slug."""
        with self._sessions() as session:
            lock = session.scalars(select(Lock).where(Lock.lock_id == lock_id)).first()
            if lock is None:
                raise NotFoundError(
                    f"no lock {lock_id!r}; see the facilities page for the lock ids"
                )
            return _lock_view(lock)
