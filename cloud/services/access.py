"""Access snapshots: what every lock of a gateway should hold, versioned per site: the
slot PINs' tags and windows, and the revocation list of cancelled offline PINs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from cloud.db.models import (
    AccessGrant,
    Facility,
    Lock,
    Reservation,
    ReservationStatus,
    SiteAccessVersion,
)
from cloud.services.offline_pins import revocation_entries, revocations
from protocol.clock import Clock
from protocol.messages import AccessGrantEntry, AccessSnapshotData, LockAccess
from protocol.pin import pin_tag


class AccessNotifier(Protocol):
    """Told (from any thread) after a commit changed a gateway's access snapshot."""

    def access_changed(self, site: str, gateway: str) -> None: ...


class NullNotifier:
    """For a cloud running without MQTT: the snapshot goes out at the next start-up."""

    def access_changed(self, site: str, gateway: str) -> None:
        """Do nothing."""


class AccessChangeRelay:
    """Fans ``access_changed`` out to listeners attached later (the MQTT bridge), so the
    services can be built before the bridge that needs them."""

    def __init__(self) -> None:
        self._listeners: list[Callable[[str, str], None]] = []

    def attach(self, listener: Callable[[str, str], None]) -> None:
        """Call ``listener(site, gateway)`` on every change from now on."""
        self._listeners.append(listener)

    def access_changed(self, site: str, gateway: str) -> None:
        """Tell every listener."""
        for listener in self._listeners:
            listener(site, gateway)


def bump_version(session: Session, site: str, gateway: str, now: int) -> None:
    """Raise the snapshot version of ``site``/``gateway`` by one (create it at 1)."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = insert(SiteAccessVersion).values(site=site, gateway=gateway, version=1, updated_at=now)
    stmt = stmt.on_conflict_do_update(
        index_elements=["site", "gateway"],
        set_={"version": SiteAccessVersion.version + 1, "updated_at": now},
    )
    session.execute(stmt)


class AccessService:
    """Builds the access snapshot a gateway gets, from locks and unexpired grants."""

    def __init__(self, sessions: sessionmaker[Session], clock: Clock) -> None:
        self._sessions = sessions
        self._clock = clock

    def gateways(self) -> list[tuple[str, str]]:
        """Every (site, gateway) that has a facility."""
        with self._sessions() as session:
            rows = session.execute(
                select(Facility.site, Facility.gateway).distinct().order_by(Facility.site)
            )
            return [(site, gw) for site, gw in rows]

    def snapshot(self, site: str, gateway: str) -> AccessSnapshotData:
        """The current snapshot for one gateway; grants whose window ended are left out."""
        now = int(self._clock.now())
        with self._sessions.begin() as session:
            version = session.get(SiteAccessVersion, (site, gateway))
            if version is None:
                bump_version(session, site, gateway, now)
                version = session.get(SiteAccessVersion, (site, gateway))
                assert version is not None
            locks = session.scalars(
                select(Lock)
                .join(Facility)
                .where(Facility.site == site, Facility.gateway == gateway)
                .order_by(Lock.lock_id)
            ).all()
            # a grant opens the entrance locks of its facility and its room's own locks
            rows = session.execute(
                select(AccessGrant, Reservation.facility_id, Reservation.room_id)
                .join(Reservation, Reservation.id == AccessGrant.reservation_id)
                .where(
                    Reservation.facility_id.in_({lock.facility_id for lock in locks}),
                    Reservation.status == ReservationStatus.APPROVED,
                    AccessGrant.revoked_at.is_(None),
                    AccessGrant.pin.is_not(None),  # an offline PIN needs no slot
                    AccessGrant.window_end > now,
                )
                .order_by(AccessGrant.window_start, AccessGrant.id)
            ).all()
            by_lock: dict[int, list[AccessGrantEntry]] = {lock.id: [] for lock in locks}
            keys = {lock.id: bytes.fromhex(lock.pin_key) for lock in locks}
            for grant, facility_id, room_id in rows:
                for lock in locks:
                    if lock.facility_id != facility_id or lock.room_id not in (None, room_id):
                        continue
                    assert grant.pin is not None
                    by_lock[lock.id].append(
                        AccessGrantEntry(
                            grant_id=grant.id,
                            tag=pin_tag(keys[lock.id], grant.pin).hex(),
                            start=grant.window_start,
                            end=grant.window_end,
                        )
                    )
            revoked = revocations(session, (lock.id for lock in locks), now)
            return AccessSnapshotData(
                version=version.version,
                locks=[
                    LockAccess(
                        lock_id=lock.lock_id,
                        grants=by_lock[lock.id],
                        revoked_offline=revocation_entries(revoked.get(lock.id, [])),
                    )
                    for lock in locks
                ],
            )
