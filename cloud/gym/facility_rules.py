"""Managers and ops edit a facility's booking rules: fee, lengths, lead time, how far
ahead, opening hours, closed days, off-peak hours and the registered groups whose
bookings are approved by themselves. New rules apply to new bookings only."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from cloud.errors import ConflictError, InvalidRequestError, NotFoundError
from cloud.gym.booking_common import FACILITY_RULES
from cloud.gym.models import ClosedDay, Facility, OpeningHours, RegisteredGroup
from cloud.gym.rules import DAY_MINUTES, WEEKDAYS, format_clock
from cloud.gym.views import GroupView, OpeningHoursView, RulesView

MAX_HORIZON_DAYS = 730


@dataclass(frozen=True, slots=True)
class RulesUpdate:
    """The editable numbers of a facility's rules (minutes, days, yen)."""

    hourly_fee_yen: int
    min_booking_minutes: int
    max_booking_minutes: int
    lead_time_minutes: int
    horizon_days: int
    off_peak_from_minute: int | None = None
    off_peak_until_minute: int | None = None


def _check(update: RulesUpdate) -> None:
    if update.hourly_fee_yen < 0:
        raise InvalidRequestError("the hourly fee is 0 yen or more")
    if not 1 <= update.min_booking_minutes <= update.max_booking_minutes:
        raise InvalidRequestError(
            "the minimum length is at least 1 minute and not more than the maximum length"
        )
    if update.max_booking_minutes > 7 * DAY_MINUTES:
        raise InvalidRequestError("the maximum length is at most 7 days (10080 minutes)")
    if update.lead_time_minutes < 0:
        raise InvalidRequestError("the lead time is 0 minutes or more")
    if not 1 <= update.horizon_days <= MAX_HORIZON_DAYS:
        raise InvalidRequestError(f"bookings open 1 to {MAX_HORIZON_DAYS} days ahead")
    lo, hi = update.off_peak_from_minute, update.off_peak_until_minute
    if (lo is None) != (hi is None):
        raise InvalidRequestError("give both ends of the off-peak hours, or neither")
    if lo is not None and hi is not None and not 0 <= lo < hi <= DAY_MINUTES:
        raise InvalidRequestError("the off-peak hours run from an earlier to a later time")


def _view(f: Facility) -> RulesView:
    return RulesView(
        facility_id=f.id,
        hourly_fee_yen=f.hourly_fee_yen,
        min_booking_minutes=f.min_booking_minutes,
        max_booking_minutes=f.max_booking_minutes,
        lead_time_minutes=f.lead_time_minutes,
        horizon_days=f.horizon_days,
        off_peak_from_minute=f.off_peak_from_minute,
        off_peak_until_minute=f.off_peak_until_minute,
        payment_method=f.payment_method,
        hours=tuple(OpeningHoursView(h.weekday, h.opens_minute, h.closes_minute) for h in f.hours),
        closed_days=tuple((d.day, d.reason) for d in f.closed_days),
    )


def _facility(session: Session, facility_id: int) -> Facility:
    facility = session.get(Facility, facility_id, options=FACILITY_RULES)
    if facility is None:
        raise NotFoundError(f"no facility {facility_id}; list them with GET /api/facilities")
    return facility


