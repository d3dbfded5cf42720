"""The booking rules as pure functions: every refusal says what was wrong and what to do;
the fee; off-peak; opening hours across midnight; a day cut into free and taken."""

from __future__ import annotations

import dataclasses
from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest

from cloud.errors import ConflictError, InvalidRequestError
from cloud.gym.availability import segments
from cloud.gym.models import PaymentState
from cloud.gym.payments import PaymentAction, next_payment_state
from cloud.gym.rules import (
    BookingRules,
    check_slot,
    fee_yen,
    format_minutes,
    is_off_peak,
    open_intervals,
    parse_clock,
)

TOKYO = ZoneInfo("Asia/Tokyo")
HOUR = 3600


def at(text: str) -> int:
    """Epoch seconds of a Tokyo wall-clock time ``2027-01-15 09:00``."""
    return int(datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=TOKYO).timestamp())


NOW = at("2027-01-15 09:00")  # a Friday
WEEKDAY_HOURS = dict.fromkeys(range(6), (9 * 60, 21 * 60))  # Mon-Sat 09-21, Sunday closed
RULES = BookingRules(
    facility_name="Gym B",
    hours=WEEKDAY_HOURS,
    closed_days={date(2027, 1, 20): "school sports day"},
    min_minutes=60,
    max_minutes=180,
    lead_minutes=60,
    horizon_days=30,
    hourly_fee_yen=1200,
    off_peak=(9 * 60, 16 * 60),
)


@pytest.mark.parametrize(
    ("start", "end", "message"),
    [
        ("2027-01-15 12:00", "2027-01-15 11:00", r"must end after it starts.*pick a later end"),
        ("2027-01-15 08:00", "2027-01-15 10:00", r"08:00\u201310:00 on 2027-01-15 is in the past"),
        (
            "2027-01-15 12:00",
            "2027-01-15 12:30",
            r"is 30 minutes; Gym B takes bookings of at least 1 hour: pick a later end time",
        ),
        (
            "2027-01-15 12:00",
            "2027-01-15 16:00",
            r"longer than 3 hours, the most Gym B takes in one booking; book it in parts",
        ),
        (
            "2027-01-15 09:30",
            "2027-01-15 10:30",
            r"starts too soon: Gym B takes bookings at least 1 hour ahead; "
            r"pick a start from 2027-01-15 10:00 on",
        ),
        (
            "2027-02-15 10:00",
            "2027-02-15 11:00",
            r"too far ahead: Gym B takes bookings up to 30 days ahead \(until 2027-02-14\)",
        ),
        (
            "2027-01-20 10:00",
            "2027-01-20 11:00",
            r"Gym B is closed on 2027-01-20 \(school sports day\); pick another day",
        ),
        (
            "2027-01-17 10:00",
            "2027-01-17 11:00",
            r"outside the opening hours \(Gym B is closed on Sundays\); pick a time inside them",
        ),
        (
            "2027-01-15 20:30",
            "2027-01-15 21:30",
            r"outside the opening hours \(Gym B is open 09:00\u201321:00 on 2027-01-15\)",
        ),
    ],
)
def test_each_broken_rule_is_refused_with_what_to_do(start: str, end: str, message: str) -> None:
    with pytest.raises(InvalidRequestError, match=message):
        check_slot(RULES, at(start), at(end), NOW, TOKYO)


def test_a_slot_inside_every_rule_passes() -> None:
    check_slot(RULES, at("2027-01-15 18:00"), at("2027-01-15 21:00"), NOW, TOKYO)


def test_a_facility_open_around_the_clock_takes_a_booking_over_midnight() -> None:
    rules = BookingRules("Gym A", hours=dict.fromkeys(range(7), (0, 1440)), max_minutes=1440)
    check_slot(rules, at("2027-01-15 23:30"), at("2027-01-16 00:30"), NOW, TOKYO)
    assert open_intervals(rules, date(2027, 1, 15), date(2027, 1, 16), TOKYO) == [
        (at("2027-01-15 00:00"), at("2027-01-17 00:00"))
    ]
    # Gym B closes at 21:00 and opens at 09:00: no booking through the night
    long_ok = dataclasses.replace(RULES, max_minutes=1440)
    with pytest.raises(InvalidRequestError, match="outside the opening hours"):
        check_slot(long_ok, at("2027-01-15 20:00"), at("2027-01-16 10:00"), NOW, TOKYO)


