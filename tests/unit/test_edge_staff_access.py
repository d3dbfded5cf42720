"""The staff PIN's pure parts: its hash in the site file, the wait after wrong PINs (per
client address), the session cookie, and the gate that ties them to a clock (a
:class:`ManualClock`, no I/O)."""

from __future__ import annotations

import pytest
from hypothesis import given

from edge.clinic.staff_access import (
    FIRST_WAIT_S,
    MAX_WRONG,
    SESSION_S,
    PinCheck,
    PinHash,
    StaffAccessError,
    StaffGate,
    check_pin_format,
    read_session,
    session_end,
    sign_session,
)
from protocol.clock import ManualClock
from tests.strategies import pin_hashes

T0 = 1_799_971_200  # 2027-01-15 09:00 Asia/Tokyo
MIDNIGHT = T0 + 15 * 3600  # 2027-01-16 00:00 Asia/Tokyo
SECRET = b"s" * 32
HASHED = PinHash.make("123456")
FULL_WIDTH = "\uff11\uff12\uff13\uff14\uff15\uff16"  # 123456 as a Japanese IME types it


@given(pin_hashes)
def test_a_pin_hash_reads_back_as_written(pin_hash: PinHash) -> None:
    assert PinHash.parse(str(pin_hash)) == pin_hash


def test_a_pin_hash_checks_the_pin_and_its_salt_makes_each_one_different() -> None:
    assert HASHED.matches("123456")
    assert not any(HASHED.matches(p) for p in ("123457", "12345", "123456 ", "", FULL_WIDTH))
    again = PinHash.make("123456")
    assert str(again) != str(HASHED)
    assert str(HASHED).startswith("$scrypt$ln=14,r=8,p=1$")
    assert "123456" not in str(HASHED)


@pytest.mark.parametrize("pin", ["12345", "1234567890123", "12a456", "12 3456", "", FULL_WIDTH[:5]])
def test_a_pin_is_6_to_12_ascii_digits(pin: str) -> None:
    with pytest.raises(StaffAccessError, match="6 to 12 digits"):
        check_pin_format(pin)
    with pytest.raises(StaffAccessError):
        PinHash.make(pin)
    assert check_pin_format("000000") == "000000"
    assert check_pin_format("9" * 12) == "9" * 12


def test_a_session_ends_after_twelve_hours_or_at_tokyo_midnight() -> None:
    assert session_end(T0) == T0 + SESSION_S  # 09:00 -> 21:00
    assert session_end(T0 + 14 * 3600) == MIDNIGHT  # 23:00 -> 00:00
    assert session_end(MIDNIGHT) == MIDNIGHT + SESSION_S


def test_a_session_cookie_is_read_only_with_its_key_and_before_it_expires() -> None:
    cookie = sign_session(SECRET, T0 + 60, "abc")
    assert read_session(SECRET, cookie, T0) == (T0 + 60, "abc")
    assert read_session(SECRET, cookie, T0 + 60) is None  # expired
    assert read_session(b"t" * 32, cookie, T0) is None
    assert read_session(SECRET, cookie.replace("abc", "abd"), T0) is None
    far = sign_session(SECRET, int(T0 + SESSION_S + 1), "abc")
    assert read_session(SECRET, far, T0) is None  # longer than any session we issue
    for junk in ("", "a.b", "x.abc.00", "1.2.3.4", "-1.abc.00"):
        assert read_session(SECRET, junk, T0) is None


def test_the_gate_checks_pins_and_keeps_sessions_apart_per_pin() -> None:
    clock = ManualClock(T0)
    gate = StaffGate(HASHED, secret=SECRET, clock=clock)
    assert (gate.is_open, gate.is_unset) == (False, False)
    assert gate.check_pin("000000", "10.0.0.9") is PinCheck.WRONG
    assert gate.check_pin("123456", "10.0.0.9") is PinCheck.RIGHT
    assert gate.wrong_left("10.0.0.9") == MAX_WRONG
    assert gate.check_pin(FULL_WIDTH, "10.0.0.9") is PinCheck.RIGHT  # typed with the IME on
    cookie, max_age = gate.open_session()
    assert max_age == SESSION_S
    assert gate.session_valid(cookie)
    # the same secret with a new PIN: the old sessions are gone
    renewed = StaffGate(PinHash.make("654321"), secret=SECRET, clock=clock)
    assert not renewed.session_valid(cookie)
    assert StaffGate(HASHED, secret=SECRET, clock=clock).session_valid(cookie)  # a restart
    gate.close_session(cookie)
    assert not gate.session_valid(cookie)


def test_wrong_pins_make_only_their_address_wait_and_the_wait_doubles() -> None:
    clock = ManualClock(T0)
    gate = StaffGate(HASHED, secret=SECRET, clock=clock)
    guesser, desk = "192.168.10.66", "192.168.10.2"
    for left in range(MAX_WRONG - 1, 0, -1):
        assert gate.check_pin("000000", guesser) is PinCheck.WRONG
        assert gate.wrong_left(guesser) == left
    assert gate.check_pin("000000", guesser) is PinCheck.LOCKED
    assert gate.check_pin("123456", guesser) is PinCheck.LOCKED  # the right PIN waits too
    assert gate.locked_until(guesser) == T0 + FIRST_WAIT_S
    assert gate.check_pin("123456", desk) is PinCheck.RIGHT  # the desk is not held up
    assert gate.locked_until(desk) is None
    clock.advance(FIRST_WAIT_S)
    assert gate.check_pin("111111", guesser) is PinCheck.LOCKED  # waits twice as long now
    assert gate.locked_until(guesser) == clock.now() + 2 * FIRST_WAIT_S
    clock.advance(2 * FIRST_WAIT_S)
    assert gate.check_pin("123456", guesser) is PinCheck.RIGHT
    assert gate.wrong_left(guesser) == MAX_WRONG  # a right PIN starts it again


def test_without_a_pin_the_gate_is_closed_unless_the_site_opened_it() -> None:
    clock = ManualClock(T0)
    closed = StaffGate(None, secret=SECRET, clock=clock)
    assert (closed.is_unset, closed.is_open) == (True, False)
    assert closed.check_pin("123456", "10.0.0.9") is PinCheck.WRONG
    assert not closed.session_valid(closed.open_session()[0])
    opened = StaffGate(None, secret=SECRET, clock=clock, required=False)
    assert (opened.is_unset, opened.is_open) == (False, True)
