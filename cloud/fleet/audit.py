"""The fleet audit log: one row per thing a person (or a rollout) did to the fleet."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from cloud.db.fleet_models import FleetAuditEntry
from cloud.fleet.views import AuditView


def audit(
    session: Session,
    now: int,
    actor: str,
    action: str,
    *,
    site: str | None = None,
    subject: str | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    """Add an entry inside the caller's transaction (so it commits with the change)."""
    session.add(
        FleetAuditEntry(
            at=now, actor=actor[:100], action=action, site=site, subject=subject, detail=detail
        )
    )


class FleetAuditService:
    """Read the fleet audit log."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def entries(
        self, scope: Collection[str] | None, *, site: str | None = None, limit: int = 200
    ) -> list[AuditView]:
        """Newest first; ``scope`` None: every site, else only those sites' entries."""
        query = select(FleetAuditEntry).order_by(FleetAuditEntry.id.desc()).limit(limit)
        if scope is not None:
            query = query.where(FleetAuditEntry.site.in_(list(scope)))
        if site is not None:
            query = query.where(FleetAuditEntry.site == site)
        with self._sessions() as session:
            return [
                AuditView(e.id, e.at, e.actor, e.action, e.site, e.subject, e.detail or {})
                for e in session.scalars(query)
            ]
