"""A facility's booking rules as plain values, and the pure checks on them (no DB).

Opening hours are minutes from local midnight per weekday (0 = Monday); a day's interval
is ``[opens, closes)`` with ``closes`` up to 1440. Days that touch (closes 24:00, opens
00:00 the next day) merge, so a booking may run past midnight when both days allow it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from cloud.errors import InvalidRequestError
from cloud.localtime import format_local, format_span, local

DAY_MINUTES = 24 * 60
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
FRIDAY = 4


@dataclass(frozen=True, slots=True)
class BookingRules:
    """What a facility allows; ``off_peak`` is ``(from, until)`` minutes on Mon-Fri."""

    facility_name: str
    hours: Mapping[int, tuple[int, int]] = field(default_factory=dict)
    closed_days: Mapping[date, str] = field(default_factory=dict)
    min_minutes: int = 30
    max_minutes: int = DAY_MINUTES
    lead_minutes: int = 0
    horizon_days: int = 90
    hourly_fee_yen: int = 0
    off_peak: tuple[int, int] | None = None


def format_minutes(minutes: int) -> str:
    """``90`` → ``1 hour 30 minutes``; ``1440`` → ``24 hours``."""
    h, m = divmod(minutes, 60)
    parts = []
    if h:
        parts.append(f"{h} hour{'s' if h != 1 else ''}")
    if m or not h:
        parts.append(f"{m} minute{'s' if m != 1 else ''}")
    return " ".join(parts)


def format_clock(minute: int) -> str:
    """Minutes from midnight as ``HH:MM`` (``1440`` is ``24:00``)."""
    return f"{minute // 60:02d}:{minute % 60:02d}"


def parse_clock(text: str) -> int:
    """``HH:MM`` (``24:00`` allowed) as minutes from midnight."""
    hh, sep, mm = text.partition(":")
    if not (sep and hh.isdigit() and mm.isdigit() and len(mm) == 2):
        raise InvalidRequestError(f"{text!r} is not a time of day; write it as HH:MM, e.g. 09:00")
    minute = int(hh) * 60 + int(mm)
    if int(mm) >= 60 or minute > DAY_MINUTES:
        raise InvalidRequestError(f"{text!r} is not a time of day between 00:00 and 24:00")
    return minute


def _at(day: date, minute: int, zone: ZoneInfo) -> int:
    midnight = datetime.combine(day, time(0), tzinfo=zone)
    return int((midnight + timedelta(minutes=minute)).timestamp())


def day_interval(rules: BookingRules, day: date, zone: ZoneInfo) -> tuple[int, int] | None:
    """The epoch interval the facility is open on ``day``, or None (closed)."""
    if day in rules.closed_days:
        return None
    hours = rules.hours.get(day.weekday())
    if hours is None or hours[1] <= hours[0]:
        return None
    return _at(day, hours[0], zone), _at(day, hours[1], zone)


def open_intervals(
    rules: BookingRules, first: date, last: date, zone: ZoneInfo
) -> list[tuple[int, int]]:
    """Opening intervals of the days ``first``..``last``, touching ones merged."""
    merged: list[tuple[int, int]] = []
    day = first
    while day <= last:
        interval = day_interval(rules, day, zone)
        if interval is not None:
            if merged and merged[-1][1] == interval[0]:
                merged[-1] = (merged[-1][0], interval[1])
            else:
                merged.append(interval)
        day += timedelta(days=1)
    return merged


def _hours_of(rules: BookingRules, day: date) -> str:
    hours = rules.hours.get(day.weekday())
    if hours is None:
        return f"closed on {WEEKDAYS[day.weekday()]}s"
    return f"open {format_clock(hours[0])}\u2013{format_clock(hours[1])} on {day:%Y-%m-%d}"


def check_slot(rules: BookingRules, start: int, end: int, now: int, zone: ZoneInfo) -> None:
    """Refuse a slot that breaks a rule, saying which and what to do instead."""
    name = rules.facility_name
    if end <= start:
        raise InvalidRequestError(
            f"the booking must end after it starts (from {format_local(start, zone)} "
            f"to {format_local(end, zone)}); pick a later end time"
        )
    span = format_span(start, end, zone)
    if start < now:
        raise InvalidRequestError(f"the slot {span} is in the past; pick a time from now on")
    minutes = (end - start) // 60
    if minutes < rules.min_minutes:
        raise InvalidRequestError(
            f"the slot {span} is {format_minutes(minutes)}; {name} takes bookings of at least "
            f"{format_minutes(rules.min_minutes)}: pick a later end time"
        )
    if minutes > rules.max_minutes:
        raise InvalidRequestError(
            f"the slot {span} is longer than {format_minutes(rules.max_minutes)}, the most "
            f"{name} takes in one booking; book it in parts"
        )
    if start < now + rules.lead_minutes * 60:
        raise InvalidRequestError(
            f"the slot {span} starts too soon: {name} takes bookings at least "
            f"{format_minutes(rules.lead_minutes)} ahead; pick a start from "
            f"{format_local(now + rules.lead_minutes * 60, zone)} on"
        )
    last_day = local(now, zone).date() + timedelta(days=rules.horizon_days)
    if local(start, zone).date() > last_day:
        raise InvalidRequestError(
            f"the slot {span} is too far ahead: {name} takes bookings up to "
            f"{rules.horizon_days} days ahead (until {last_day:%Y-%m-%d}); book it later"
        )
    first, last = local(start, zone).date(), local(end - 1, zone).date()
    day = first
    while day <= last:
        if day in rules.closed_days:
            raise InvalidRequestError(
                f"{name} is closed on {day:%Y-%m-%d} ({rules.closed_days[day]}); pick another day"
            )
        day += timedelta(days=1)
    if not any(a <= start and end <= b for a, b in open_intervals(rules, first, last, zone)):
        raise InvalidRequestError(
            f"the slot {span} is outside the opening hours ({name} is {_hours_of(rules, first)}); "
            "pick a time inside them"
        )


def fee_yen(hourly_fee_yen: int, start: int, end: int) -> int:
    """Hours times the hourly fee, by the minute, rounded up to a whole yen."""
    minutes = max(0, end - start) // 60
    return math.ceil(minutes * hourly_fee_yen / 60)


def is_off_peak(rules: BookingRules, start: int, end: int, zone: ZoneInfo) -> bool:
    """Whether the slot lies on one weekday (Mon-Fri) inside the off-peak hours."""
    if rules.off_peak is None:
        return False
    day = local(start, zone).date()
    if day.weekday() > FRIDAY:
        return False
    lo, hi = rules.off_peak
    return _at(day, lo, zone) <= start and end <= _at(day, hi, zone)
