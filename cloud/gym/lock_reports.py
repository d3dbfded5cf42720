"""What each lock reports of its access: the snapshot version it holds and what it said
of each grant (``access/applied``), its reach, syncs and drift (telemetry), kept in
:class:`~cloud.gym.models.LockSync` for the manager's sync status
(:mod:`cloud.gym.sync_status`) and the offline-PIN decision."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from cloud.fleet.ownership import Claim, RefusedClaims, refuse
from cloud.gym.models import Lock, LockSync
from cloud.gym.ownership import foreign
from cloud.settings import CloudSettings
from protocol.clock import Clock
from protocol.messages import AccessAppliedData, TelemetryData


class LockReportService:
    """Record applied snapshot versions and the locks' part of telemetry."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        clock: Clock,
        settings: CloudSettings,
        refused: RefusedClaims | None = None,
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        self._settings = settings
        self.refused = refused or RefusedClaims()  # reports naming another site's locks

    def record_applied(self, site: str, gateway: str, applied: AccessAppliedData) -> None:
        """Remember which snapshot version a lock holds, and what it said about each grant
        (loaded since when, waiting for a slot), its clock and its revocation list, as
        ``site``/``gateway`` reported it."""
        self.record_applied_many([(site, gateway, applied)])

    def record_applied_many(self, reports: Sequence[tuple[str, str, AccessAppliedData]]) -> None:
        """:meth:`record_applied` for many, in one transaction (after a broker restart
        every lock reports at once); a lock listed twice ends as its later report says. A
        report naming a lock of another site or gateway is refused
        (:mod:`cloud.gym.ownership`)."""
        if not reports:
            return
        now = int(self._clock.now())
        with self._sessions.begin() as session:
            refused = self._refuse(session, now, [(s, g, a.lock_id) for s, g, a in reports])
            latest = {a.lock_id: a for s, g, a in reports if (s, g, a.lock_id) not in refused}
            known = list(
                session.scalars(
                    select(Lock.lock_id)
                    .where(Lock.lock_id.in_(list(latest)))
                    .order_by(Lock.lock_id)
                )
            )
            if not known:
                return  # a lock the cloud does not know is ignored
            conn = session.connection()
            conn.execute(
                update(Lock)
                .where(Lock.lock_id == bindparam("b_lock_id"))
                .values(applied_version=bindparam("b_version"), applied_at=now),
                [{"b_lock_id": k, "b_version": latest[k].version} for k in known],
            )
            rows = [
                {
                    "lock_id": lock_id,
                    "applied_version": applied.version,
                    "grant_ids": list(applied.grant_ids),
                    "loaded_at": dict(applied.loaded_at),
                    "deferred": list(applied.deferred),
                    "clock_offset_s": applied.clock_offset_s,
                    "clock_set": applied.clock_set,
                    "reason": None if applied.reason is None else applied.reason.value,
                    "revocation_error": applied.revocation_error,
                    "applied_received_at": now,
                }
                for lock_id in known
                for applied in (latest[lock_id],)
            ]
            stmt = _insert(session)(LockSync)
            stmt = stmt.on_conflict_do_update(
                index_elements=["lock_id"],
                set_={c: stmt.excluded[c] for c in rows[0] if c != "lock_id"},
            )
            conn.execute(stmt, rows)

    def record_telemetry(self, site: str, gateway: str, telemetry: TelemetryData) -> None:
        """Remember each lock's reach, last and next sync and drift, as the gateway's
        telemetry says (the gateway's own health is the fleet's:
        :meth:`cloud.fleet.health.HealthService.record_telemetry`)."""
        self.record_telemetry_many([(site, gateway, telemetry)])

    def record_telemetry_many(self, reports: Sequence[tuple[str, str, TelemetryData]]) -> None:
        """:meth:`record_telemetry` for many gateways in one transaction: a query for which
        of their locks the cloud knows and one upsert of those locks' sync rows (a lock
        reported twice keeps its later report)."""
        if not reports:
            return
        now = int(self._clock.now())
        with self._sessions.begin() as session:
            claims = [(s, g, lock.lock_id) for s, g, t in reports for lock in t.locks]
            refused = self._refuse(session, now, claims)
            syncs: dict[str, dict[str, Any]] = {}
            for site, gateway, telemetry in reports:
                for lock in telemetry.locks:
                    if (site, gateway, lock.lock_id) in refused:
                        continue  # never another site's word, nor its place in this chunk
                    syncs[lock.lock_id] = {
                        "lock_id": lock.lock_id,
                        "reachable": lock.reachable,
                        "last_sync_at": lock.last_sync_at,
                        "next_sync_at": lock.next_sync_at,
                        "clock_drift_s": lock.clock_drift_s,
                        "telemetry_received_at": now,
                    }
            if not syncs:
                return
            # a lock the cloud does not know is ignored; in key order, so that two batches
            # take their row locks in one order
            known = session.scalars(
                select(Lock.lock_id).where(Lock.lock_id.in_(list(syncs))).order_by(Lock.lock_id)
            )
            rows = [syncs[lock_id] for lock_id in known]
            if not rows:
                return
            stmt = _insert(session)(LockSync)
            stmt = stmt.on_conflict_do_update(
                index_elements=["lock_id"],
                set_={c: stmt.excluded[c] for c in rows[0] if c != "lock_id"},
            )
            session.connection().execute(stmt, rows)  # Core executemany, no ORM bulk path

    def _refuse(self, session: Session, now: int, claims: list[Claim]) -> set[Claim]:
        refused = foreign(session, set(claims))
        dropped = sum(claim in refused for claim in claims)
        refuse(
            session,
            self._settings,
            now,
            sorted(refused),
            what="lock reports",
            counter=self.refused,
            dropped=dropped,
        )
        return refused


def _insert(session: Session) -> Any:
    """The dialect's INSERT with ON CONFLICT (PostgreSQL or SQLite)."""
    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
