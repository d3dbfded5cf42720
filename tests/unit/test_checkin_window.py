"""The check-in window rule (:mod:`protocol.checkin_window`) on its own: no database, no
event loop, no clock; the table of its docstring case by case, then its properties."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.checkin_window import Open, TooEarly, WalkIn, checkin_window
from protocol.messages import ClinicAppointment
from tests.strategies import appointment_times, checkin_opens_before, clinic_moments

NINE = 1_799_971_200  # 2027-01-15 09:00 Asia/Tokyo
MIN = 60
HALF_HOUR = 30 * MIN


@dataclass(frozen=True)
class Booked:
    """An appointment as the cloud's rows and the agent's clinic state both look to the
    rule: a time, and something to tell two of them apart."""

    at: int
    name: str = ""


def at(minutes_after_nine: int, name: str = "") -> Booked:
    return Booked(NINE + minutes_after_nine * MIN, name)


@pytest.mark.parametrize(
    ("appointments", "now_min", "opens_before_s", "expected"),
    [
        # no appointment: a walk-in
        ([], 0, HALF_HOUR, WalkIn()),
        # one appointment, the 30-minute window around its opening
        ([at(60)], 0, HALF_HOUR, TooEarly(at(60), NINE + 30 * MIN)),
        ([at(60)], 29, HALF_HOUR, TooEarly(at(60), NINE + 30 * MIN)),
        ([at(60)], 30, HALF_HOUR, Open(at(60))),  # the boundary is inclusive
        ([at(60)], 31, HALF_HOUR, Open(at(60))),
        ([at(60)], 60, HALF_HOUR, Open(at(60))),  # on time
        ([at(60)], 300, HALF_HOUR, Open(at(60))),  # late: still its appointment
        # the window is the clinic's: 90 minutes, none at all
        ([at(60)], 0, 90 * MIN, Open(at(60))),
        ([at(60)], 59, 0, TooEarly(at(60), NINE + 60 * MIN)),
        ([at(60)], 60, 0, Open(at(60))),
        # several: the earliest open one, else the earliest with its opening time
        ([at(60, "a"), at(120, "b")], 0, HALF_HOUR, TooEarly(at(60, "a"), NINE + 30 * MIN)),
        ([at(60, "a"), at(120, "b")], 45, HALF_HOUR, Open(at(60, "a"))),
        ([at(60, "a"), at(120, "b")], 100, HALF_HOUR, Open(at(60, "a"))),  # both open
        ([at(-120, "a"), at(60, "b")], 0, HALF_HOUR, Open(at(-120, "a"))),  # missed one
        # given in any order: earliest by time
        ([at(120, "b"), at(60, "a")], 45, HALF_HOUR, Open(at(60, "a"))),
        ([at(120, "b"), at(60, "a")], 0, HALF_HOUR, TooEarly(at(60, "a"), NINE + 30 * MIN)),
        # same time: the order given decides
        ([at(60, "x"), at(60, "y")], 30, HALF_HOUR, Open(at(60, "x"))),
        ([at(60, "y"), at(60, "x")], 0, HALF_HOUR, TooEarly(at(60, "y"), NINE + 30 * MIN)),
    ],
)
def test_the_rule_table(
    appointments: list[Booked],
    now_min: int,
    opens_before_s: int,
    expected: Open[Booked] | TooEarly[Booked] | WalkIn,
) -> None:
    assert checkin_window(appointments, NINE + now_min * MIN, opens_before_s) == expected


def test_a_fraction_of_a_second_before_the_opening_is_too_early() -> None:
    opening = NINE + 30 * MIN
    assert isinstance(checkin_window([at(60)], opening - 0.001, HALF_HOUR), TooEarly)
    assert isinstance(checkin_window([at(60)], float(opening), HALF_HOUR), Open)


def test_it_takes_the_clinic_states_appointments_as_they_are() -> None:
    mine = [
        ClinicAppointment(card_tag="ab" * 16, department="ortho", at=NINE + 60 * MIN),
        ClinicAppointment(card_tag="ab" * 16, department="internal", at=NINE + 10 * MIN),
    ]
    verdict = checkin_window(mine, NINE, HALF_HOUR)
    assert verdict == Open(mine[1])
    assert verdict.appointment.department == "internal"


@given(appointment_times, clinic_moments, checkin_opens_before)
def test_the_verdict_is_the_definition(times: list[int], now: float, opens_before_s: int) -> None:
    mine = [Booked(t, str(i)) for i, t in enumerate(times)]
    verdict = checkin_window(mine, now, opens_before_s)
    open_now = [a for a in mine if now >= a.at - opens_before_s]
    if not mine:
        assert verdict == WalkIn()
    elif open_now:
        assert isinstance(verdict, Open)
        assert verdict.appointment in open_now
        assert verdict.appointment.at == min(a.at for a in open_now)
        # ties: the first given
        assert verdict.appointment == next(a for a in mine if a.at == verdict.appointment.at)
    else:
        assert isinstance(verdict, TooEarly)
        assert verdict.appointment.at == min(a.at for a in mine)
        assert verdict.opens_at == verdict.appointment.at - opens_before_s
        assert verdict.opens_at > now


@given(appointment_times.filter(bool), clinic_moments, checkin_opens_before)
def test_coming_back_at_the_time_it_names_checks_in_for_that_appointment(
    times: list[int], now: float, opens_before_s: int
) -> None:
    mine = [Booked(t, str(i)) for i, t in enumerate(times)]
    verdict = checkin_window(mine, now, opens_before_s)
    if isinstance(verdict, TooEarly):
        assert checkin_window(mine, verdict.opens_at, opens_before_s) == Open(verdict.appointment)


@given(
    appointment_times.filter(bool),
    clinic_moments,
    st.integers(0, 12 * 3600),
    checkin_opens_before,
)
def test_once_open_it_stays_open_for_the_day_and_never_for_a_later_appointment(
    times: list[int], now: float, later_by: int, opens_before_s: int
) -> None:
    mine = [Booked(t, str(i)) for i, t in enumerate(times)]
    first = checkin_window(mine, now, opens_before_s)
    then = checkin_window(mine, now + later_by, opens_before_s)
    if isinstance(first, Open):
        assert isinstance(then, Open)
        assert then.appointment.at <= first.appointment.at


@given(appointment_times, clinic_moments, checkin_opens_before)
def test_the_order_given_matters_only_between_equal_times(
    times: list[int], now: float, opens_before_s: int
) -> None:
    mine = [Booked(t) for t in times]  # equal times are equal appointments here
    assert checkin_window(mine, now, opens_before_s) == checkin_window(
        list(reversed(mine)), now, opens_before_s
    )