class FacilityRulesService:
    """Read and edit one facility's booking rules."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def rules(self, facility_id: int) -> RulesView:
        """The rules of a facility."""
        with self._sessions() as session:
            return _view(_facility(session, facility_id))

    def set_rules(self, facility_id: int, update: RulesUpdate) -> RulesView:
        """Replace the numbers of the rules."""
        _check(update)
        with self._sessions.begin() as session:
            f = _facility(session, facility_id)
            f.hourly_fee_yen = update.hourly_fee_yen
            f.min_booking_minutes = update.min_booking_minutes
            f.max_booking_minutes = update.max_booking_minutes
            f.lead_time_minutes = update.lead_time_minutes
            f.horizon_days = update.horizon_days
            f.off_peak_from_minute = update.off_peak_from_minute
            f.off_peak_until_minute = update.off_peak_until_minute
            return _view(f)

    def set_hours(self, facility_id: int, hours: Sequence[OpeningHoursView]) -> RulesView:
        """Replace the weekly opening hours; a weekday left out is closed."""
        seen: set[int] = set()
        for h in hours:
            if not 0 <= h.weekday <= 6:
                raise InvalidRequestError("a weekday is 0 (Monday) to 6 (Sunday)")
            if h.weekday in seen:
                raise InvalidRequestError(f"{WEEKDAYS[h.weekday]} is given twice; give it once")
            seen.add(h.weekday)
            if not 0 <= h.opens_minute < h.closes_minute <= DAY_MINUTES:
                raise InvalidRequestError(
                    f"on {WEEKDAYS[h.weekday]} the facility must open before it closes "
                    f"({format_clock(h.opens_minute)}-{format_clock(h.closes_minute)}); "
                    "leave a weekday out to close it"
                )
        with self._sessions.begin() as session:
            _facility(session, facility_id)
            session.execute(delete(OpeningHours).where(OpeningHours.facility_id == facility_id))
            session.add_all(
                OpeningHours(
                    facility_id=facility_id,
                    weekday=h.weekday,
                    opens_minute=h.opens_minute,
                    closes_minute=h.closes_minute,
                )
                for h in hours
            )
            session.flush()
            session.expire_all()
            return _view(_facility(session, facility_id))

    def add_closed_day(self, facility_id: int, day: date, reason: str) -> RulesView:
        """Close the facility on ``day`` (bookings made before stay: cancel them if needed)."""
        reason = reason.strip()
        if not reason or len(reason) > 200:
            raise InvalidRequestError("say why the facility is closed (up to 200 characters)")
        try:
            with self._sessions.begin() as session:
                _facility(session, facility_id)
                session.add(ClosedDay(facility_id=facility_id, day=day, reason=reason))
                session.flush()
                session.expire_all()
                return _view(_facility(session, facility_id))
        except IntegrityError:
            raise ConflictError(f"{day:%Y-%m-%d} is a closed day already") from None

    def remove_closed_day(self, facility_id: int, day: date) -> RulesView:
        """Open ``day`` again."""
        with self._sessions.begin() as session:
            _facility(session, facility_id)
            gone = session.execute(
                delete(ClosedDay).where(ClosedDay.facility_id == facility_id, ClosedDay.day == day)
            )
            if not getattr(gone, "rowcount", 0):
                raise NotFoundError(f"{day:%Y-%m-%d} is not a closed day of facility {facility_id}")
            session.expire_all()
            return _view(_facility(session, facility_id))

    def groups(self, facility_id: int) -> list[GroupView]:
        """The registered groups of a facility."""
        with self._sessions() as session:
            _facility(session, facility_id)
            rows = session.scalars(
                select(RegisteredGroup)
                .where(RegisteredGroup.facility_id == facility_id)
                .order_by(RegisteredGroup.name)
            ).all()
            return [GroupView(g.id, g.facility_id, g.name, g.email) for g in rows]

    def add_group(self, facility_id: int, name: str, email: str) -> GroupView:
        """Register a group: bookings with this contact email are approved by themselves."""
        name, email = name.strip(), email.strip().lower()
        if not name or "@" not in email:
            raise InvalidRequestError("a registered group needs a name and a contact email")
        try:
            with self._sessions.begin() as session:
                _facility(session, facility_id)
                group = RegisteredGroup(facility_id=facility_id, name=name, email=email)
                session.add(group)
                session.flush()
                return GroupView(group.id, facility_id, name, email)
        except IntegrityError:
            raise ConflictError(f"{email} is registered at this facility already") from None

    def remove_group(self, facility_id: int, group_id: int) -> None:
        """Forget a registered group."""
        with self._sessions.begin() as session:
            gone = session.execute(
                delete(RegisteredGroup).where(
                    RegisteredGroup.facility_id == facility_id, RegisteredGroup.id == group_id
                )
            )
            if not getattr(gone, "rowcount", 0):
                raise NotFoundError(f"facility {facility_id} has no registered group {group_id}")
