"""Access snapshots: what every lock of a gateway should hold, versioned per site: the
slot PINs' tags and windows, and the revocation list of cancelled offline PINs."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from cloud.gym.models import (
    AccessGrant,
    Facility,
    Lock,
    Reservation,
    ReservationStatus,
    SiteAccessVersion,
)
from cloud.gym.offline_pins import revocation_entries, revocations
from cloud.gym.pin_seal import PinSeal
from protocol.clock import Clock
from protocol.messages import AccessGrantEntry, AccessSnapshotData, LockAccess
from protocol.pin import pin_tag


@dataclass(frozen=True, slots=True)
class AccessChanged:
    """Published on the change bus after a commit changed a gateway's access snapshot."""

    site: str
    gateway: str


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


@dataclass(frozen=True, slots=True)
class _LockRow:
    """The columns of a lock a snapshot needs."""

    pk: int
    lock_id: str
    facility_id: int
    room_id: int | None
    key: bytes  # the PIN key, for the tags


class AccessService:
    """Builds the access snapshot a gateway gets, from locks and unexpired grants."""

    def __init__(self, sessions: sessionmaker[Session], clock: Clock, pins: PinSeal) -> None:
        self._sessions = sessions
        self._clock = clock
        self._pins = pins

    def gateways(self) -> list[tuple[str, str]]:
        """Every (site, gateway) that has a facility."""
        with self._sessions() as session:
            rows = session.execute(
                select(Facility.site, Facility.gateway).distinct().order_by(Facility.site)
            )
            return [(site, gw) for site, gw in rows]

    def snapshot(self, site: str, gateway: str) -> AccessSnapshotData:
        """The current snapshot for one gateway; grants whose window ended are left out."""
        return self.snapshots([(site, gateway)])[(site, gateway)]

    def snapshots(
        self, keys: Collection[tuple[str, str]]
    ) -> dict[tuple[str, str], AccessSnapshotData]:
        """:meth:`snapshot` of each ``(site, gateway)`` in ``keys``, built in one
        transaction with one query each for the versions, locks, grants and revocations
        of them all (a reconnect republishes thousands). A key without a version gets
        version 1, as in :meth:`snapshot`; callers keep ``keys`` to a few hundred."""
        now = int(self._clock.now())
        wanted = list(dict.fromkeys(keys))  # in the caller's order, each once
        if not wanted:
            return {}
        # site IN … AND gateway IN …, then the pairs picked here: a planner turns a list of
        # (site, gateway) rows into an OR of them, tested against every row
        sites, gateways = sorted({s for s, _ in wanted}), sorted({g for _, g in wanted})
        with self._sessions.begin() as session:
            versions = self._versions(session, wanted, now)
            locks: dict[tuple[str, str], list[_LockRow]] = {key: [] for key in wanted}
            by_facility: dict[int, list[_LockRow]] = {}
            for row in session.execute(
                select(
                    Lock.id,
                    Lock.lock_id,
                    Lock.facility_id,
                    Lock.room_id,
                    Lock.pin_key,
                    Facility.site,
                    Facility.gateway,
                )
                .join(Facility)
                .where(Facility.site.in_(sites), Facility.gateway.in_(gateways))
                .order_by(Lock.lock_id)
            ):
                if (row.site, row.gateway) not in locks:
                    continue
                pin_key = bytes.fromhex(row.pin_key)
                lock = _LockRow(row.id, row.lock_id, row.facility_id, row.room_id, pin_key)
                locks[(row.site, row.gateway)].append(lock)
                by_facility.setdefault(lock.facility_id, []).append(lock)
            by_lock: dict[int, list[AccessGrantEntry]] = {
                lock.pk: [] for rows in locks.values() for lock in rows
            }
            if by_facility:
                self._add_grants(session, by_facility, by_lock, now)
            revoked = revocations(session, by_lock, now)
            return {
                key: AccessSnapshotData(
                    version=versions[key],
                    locks=[
                        LockAccess(
                            lock_id=lock.lock_id,
                            grants=by_lock[lock.pk],
                            revoked_offline=revocation_entries(revoked.get(lock.pk, [])),
                        )
                        for lock in locks[key]
                    ],
                )
                for key in wanted
            }

    @staticmethod
    def _versions(
        session: Session, keys: list[tuple[str, str]], now: int
    ) -> dict[tuple[str, str], int]:
        """The snapshot version of each key; a missing one is created at 1."""

        def read(wanted: set[tuple[str, str]]) -> dict[tuple[str, str], int]:
            sites, gateways = sorted({s for s, _ in wanted}), sorted({g for _, g in wanted})
            rows = session.execute(
                select(
                    SiteAccessVersion.site, SiteAccessVersion.gateway, SiteAccessVersion.version
                ).where(SiteAccessVersion.site.in_(sites), SiteAccessVersion.gateway.in_(gateways))
            )
            return {(s, g): v for s, g, v in rows if (s, g) in wanted}

        found = read(set(keys))
        missing = [key for key in keys if key not in found]
        for site, gateway in missing:
            bump_version(session, site, gateway, now)
        return found | read(set(missing)) if missing else found

    def _add_grants(
        self,
        session: Session,
        by_facility: dict[int, list[_LockRow]],
        by_lock: dict[int, list[AccessGrantEntry]],
        now: int,
    ) -> None:
        """Each live slot-PIN grant on every lock it opens, in window order: the entrance
        locks of its facility and its room's own locks."""
        rows = session.execute(
            select(
                AccessGrant.id,
                AccessGrant.pin_sealed,
                AccessGrant.window_start,
                AccessGrant.window_end,
                Reservation.facility_id,
                Reservation.room_id,
            )
            .join(Reservation, Reservation.id == AccessGrant.reservation_id)
            .where(
                Reservation.facility_id.in_(sorted(by_facility)),
                Reservation.status == ReservationStatus.APPROVED,
                AccessGrant.revoked_at.is_(None),
                AccessGrant.pin_sealed.is_not(None),  # an offline PIN needs no slot
                AccessGrant.window_end > now,
            )
            .order_by(AccessGrant.window_start, AccessGrant.id)
        )
        for grant_id, sealed, start, end, facility_id, room_id in rows:
            assert sealed is not None
            pin = self._pins.open(grant_id, sealed)
            for lock in by_facility[facility_id]:
                if lock.room_id not in (None, room_id):
                    continue
                by_lock[lock.pk].append(
                    AccessGrantEntry(
                        grant_id=grant_id,
                        tag=pin_tag(lock.key, pin).hex(),
                        start=start,
                        end=end,
                    )
                )
