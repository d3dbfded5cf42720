"""The fleet audit log: one row per thing a person (or a rollout) did to the fleet."""

from __future__ import annotations

import json
from collections.abc import Collection
from typing import Any

from sqlalchemy import String, cast, func, or_, select
from sqlalchemy.orm import Session, sessionmaker

from cloud.fleet.models import FleetAuditEntry
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

    def search(
        self,
        scope: Collection[str] | None,
        *,
        text: str | None = None,
        site: str | None = None,
        action: str | None = None,
        since: int | None = None,
        until: int | None = None,
        limit: int = 200,
    ) -> list[AuditView]:
        """Newest first, ``since <= at < until``. ``text`` is found in the actor, action,
        site, subject or detail (case-insensitive); ``action`` is one action
        (``command.unlock``) or a family (``command``)."""
        query = select(FleetAuditEntry).order_by(FleetAuditEntry.id.desc()).limit(limit)
        if scope is not None:
            query = query.where(FleetAuditEntry.site.in_(list(scope)))
        if site:
            query = query.where(FleetAuditEntry.site == site)
        if action:
            query = query.where(
                or_(
                    FleetAuditEntry.action == action,
                    FleetAuditEntry.action.startswith(f"{action}.", autoescape=True),
                )
            )
        if since is not None:
            query = query.where(FleetAuditEntry.at >= since)
        if until is not None:
            query = query.where(FleetAuditEntry.at < until)
        if text and text.strip():
            needle = text.strip().lower()
            columns = (
                FleetAuditEntry.actor,
                FleetAuditEntry.action,
                FleetAuditEntry.site,
                FleetAuditEntry.subject,
                cast(FleetAuditEntry.detail, String),
            )
            found = [func.lower(c).contains(needle, autoescape=True) for c in columns]
            # the detail is stored as JSON with non-ASCII escaped (a reason in Japanese)
            escaped = json.dumps(needle)[1:-1]
            if escaped != needle:
                found.append(func.lower(columns[-1]).contains(escaped, autoescape=True))
            query = query.where(or_(*found))
        with self._sessions() as session:
            return [
                AuditView(e.id, e.at, e.actor, e.action, e.site, e.subject, e.detail or {})
                for e in session.scalars(query)
            ]

    def actions(self) -> list[str]:
        """Every action the log holds, for a search form's choice."""
        with self._sessions() as session:
            query = select(FleetAuditEntry.action).distinct().order_by(FleetAuditEntry.action)
            return list(session.scalars(query))
