"""Availability of a facility's rooms on one local day: inside the opening hours, which
stretches are free, taken (pending or approved bookings) or not bookable (past, inside
the lead time, beyond how far ahead bookings open)."""

from __future__ import annotations

from datetime import date, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload, sessionmaker

from cloud.errors import NotFoundError
from cloud.gym.booking_common import holds_room, rules_of
from cloud.gym.models import Facility, Reservation
from cloud.gym.rules import WEEKDAYS, day_interval, format_minutes
from cloud.gym.views import AvailabilityDay, RoomDay, Segment
from cloud.localtime import local
from cloud.settings import CloudSettings
from protocol.clock import Clock


def segments(
    opens: int, closes: int, taken: list[tuple[int, int]], bookable_from: int, reason: str
) -> tuple[Segment, ...]:
    """Cut ``[opens, closes)`` into taken stretches and free ones; free time before
    ``bookable_from`` is ``unavailable`` with ``reason``."""
    out: list[Segment] = []

    def free(a: int, b: int) -> None:
        cut = min(max(a, bookable_from), b)
        if a < cut:
            out.append(Segment(a, cut, "unavailable", reason))
        if cut < b:
            out.append(Segment(cut, b, "free"))

    cursor = opens
    for first, last in sorted(taken):
        a, b = max(first, cursor), min(last, closes)
        if b <= a:
            continue
        if a > cursor:
            free(cursor, a)
        if out and out[-1].state == "taken" and out[-1].end == a:
            out[-1] = Segment(out[-1].start, b, "taken")  # back-to-back bookings read as one
        else:
            out.append(Segment(a, b, "taken"))
        cursor = b
    if cursor < closes:
        free(cursor, closes)
    return tuple(out)


class AvailabilityService:
    """What a citizen sees before booking."""

    def __init__(
        self, sessions: sessionmaker[Session], clock: Clock, settings: CloudSettings
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        self._settings = settings

    def day(self, facility_id: int, day: date, room_id: int | None = None) -> AvailabilityDay:
        """Each room's (or one room's) free and taken stretches on local ``day``."""
        zone, now = self._settings.zone, int(self._clock.now())
        with self._sessions() as session:
            facility = session.get(
                Facility,
                facility_id,
                options=[
                    selectinload(Facility.hours),
                    selectinload(Facility.closed_days),
                    selectinload(Facility.rooms),
                ],
            )
            if facility is None:
                raise NotFoundError(
                    f"no facility {facility_id}; list them with GET /api/facilities"
                )
            rooms = [r for r in facility.rooms if room_id is None or r.id == room_id]
            if room_id is not None and not rooms:
                raise NotFoundError(f"facility {facility_id} has no room {room_id}")
            rules = rules_of(facility)
            interval = day_interval(rules, day, zone)
            if interval is None:
                closed = rules.closed_days.get(day) or f"closed on {WEEKDAYS[day.weekday()]}s"
                empty = tuple(RoomDay(r.id, r.name, ()) for r in rooms)
                return AvailabilityDay(facility_id, day, None, None, closed, empty)
            opens, closes = interval
            bookable_from = now + rules.lead_minutes * 60
            reason = (
                f"past, or less than {format_minutes(rules.lead_minutes)} ahead"
                if rules.lead_minutes
                else "past"
            )
            last_day = local(now, zone).date() + timedelta(days=rules.horizon_days)
            if day > last_day:
                bookable_from = closes
                reason = f"bookings open {rules.horizon_days} days ahead"
            taken: dict[int, list[tuple[int, int]]] = {r.id: [] for r in rooms}
            for room, start, end in session.execute(
                select(Reservation.room_id, Reservation.starts_at, Reservation.ends_at).where(
                    Reservation.room_id.in_(list(taken)),
                    holds_room(now),
                    Reservation.starts_at < closes,
                    Reservation.ends_at > opens,
                )
            ):
                taken[room].append((start, end))
            out = tuple(
                RoomDay(r.id, r.name, segments(opens, closes, taken[r.id], bookable_from, reason))
                for r in rooms
            )
            return AvailabilityDay(facility_id, day, opens, closes, "", out)
