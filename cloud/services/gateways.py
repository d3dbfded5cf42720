"""Gateway presence (birth / last will, telemetry) and what each lock reports it holds."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from cloud.db.models import Gateway, Lock, LockSync
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
        now = int(self._clock.now())
        values = {"state": status.state.value, "agent_version": status.agent_version}
        with self._sessions.begin() as session:
            dialect = session.get_bind().dialect.name
            insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
            stmt = insert(Gateway).values(site=site, gateway=gateway, last_seen=now, **values)
            stmt = stmt.on_conflict_do_update(
                index_elements=["site", "gateway"], set_={**values, "last_seen": now}
            )
            session.execute(stmt)

    def record_applied(self, applied: AccessAppliedData) -> None:
        """Remember which snapshot version a lock holds, and what it said about each grant
        (loaded since when, waiting for a slot), its clock and its revocation list."""
        now = int(self._clock.now())
        with self._sessions.begin() as session:
            session.execute(
                update(Lock)
                .where(Lock.lock_id == applied.lock_id)
                .values(applied_version=applied.version, applied_at=now)
            )
            _upsert_lock_sync(
                session,
                applied.lock_id,
                {
                    "applied_version": applied.version,
                    "grant_ids": list(applied.grant_ids),
                    "loaded_at": dict(applied.loaded_at),
                    "deferred": list(applied.deferred),
                    "clock_offset_s": applied.clock_offset_s,
                    "clock_set": applied.clock_set,
                    "reason": None if applied.reason is None else applied.reason.value,
                    "revocation_error": applied.revocation_error,
                    "applied_received_at": now,
                },
            )

    def record_telemetry(self, site: str, gateway: str, telemetry: TelemetryData) -> None:
        """The gateway was heard from now; remember each lock's reach, last and next
        sync and drift."""
        now = int(self._clock.now())
        with self._sessions.begin() as session:
            session.execute(
                update(Gateway)
                .where(Gateway.site == site, Gateway.gateway == gateway)
                .values(last_seen=now)
            )
            for lock in telemetry.locks:
                _upsert_lock_sync(
                    session,
                    lock.lock_id,
                    {
                        "reachable": lock.reachable,
                        "last_sync_at": lock.last_sync_at,
                        "next_sync_at": lock.next_sync_at,
                        "clock_drift_s": lock.clock_drift_s,
                        "telemetry_received_at": now,
                    },
                )

    def gateways(self) -> list[GatewayView]:
        """Every gateway that ever reported."""
        with self._sessions() as session:
            rows = session.scalars(select(Gateway).order_by(Gateway.site, Gateway.gateway))
            return [
                GatewayView(g.site, g.gateway, g.state, g.agent_version, g.last_seen) for g in rows
            ]


def _upsert_lock_sync(session: Session, lock_id: str, values: dict[str, Any]) -> None:
    """Set ``values`` on the lock's sync row (created on first report); a lock the
    cloud does not know is ignored."""
    if session.scalar(select(Lock.id).where(Lock.lock_id == lock_id)) is None:
        return
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = insert(LockSync).values(lock_id=lock_id, **values)
    session.execute(stmt.on_conflict_do_update(index_elements=["lock_id"], set_=values))
