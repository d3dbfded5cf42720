"""The staff PINs' pure parts: a PIN's hash in the site file, staff names, the wait after
wrong PINs (per client address), the session cookie, and the gate that ties them to a
clock (a :class:`ManualClock`, no I/O)."""

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
    staff_name,
)
from protocol.clock import ManualClock
from tests.strategies import pin_hashes

T0 = 1_799_971_200  # 2027-01-15 09:00 Asia/Tokyo
MIDNIGHT = T0 + 15 * 3600  # 2027-01-16 00:00 Asia/Tokyo
SECRET = b"s" * 32
HASHED = PinHash.make("123456")
PINS = {"tanaka": HASHED}
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


def test_a_staff_name_is_folded_to_lower_case_ascii_or_refused() -> None:
    assert staff_name(" Tanaka ") == "tanaka"
    assert staff_name("\uff34\uff41\uff4e\uff41\uff4b\uff41") == "tanaka"  # full width
    assert staff_name("s-0012") == "s-0012"
    for bad in ("", "田中", "a b", "_x", "x" * 33, "a.b"):
        with pytest.raises(StaffAccessError, match="a staff name is 1 to 32"):
            staff_name(bad)


def test_the_gate_checks_each_names_pin_and_keeps_sessions_apart_per_person() -> None:
    clock = ManualClock(T0)
    suzuki = PinHash.make("654321")
    gate = StaffGate({**PINS, "suzuki": suzuki}, secret=SECRET, clock=clock)
    assert (gate.is_open, gate.is_unset) == (False, False)
    assert gate.check_pin("tanaka", "000000", "10.0.0.9") is PinCheck.WRONG
    assert gate.check_pin("tanaka", "123456", "10.0.0.9") is PinCheck.RIGHT
    assert gate.wrong_left("10.0.0.9") == MAX_WRONG
    assert gate.check_pin("Tanaka", FULL_WIDTH, "10.0.0.9") is PinCheck.RIGHT  # IME on
    assert gate.check_pin("suzuki", "123456", "10.0.0.9") is PinCheck.WRONG  # tanaka's PIN
    assert gate.check_pin("nobody", "123456", "10.0.0.9") is PinCheck.WRONG
    assert gate.check_pin("田中", "123456", "10.0.0.9") is PinCheck.WRONG
    cookie, max_age = gate.open_session("tanaka")
    assert max_age == SESSION_S
    assert gate.session_staff(cookie) == "tanaka"
    assert gate.session_staff("suzuki." + cookie.partition(".")[2]) is None
    # the same secret with a new PIN for tanaka: tanaka's sessions are gone, suzuki's stay
    other, _ = gate.open_session("suzuki")
    renewed = StaffGate(
        {"tanaka": PinHash.make("123456"), "suzuki": suzuki}, secret=SECRET, clock=clock
    )
    assert renewed.session_staff(cookie) is None
    assert renewed.session_staff(other) == "suzuki"
    assert StaffGate({"suzuki": suzuki}, secret=SECRET, clock=clock).session_staff(cookie) is None
    assert StaffGate(PINS, secret=SECRET, clock=clock).session_staff(cookie) == "tanaka"
    gate.close_session(cookie)
    assert gate.session_staff(cookie) is None
    assert gate.session_staff(other) == "suzuki"


def test_wrong_pins_make_only_their_address_wait_and_the_wait_doubles() -> None:
    clock = ManualClock(T0)
    gate = StaffGate(PINS, secret=SECRET, clock=clock)
    guesser, desk = "192.168.10.66", "192.168.10.2"
    for left in range(MAX_WRONG - 1, 0, -1):
        assert gate.check_pin("tanaka", "000000", guesser) is PinCheck.WRONG
        assert gate.wrong_left(guesser) == left
    assert gate.check_pin("tanaka", "000000", guesser) is PinCheck.LOCKED
    assert gate.check_pin("tanaka", "123456", guesser) is PinCheck.LOCKED  # the right PIN waits too
    assert gate.locked_until(guesser) == T0 + FIRST_WAIT_S
    assert gate.check_pin("tanaka", "123456", desk) is PinCheck.RIGHT  # the desk is not held up
    assert gate.locked_until(desk) is None
    clock.advance(FIRST_WAIT_S)
    assert gate.check_pin("tanaka", "111111", guesser) is PinCheck.LOCKED  # waits twice as long now
    assert gate.locked_until(guesser) == clock.now() + 2 * FIRST_WAIT_S
    clock.advance(2 * FIRST_WAIT_S)
    assert gate.check_pin("tanaka", "123456", guesser) is PinCheck.RIGHT
    assert gate.wrong_left(guesser) == MAX_WRONG  # a right PIN starts it again


def test_without_a_pin_the_gate_is_closed_unless_the_site_opened_it() -> None:
    clock = ManualClock(T0)
    closed = StaffGate({}, secret=SECRET, clock=clock)
    assert (closed.is_unset, closed.is_open) == (True, False)
    assert closed.check_pin("tanaka", "123456", "10.0.0.9") is PinCheck.WRONG
    assert (
        closed.session_staff(StaffGate(PINS, secret=SECRET, clock=clock).open_session("tanaka")[0])
        is None
    )
    opened = StaffGate({}, secret=SECRET, clock=clock, required=False)
    assert (opened.is_unset, opened.is_open) == (False, True)
