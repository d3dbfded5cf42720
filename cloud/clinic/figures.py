"""The clinic manager's figures for one site and one Asia/Tokyo day.

- ``checkins_per_hour``: tickets by the local hour they were issued, from the first to
  the last hour with a check-in (hours between with none are listed with 0);
- per department (where the ticket is now; a transferred one counts where it went):
  waiting time, check-in to first call, as median and 90th percentile (nearest rank) of
  the tickets called so far; done, no-shows and the no-show rate no_show / (done +
  no_show) (None while neither happened);
- the same rate for the whole site, and how many tickets the agent issued offline.

Tickets the agent issued or called while the internet was down count like any other:
their times are the agent's, recorded when the events arrived.

A day whose tickets were deleted (``clinic_retention_days`` later, :mod:`cloud.clinic.
retention`) reads the same figures from what was kept of it (:func:`kept_day`).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload, sessionmaker

from cloud.clinic.models import (
    Clinic,
    KeptDayFigures,
    KeptDepartmentFigures,
    Ticket,
    TicketSource,
)
from cloud.errors import NotFoundError
from protocol.messages import ClinicTicketState
from protocol.queue_rules import TOKYO


@dataclass(frozen=True, slots=True)
class HourCount:
    hour: int  # local hour 0-23
    checkins: int


@dataclass(frozen=True, slots=True)
class DepartmentFigures:
    department: str
    name: str
    tickets: int
    called: int
    wait_median_s: float | None
    wait_p90_s: float | None
    done: int
    no_shows: int
    no_show_rate: float | None


@dataclass(frozen=True, slots=True)
class ClinicDayFigures:
    site: str
    day: date
    checkins: int
    offline_tickets: int
    checkins_per_hour: tuple[HourCount, ...]
    departments: tuple[DepartmentFigures, ...]
    no_show_rate: float | None


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (``q`` in 0..1) of ``values``; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(math.ceil(q * len(ordered)) - 1, 0)]


def _rate(no_shows: int, done: int) -> float | None:
    ended = no_shows + done
    return round(no_shows / ended, 4) if ended else None


def kept_day(session: Session, site: str, day: date) -> ClinicDayFigures | None:
    """The figures kept of a day whose tickets are gone; None if none were kept."""
    kept = session.get(KeptDayFigures, (site, day))
    if kept is None:
        return None
    lines = session.scalars(
        select(KeptDepartmentFigures)
        .where(KeptDepartmentFigures.site == site, KeptDepartmentFigures.day == day)
        .order_by(KeptDepartmentFigures.position)
    ).all()
    departments = tuple(
        DepartmentFigures(
            department=d.department,
            name=d.name,
            tickets=d.tickets,
            called=d.called,
            wait_median_s=d.wait_median_s,
            wait_p90_s=d.wait_p90_s,
            done=d.done,
            no_shows=d.no_shows,
            no_show_rate=_rate(d.no_shows, d.done),
        )
        for d in lines
    )
    return ClinicDayFigures(
        site=site,
        day=day,
        checkins=kept.checkins,
        offline_tickets=kept.offline_tickets,
        checkins_per_hour=tuple(HourCount(h, n) for h, n in kept.checkins_per_hour),
        departments=departments,
        no_show_rate=_rate(sum(d.no_shows for d in lines), sum(d.done for d in lines)),
    )


class ClinicFigureService:
    """Compute a site's figures of a day."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def day(self, site: str, day: date) -> ClinicDayFigures:
        """The figures of ``site`` on ``day`` (module docstring)."""
        with self._sessions() as session:
            clinic = session.scalars(
                select(Clinic).where(Clinic.site == site).options(selectinload(Clinic.departments))
            ).one_or_none()
            if clinic is None:
                raise NotFoundError(f"there is no clinic at site {site!r}")
            kept = kept_day(session, site, day)
            if kept is not None:
                return kept
            departments = [(d.slug, d.name) for d in clinic.departments]
            rows = session.scalars(
                select(Ticket).where(Ticket.site == site, Ticket.day == day)
            ).all()
        hours: dict[int, int] = {}
        for r in rows:
            hour = datetime.fromtimestamp(r.queued_at, TOKYO).hour
            hours[hour] = hours.get(hour, 0) + 1
        per_hour = (
            tuple(HourCount(h, hours.get(h, 0)) for h in range(min(hours), max(hours) + 1))
            if hours
            else ()
        )
        figures = []
        for slug, name in departments:
            own = [r for r in rows if r.department == slug]
            waits = [
                max(r.first_called_at - r.queued_at, 0.0)
                for r in own
                if r.first_called_at is not None
            ]
            done = sum(r.state is ClinicTicketState.DONE for r in own)
            missed = sum(r.state is ClinicTicketState.NO_SHOW for r in own)
            figures.append(
                DepartmentFigures(
                    department=slug,
                    name=name,
                    tickets=len(own),
                    called=len(waits),
                    wait_median_s=round(statistics.median(waits), 1) if waits else None,
                    wait_p90_s=None if not waits else round(percentile(waits, 0.9) or 0.0, 1),
                    done=done,
                    no_shows=missed,
                    no_show_rate=_rate(missed, done),
                )
            )
        return ClinicDayFigures(
            site=site,
            day=day,
            checkins=len(rows),
            offline_tickets=sum(r.source is TicketSource.AGENT for r in rows),
            checkins_per_hour=per_hour,
            departments=tuple(figures),
            no_show_rate=_rate(sum(f.no_shows for f in figures), sum(f.done for f in figures)),
        )
