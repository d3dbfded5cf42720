"""PIN windows and the keyed PIN tag the lock checks.

A PIN in clear exists only where the citizen is told it. Access snapshots and lock slots
carry ``pin_tag(lock_pin_key, pin)``: an HMAC the lock can recompute from typed digits
but nobody can turn back into a PIN without the lock's key.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import secrets
from dataclasses import dataclass

from protocol.errors import DenenError

PIN_MIN_LEN = 4
# Offline PINs are exactly 12 digits (protocol.offline_pin): the keypad tells the two
# kinds apart by length, so a slot PIN stops at 10 and 11 digits is never valid.
PIN_MAX_LEN = 10
TAG_LEN = 16


class PinError(DenenError, ValueError):
    """A PIN that does not meet the rules."""


def pin_tag(key: bytes, pin: str) -> bytes:
    """The 16-byte keyed tag of ``pin`` for the lock holding ``key``."""
    check_pin_format(pin)
    return hmac.new(key, b"denen-pin-v1:" + pin.encode(), hashlib.sha256).digest()[:TAG_LEN]


def check_pin_format(pin: str) -> None:
    if not pin.isdigit() or not pin.isascii():
        raise PinError("a PIN is made of the digits 0-9 only")
    if not PIN_MIN_LEN <= len(pin) <= PIN_MAX_LEN:
        raise PinError(f"a PIN has {PIN_MIN_LEN} to {PIN_MAX_LEN} digits")


def is_trivial(pin: str) -> bool:
    """Repeats (0000, 1212, 123123), and ascending or descending runs (1234, 9876)."""
    digits = [int(c) for c in pin]
    n = len(digits)
    for period in range(1, n // 2 + 1):
        if n % period == 0 and pin == pin[:period] * (n // period):
            return True
    steps = {(b - a) % 10 for a, b in itertools.pairwise(digits)}
    return steps in ({1}, {9})


def generate_pin(length: int = 6, *, avoid: set[str] | frozenset[str] = frozenset()) -> str:
    """A random, non-trivial PIN not in ``avoid`` (PINs of overlapping windows)."""
    if not PIN_MIN_LEN <= length <= PIN_MAX_LEN:
        raise PinError(f"a PIN has {PIN_MIN_LEN} to {PIN_MAX_LEN} digits")
    for _ in range(100):
        pin = "".join(secrets.choice("0123456789") for _ in range(length))
        if not is_trivial(pin) and pin not in avoid:
            return pin
    # nearly every PIN is taken: walk the whole space from a random point
    space = 10**length
    first = secrets.randbelow(space)
    for i in range(space):
        pin = f"{(first + i) % space:0{length}d}"
        if not is_trivial(pin) and pin not in avoid:
            return pin
    raise PinError("no free PIN of that length; use a longer PIN")


@dataclass(frozen=True, slots=True)
class PinWindow:
    """The time a PIN opens a lock: ``start <= t < end``, UTC epoch seconds."""

    start: int
    end: int

    def __post_init__(self) -> None:
        if self.end <= self.start:
            raise PinError("a PIN window must end after it starts")

    def contains(self, t: float) -> bool:
        return self.start <= t < self.end

    def overlaps(self, other: PinWindow) -> bool:
        return self.start < other.end and other.start < self.end

    @classmethod
    def around(cls, start: int, end: int, *, before_s: int, after_s: int) -> PinWindow:
        """The window of a booking from ``start`` to ``end`` with margins either side."""
        return cls(start - before_s, end + after_s)
