"""Gateway presence (birth / last will) and what each lock reports it holds."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from cloud.db.models import Gateway, Lock
from protocol.clock import Clock
from protocol.messages import AccessAppliedData, StatusData


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
        """Remember which snapshot version a lock holds."""
        now = int(self._clock.now())
        with self._sessions.begin() as session:
            session.execute(
                update(Lock)
                .where(Lock.lock_id == applied.lock_id)
                .values(applied_version=applied.version, applied_at=now)
            )

    def gateways(self) -> list[GatewayView]:
        """Every gateway that ever reported."""
        with self._sessions() as session:
            rows = session.scalars(select(Gateway).order_by(Gateway.site, Gateway.gateway))
            return [
                GatewayView(g.site, g.gateway, g.state, g.agent_version, g.last_seen) for g in rows
            ]
