"""Facilities (a school gym) and their locks."""

from __future__ import annotations

import secrets

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload, sessionmaker

from cloud.db.models import Facility, Lock
from cloud.errors import ConflictError, InvalidRequestError, NotFoundError
from cloud.services.access import AccessNotifier, bump_version
from cloud.services.views import FacilityView, LockView
from protocol.clock import Clock
from protocol.ids import is_slug

PIN_KEY_BYTES = 32


def _lock_view(lock: Lock) -> LockView:
    return LockView(lock.lock_id, lock.name, lock.facility_id)


def _facility_view(facility: Facility) -> FacilityView:
    return FacilityView(
        facility.id,
        facility.name,
        facility.site,
        facility.gateway,
        tuple(_lock_view(lock) for lock in facility.locks),
    )


def _check_slug(kind: str, value: str) -> None:
    if not is_slug(value):
        raise InvalidRequestError(f"{kind} {value!r} must be a slug: 1-40 of a-z, 0-9 and '-'")


def _is_key_hex(key: str) -> bool:
    try:
        return len(bytes.fromhex(key)) == PIN_KEY_BYTES
    except ValueError:
        return False


class FacilityService:
    """Register facilities and locks; list them."""

    def __init__(
        self, sessions: sessionmaker[Session], clock: Clock, notifier: AccessNotifier
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        self._notifier = notifier

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
            bump_version(session, site, gateway, int(self._clock.now()))
            view = FacilityView(facility.id, facility.name, site, gateway)
        self._notifier.access_changed(site, gateway)
        return view

    def add_lock(
        self, facility_id: int, lock_id: str, name: str, pin_key: str | None = None
    ) -> tuple[LockView, str]:
        """Register a lock; return it and its PIN key (hex, generated unless given)."""
        _check_slug("lock id", lock_id)
        key = pin_key.lower() if pin_key else secrets.token_hex(PIN_KEY_BYTES)
        if not _is_key_hex(key):
            raise InvalidRequestError(
                f"a pin_key is {PIN_KEY_BYTES} bytes as hex ({2 * PIN_KEY_BYTES} digits)"
            )
        try:
            with self._sessions.begin() as session:
                facility = session.get(Facility, facility_id)
                if facility is None:
                    raise NotFoundError(
                        f"no facility {facility_id}; list them with GET /api/facilities"
                    )
                lock = Lock(
                    lock_id=lock_id, facility_id=facility.id, name=name or lock_id, pin_key=key
                )
                session.add(lock)
                session.flush()
                bump_version(session, facility.site, facility.gateway, int(self._clock.now()))
                site, gateway, view = facility.site, facility.gateway, _lock_view(lock)
        except IntegrityError:
            raise ConflictError(f"lock {lock_id!r} is registered already") from None
        self._notifier.access_changed(site, gateway)
        return view, key

    def facilities(self) -> list[FacilityView]:
        """Every facility with its locks."""
        with self._sessions() as session:
            rows = session.scalars(
                select(Facility).options(selectinload(Facility.locks)).order_by(Facility.id)
            ).all()
            return [_facility_view(f) for f in rows]

    def facility(self, facility_id: int) -> FacilityView:
        """One facility with its locks."""
        with self._sessions() as session:
            facility = session.get(Facility, facility_id, options=[selectinload(Facility.locks)])
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
