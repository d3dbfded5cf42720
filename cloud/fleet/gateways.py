"""Gateway presence (birth / last will, telemetry) and what each lock reports it holds."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, select, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from cloud.fleet.models import Gateway
from cloud.gym.models import Lock, LockSync
from protocol.clock import Clock
from protocol.messages import AccessAppliedData, StatusData, TelemetryData


@dataclass(frozen=True, slots=True)
class GatewayView:
    site: str
    gateway: str
    state: str
    agent_version: str | None
    last_seen: int


class GatewayService:
    """Record status messages and applied snapshot versions."""

    def __init__(self, sessions: sessionmaker[Session], clock: Clock) -> None:
        self._sessions = sessions
        self._clock = clock

    def update_status(self, site: str, gateway: str, status: StatusData) -> None:
        """Upsert the gateway's state and last-seen time."""
        self.update_status_many([(site, gateway, status)])

    def update_status_many(self, statuses: Sequence[tuple[str, str, StatusData]]) -> None:
        """:meth:`update_status` for many, in one statement (a gateway listed twice ends
        as its later status says)."""
        if not statuses:
            return
        now = int(self._clock.now())
        latest = {
            (site, gateway): {
                "site": site,
                "gateway": gateway,
                "last_seen": now,
                "state": status.state.value,
                "agent_version": status.agent_version,
            }
            for site, gateway, status in statuses
        }
        rows = [latest[key] for key in sorted(latest)]  # one lock order for every writer
        with self._sessions.begin() as session:
            stmt = _insert(session)(Gateway)
            stmt = stmt.on_conflict_do_update(
                index_elements=["site", "gateway"],
                set_={c: stmt.excluded[c] for c in ("state", "agent_version", "last_seen")},
            )
            session.connection().execute(stmt, rows)

    def record_applied(self, applied: AccessAppliedData) -> None:
        """Remember which snapshot version a lock holds, and what it said about each grant
        (loaded since when, waiting for a slot), its clock and its revocation list."""
        self.record_applied_many([applied])

    def record_applied_many(self, reports: Sequence[AccessAppliedData]) -> None:
        """:meth:`record_applied` for many, in one transaction (after a broker restart
        every lock reports at once); a lock listed twice ends as its later report says."""
        if not reports:
            return
        now = int(self._clock.now())
        latest = {applied.lock_id: applied for applied in reports}
        with self._sessions.begin() as session:
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
        """The gateway was heard from now; remember each lock's reach, last and next
        sync and drift."""
        self.record_telemetry_many([(site, gateway, telemetry)])

    def record_telemetry_many(self, reports: Sequence[tuple[str, str, TelemetryData]]) -> None:
        """Many gateways heard from now, in one transaction: one UPDATE of their last seen,
        a query for which of their locks the cloud knows and one upsert of those locks'
        sync rows (a lock reported twice keeps its later report)."""
        if not reports:
            return
        now = int(self._clock.now())
        syncs: dict[str, dict[str, Any]] = {}
        for _site, _gateway, telemetry in reports:
            for lock in telemetry.locks:
                syncs[lock.lock_id] = {
                    "lock_id": lock.lock_id,
                    "reachable": lock.reachable,
                    "last_sync_at": lock.last_sync_at,
                    "next_sync_at": lock.next_sync_at,
                    "clock_drift_s": lock.clock_drift_s,
                    "telemetry_received_at": now,
                }
        heard = list(dict.fromkeys((site, gateway) for site, gateway, _t in reports))
        with self._sessions.begin() as session:
            session.execute(
                update(Gateway)
                .where(tuple_(Gateway.site, Gateway.gateway).in_(heard))
                .values(last_seen=now)
                .execution_options(synchronize_session=False)
            )
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

    def gateways(self) -> list[GatewayView]:
        """Every gateway that ever reported."""
        with self._sessions() as session:
            rows = session.scalars(select(Gateway).order_by(Gateway.site, Gateway.gateway))
            return [
                GatewayView(g.site, g.gateway, g.state, g.agent_version, g.last_seen) for g in rows
            ]


def _insert(session: Session) -> Any:
    """The dialect's INSERT with ON CONFLICT (PostgreSQL or SQLite)."""
    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