@pytest.mark.parametrize(("minutes", "fee"), [(60, 1200), (90, 1800), (150, 3000), (1, 20), (0, 0)])
def test_fee_is_hours_times_the_hourly_fee(minutes: int, fee: int) -> None:
    start = at("2027-01-15 10:00")
    assert fee_yen(1200, start, start + minutes * 60) == fee


def test_fee_rounds_up_to_a_whole_yen() -> None:
    start = at("2027-01-15 10:00")
    assert fee_yen(1000, start, start + 60) == 17  # 16.67 yen for a minute


def test_off_peak_is_weekdays_inside_the_hours() -> None:
    assert is_off_peak(RULES, at("2027-01-15 10:00"), at("2027-01-15 12:00"), TOKYO)
    assert not is_off_peak(RULES, at("2027-01-15 15:00"), at("2027-01-15 17:00"), TOKYO)
    assert not is_off_peak(RULES, at("2027-01-16 10:00"), at("2027-01-16 11:00"), TOKYO)  # Sat
    no_rule = BookingRules("Gym A")
    assert not is_off_peak(no_rule, at("2027-01-15 10:00"), at("2027-01-15 11:00"), TOKYO)


def test_clock_and_duration_text() -> None:
    assert parse_clock("09:30") == 570
    assert parse_clock("24:00") == 1440
    for bad in ("9", "25:00", "09:75", "ab:cd"):
        with pytest.raises(InvalidRequestError, match="time of day"):
            parse_clock(bad)
    assert format_minutes(90) == "1 hour 30 minutes"
    assert format_minutes(1440) == "24 hours"
    assert format_minutes(0) == "0 minutes"


def test_a_day_is_cut_into_unavailable_free_and_taken() -> None:
    opens, closes = at("2027-01-15 09:00"), at("2027-01-15 21:00")
    taken = [
        (at("2027-01-15 13:00"), at("2027-01-15 14:00")),
        (at("2027-01-15 14:00"), at("2027-01-15 15:00")),  # back to back: one stretch
        (at("2027-01-15 20:00"), at("2027-01-15 22:00")),  # runs past closing: clipped
    ]
    got = segments(opens, closes, taken, at("2027-01-15 10:00"), "past")
    assert [(s.state, s.start, s.end) for s in got] == [
        ("unavailable", opens, at("2027-01-15 10:00")),
        ("free", at("2027-01-15 10:00"), at("2027-01-15 13:00")),
        ("taken", at("2027-01-15 13:00"), at("2027-01-15 15:00")),
        ("free", at("2027-01-15 15:00"), at("2027-01-15 20:00")),
        ("taken", at("2027-01-15 20:00"), closes),
    ]
    assert segments(opens, closes, [], closes, "too far") == (
        segments(opens, closes, [], closes + HOUR, "too far")
    )


@pytest.mark.parametrize(
    ("state", "action", "after"),
    [
        (PaymentState.UNPAID, PaymentAction.PAY, PaymentState.PAID),
        (PaymentState.PAID, PaymentAction.REFUND, PaymentState.REFUNDED),
    ],
)
def test_legal_payment_moves(
    state: PaymentState, action: PaymentAction, after: PaymentState
) -> None:
    assert next_payment_state("r1", state, action) is after


@pytest.mark.parametrize(
    ("state", "action", "message"),
    [
        (PaymentState.PAID, PaymentAction.PAY, "is paid already"),
        (PaymentState.REFUNDED, PaymentAction.PAY, "was refunded and cannot be paid again"),
        (PaymentState.UNPAID, PaymentAction.REFUND, "is unpaid; only a paid booking"),
        (PaymentState.REFUNDED, PaymentAction.REFUND, "was refunded already"),
    ],
)
def test_illegal_payment_moves_are_refused(
    state: PaymentState, action: PaymentAction, message: str
) -> None:
    with pytest.raises(ConflictError, match=f"the payment of booking r1 {message}"):
        next_payment_state("r1", state, action)
