"""Show UTC epoch seconds in a facility's time zone, and read local form input back.

The plain functions write what the API and the mails use (``2027-01-15 10:00``); the
``_ja`` ones write what a Japanese page shows (``2027年1月15日(金) 10:00``)."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

EN_DASH = "\u2013"  # typographic range dash, "10:00\u201311:00"
WAVE_DASH = "\u301c"  # the range mark of Japanese text, "10:00\u301c11:00"
JA_WEEKDAYS = "月火水木金土日"  # Monday first, as date.weekday()


def local(ts: int | float, zone: ZoneInfo) -> datetime:
    """The aware local datetime of epoch ``ts``."""
    return datetime.fromtimestamp(ts, zone)


def format_local(ts: int | float, zone: ZoneInfo) -> str:
    """``2027-01-15 10:00`` in ``zone``."""
    return local(ts, zone).strftime("%Y-%m-%d %H:%M")


def format_span(start: int | float, end: int | float, zone: ZoneInfo) -> str:
    """``10:00-11:00 on 2027-01-15`` with an en dash; both dates if it crosses midnight."""
    a, b = local(start, zone), local(end, zone)
    if a.date() == b.date():
        return f"{a:%H:%M}{EN_DASH}{b:%H:%M} on {a:%Y-%m-%d}"
    return f"{a:%Y-%m-%d %H:%M}{EN_DASH}{b:%Y-%m-%d %H:%M}"


def format_date_ja(day: date) -> str:
    """``2027年1月15日(金)``."""
    return f"{day.year}年{day.month}月{day.day}日({JA_WEEKDAYS[day.weekday()]})"


def format_local_ja(ts: int | float, zone: ZoneInfo) -> str:
    """``2027年1月15日(金) 10:00`` in ``zone``."""
    t = local(ts, zone)
    return f"{format_date_ja(t.date())} {t:%H:%M}"


def format_span_ja(start: int | float, end: int | float, zone: ZoneInfo) -> str:
    """``2027年1月15日(金) 10:00〜11:00``; both dates if it crosses midnight."""
    a, b = local(start, zone), local(end, zone)
    if a.date() == b.date():
        return f"{format_local_ja(start, zone)}{WAVE_DASH}{b:%H:%M}"
    return f"{format_local_ja(start, zone)}{WAVE_DASH}{format_local_ja(end, zone)}"


def epoch_from_local(day: date, at: time, zone: ZoneInfo) -> int:
    """Epoch seconds of a wall-clock ``day`` and ``at`` in ``zone``."""
    return int(datetime.combine(day, at, tzinfo=zone).timestamp())


def slot_from_form(day: date, at: time, hours: float, zone: ZoneInfo) -> tuple[int, int]:
    """A booking slot from a date, a start time and a duration in hours."""
    start = epoch_from_local(day, at, zone)
    return start, start + int(timedelta(hours=hours).total_seconds())
