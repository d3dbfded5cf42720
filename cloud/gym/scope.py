"""The gym's scope checks: a facility, a reservation or a lock is in a user's scope when its
facility's site is (the rule itself: :mod:`cloud.core.scope`)."""

from __future__ import annotations

from sqlalchemy import select

from cloud.core.scope import ALL_SITES_ROLES, SiteScopeService, sites_in_scope
from cloud.core.views import UserView
from cloud.gym.models import Facility, Lock, Reservation


class GymScope(SiteScopeService):
    """:class:`SiteScopeService` with the checks of the gym's own things."""

    def facility_ids(self, user: UserView) -> frozenset[int] | None:
        """The facilities ``user`` may see; None: every one."""
        if user.role in ALL_SITES_ROLES:
            return None
        with self._sessions() as session:
            scope = sites_in_scope(session, user)
            assert scope is not None
            return frozenset(session.scalars(select(Facility.id).where(Facility.site.in_(scope))))

    def require_facility(self, user: UserView, facility_id: int) -> None:
        """NotFoundError unless facility ``facility_id`` exists and ``user`` may see it."""
        query = select(Facility.site).where(Facility.id == facility_id)
        self.require(user, query, f"no facility {facility_id}; list them with GET /api/facilities")

    def require_reservation(self, user: UserView, reservation_id: str) -> None:
        """NotFoundError unless the reservation exists and ``user`` may see its facility."""
        query = (
            select(Facility.site)
            .join(Reservation, Reservation.facility_id == Facility.id)
            .where(Reservation.id == reservation_id)
        )
        self.require(user, query, f"no reservation {reservation_id}")

    def require_lock(self, user: UserView, lock_id: str) -> None:
        """NotFoundError unless the lock exists and ``user`` may see its facility."""
        query = (
            select(Facility.site)
            .join(Lock, Lock.facility_id == Facility.id)
            .where(Lock.lock_id == lock_id)
        )
        self.require(user, query, f"no lock {lock_id!r}; see the facilities page for the lock ids")
