"""The facility manager's figures, per local month (Asia/Tokyo) of a date range.

Definitions (also in ``docs/reservations.md``); a booking belongs to the month its slot
starts in, and only approved bookings count (pending, rejected and cancelled do not):

- ``bookings``: approved bookings starting in the month (and the range);
- ``users``: distinct citizens (contact emails, case-insensitive) whose booking ended and
  was not a no-show: the people who used the facility;
- ``visitors``: the group sizes of those bookings summed (people through the door, as
  the citizens declared them);
- ``utilisation``: booked room-hours / open room-hours. Booked: every approved booking's
  length, the future ones included. Open: the weekly opening hours on each day of the
  month inside the range, minus closed days, times the facility's rooms. Today's hours
  are used for past months too (hours are not versioned);
- ``no_show_rate``: no-shows / approved bookings that have ended (None: none ended);
- ``satisfaction``: the mean of the 1-5 scores given for the month's bookings, with
  ``responses`` (None: no score).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import date, time, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload, sessionmaker

from cloud.core.spreadsheet import csv_document
from cloud.errors import InvalidRequestError, NotFoundError
from cloud.gym.models import Facility, NoShow, Reservation, ReservationStatus, SatisfactionScore
from cloud.localtime import epoch_from_local, local
from cloud.settings import CloudSettings
from protocol.clock import Clock

MAX_DAYS = 3 * 366


@dataclass(frozen=True, slots=True)
class MonthFigures:
    month: str  # "2027-01"
    from_day: date
    to_day: date
    bookings: int
    users: int
    visitors: int
    booked_hours: float
    open_hours: float
    utilisation: float | None
    ended_bookings: int
    no_shows: int
    no_show_rate: float | None
    responses: int
    satisfaction: float | None


@dataclass(frozen=True, slots=True)
class FacilityFigures:
    facility_id: int
    facility_name: str
    from_day: date
    to_day: date
    months: tuple[MonthFigures, ...]


CSV_COLUMNS = (
    "facility_id",
    "month",
    "from_day",
    "to_day",
    "bookings",
    "users",
    "visitors",
    "booked_hours",
    "open_hours",
    "utilisation",
    "ended_bookings",
    "no_shows",
    "no_show_rate",
    "responses",
    "satisfaction",
)


def figures_csv(figures: FacilityFigures) -> str:
    """The figures as CSV, one line per month (rates as fractions, blanks for none)."""
    rows = ({"facility_id": figures.facility_id, **asdict(m)} for m in figures.months)
    return csv_document(CSV_COLUMNS, ([row[k] for k in CSV_COLUMNS] for row in rows))


def _months(from_day: date, to_day: date) -> list[tuple[date, date]]:
    """The calendar months touching the range, each clipped to it."""
    spans, first = [], from_day
    while first <= to_day:
        following = (first.replace(day=1) + timedelta(days=32)).replace(day=1)
        last = min(to_day, following - timedelta(days=1))
        spans.append((first, last))
        first = following
    return spans


class FigureService:
    """Compute a facility's monthly figures."""

    def __init__(
        self, sessions: sessionmaker[Session], clock: Clock, settings: CloudSettings
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        self._settings = settings

    def monthly(self, facility_id: int, from_day: date, to_day: date) -> FacilityFigures:
        """One line per month of ``from_day``..``to_day`` (local days, inclusive)."""
        if to_day < from_day:
            raise InvalidRequestError("`to` is before `from`; swap them")
        if (to_day - from_day).days >= MAX_DAYS:
            raise InvalidRequestError(f"pick a range of at most {MAX_DAYS} days")
        zone, now = self._settings.zone, int(self._clock.now())
        start = epoch_from_local(from_day, time(0, 0), zone)
        end = epoch_from_local(to_day + timedelta(days=1), time(0, 0), zone)
        with self._sessions() as session:
            facility = session.get(
                Facility,
                facility_id,
                options=(
                    selectinload(Facility.hours),
                    selectinload(Facility.closed_days),
                    selectinload(Facility.rooms),
                ),
            )
            if facility is None:
                raise NotFoundError(f"no facility {facility_id}")
            bookings = session.scalars(
                select(Reservation).where(
                    Reservation.facility_id == facility_id,
                    Reservation.status == ReservationStatus.APPROVED,
                    Reservation.starts_at >= start,
                    Reservation.starts_at < end,
                )
            ).all()
            ids = [r.id for r in bookings]
            no_shows = set(
                session.scalars(select(NoShow.reservation_id).where(NoShow.reservation_id.in_(ids)))
            )
            score_rows = session.execute(
                select(SatisfactionScore.reservation_id, SatisfactionScore.score).where(
                    SatisfactionScore.reservation_id.in_(ids)
                )
            ).all()
            scores = {str(rid): int(score) for rid, score in score_rows}
            hours = {h.weekday: h.closes_minute - h.opens_minute for h in facility.hours}
            closed = {d.day for d in facility.closed_days}
            rooms, name = len(facility.rooms), facility.name

        months = []
        for first, last in _months(from_day, to_day):
            inside = [r for r in bookings if first <= local(r.starts_at, zone).date() <= last]
            ended = [r for r in inside if r.ends_at <= now]
            used = [r for r in ended if r.id not in no_shows]
            open_minutes = sum(
                hours.get(day.weekday(), 0)
                for day in (first + timedelta(days=i) for i in range((last - first).days + 1))
                if day not in closed
            )
            open_hours = open_minutes * rooms / 60
            booked_hours = sum(r.ends_at - r.starts_at for r in inside) / 3600
            given = [scores[r.id] for r in inside if r.id in scores]
            missed = sum(r.id in no_shows for r in ended)
            months.append(
                MonthFigures(
                    month=f"{first:%Y-%m}",
                    from_day=first,
                    to_day=last,
                    bookings=len(inside),
                    users=len({r.email.lower() for r in used}),
                    visitors=sum(r.group_size for r in used),
                    booked_hours=round(booked_hours, 2),
                    open_hours=round(open_hours, 2),
                    utilisation=round(booked_hours / open_hours, 4) if open_hours else None,
                    ended_bookings=len(ended),
                    no_shows=missed,
                    no_show_rate=round(missed / len(ended), 4) if ended else None,
                    responses=len(given),
                    satisfaction=round(sum(given) / len(given), 2) if given else None,
                )
            )
        return FacilityFigures(facility_id, name, from_day, to_day, tuple(months))
