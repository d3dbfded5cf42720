"""Time is injected: domain code asks a :class:`Clock`, never the wall clock directly."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    """Source of wall-clock time as UTC epoch seconds."""

    def now(self) -> float: ...


class SystemClock:
    """The machine's clock."""

    def now(self) -> float:
        return time.time()


class ManualClock:
    """A clock that moves only when told to; ships with the package so tests and the
    simulators can drive 12-hour syncs or lockouts in microseconds."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self._now = start

    def now(self) -> float:
        return self._now

    def set(self, when: float) -> None:
        self._now = when

    def advance(self, seconds: float) -> None:
        self._now += seconds


# A Pi without a real-time clock boots in 1970; anything before this is not trusted time.
TRUSTED_TIME_FLOOR = 1_704_067_200  # 2024-01-01T00:00:00Z


def is_trusted_time(epoch: float) -> bool:
    """True when ``epoch`` is plausibly real time rather than an RTC-less boot."""
    return epoch >= TRUSTED_TIME_FLOOR
