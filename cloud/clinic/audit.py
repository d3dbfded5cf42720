"""The staff action log of a clinic site: every call, recall, no-show … with who made it
and whether the cloud's queue took it (an action the agent made offline and the cloud
refused on replay is logged with its reason, never silently dropped)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from cloud.clinic.models import ClinicAction
from protocol.queue_rules import tokyo_day


def log_action(
    session: Session,
    site: str,
    at: float,
    actor: str,
    action: str,
    *,
    number: str | None = None,
    department: str | None = None,
    room: str | None = None,
    ok: bool = True,
    detail: str | None = None,
) -> None:
    """Add one entry inside the caller's transaction."""
    session.add(
        ClinicAction(
            site=site,
            day=tokyo_day(at),
            at=at,
            actor=actor[:100],
            action=action,
            number=number,
            department=department,
            room=room,
            ok=ok,
            detail=None if detail is None else detail[:300],
        )
    )


@dataclass(frozen=True, slots=True)
class ActionEntry:
    at: float
    actor: str
    action: str
    number: str | None
    department: str | None
    room: str | None
    ok: bool
    detail: str | None


class ClinicAuditService:
    """Read a site's action log."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def actions(self, site: str, day: date, limit: int = 1000) -> list[ActionEntry]:
        """``day``'s entries at ``site``, oldest first."""
        with self._sessions() as session:
            rows = session.scalars(
                select(ClinicAction)
                .where(ClinicAction.site == site, ClinicAction.day == day)
                .order_by(ClinicAction.id)
                .limit(limit)
            ).all()
            return [
                ActionEntry(r.at, r.actor, r.action, r.number, r.department, r.room, r.ok, r.detail)
                for r in rows
            ]
