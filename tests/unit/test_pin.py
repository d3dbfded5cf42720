"""PINs: never trivial, unique among overlapping windows, windows with margins."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.offline_pin import OFFLINE_PIN_LEN
from protocol.pin import (
    PIN_MAX_LEN,
    PIN_MIN_LEN,
    PinError,
    PinWindow,
    generate_pin,
    is_trivial,
    pin_tag,
)


@pytest.mark.parametrize(
    "pin", ["0000", "1111", "1234", "4321", "1212", "123123", "9876", "987654", "7890"]
)
def test_trivial_pins(pin: str) -> None:
    assert is_trivial(pin)


@pytest.mark.parametrize("pin", ["4829", "130597", "1243", "1122"])
def test_ordinary_pins(pin: str) -> None:
    assert not is_trivial(pin)


@given(st.integers(PIN_MIN_LEN, PIN_MAX_LEN))
def test_generated_pins_are_never_trivial(length: int) -> None:
    pin = generate_pin(length)
    assert len(pin) == length
    assert pin.isdigit()
    assert not is_trivial(pin)


def test_generated_pin_avoids_taken_ones() -> None:
    # every 4-digit PIN but one is taken: the generator must find that one or say so
    free = "4829"
    taken = {f"{i:04d}" for i in range(10000)} - {free}
    assert generate_pin(4, avoid=taken) == free


def test_generator_says_when_no_pin_is_free() -> None:
    taken = {f"{i:04d}" for i in range(10000)}
    with pytest.raises(PinError, match="longer PIN"):
        generate_pin(4, avoid=taken)


def test_tag_depends_on_the_lock_key_and_the_pin() -> None:
    a, b = b"k" * 32, b"j" * 32
    assert pin_tag(a, "482913") != pin_tag(b, "482913")
    assert pin_tag(a, "482913") != pin_tag(a, "482914")
    assert len(pin_tag(a, "482913")) == 16


@pytest.mark.parametrize("bad", ["12a4", "123", "1" * 11, "1" * 12, "1" * 13, "", "١٢٣٤"])
def test_tag_refuses_malformed_pins(bad: str) -> None:
    with pytest.raises(PinError):
        pin_tag(b"k" * 32, bad)


def test_a_slot_pin_is_always_shorter_than_an_offline_pin() -> None:
    # the keypad tells the two apart by length alone
    assert PIN_MAX_LEN < OFFLINE_PIN_LEN
    with pytest.raises(PinError):
        generate_pin(OFFLINE_PIN_LEN)


def test_window_with_margins() -> None:
    w = PinWindow.around(10_000, 13_600, before_s=900, after_s=600)
    assert (w.start, w.end) == (9_100, 14_200)
    assert w.contains(9_100)
    assert not w.contains(14_200)
    assert w.overlaps(PinWindow(14_000, 15_000))
    assert not w.overlaps(PinWindow(14_200, 15_000))


def test_window_must_end_after_start() -> None:
    with pytest.raises(PinError, match="end after"):
        PinWindow(10, 10)
