"""Wrong guesses per key (a client address, a site), and how long each key must wait.

The cloud's app check-in counts refused cards per client address and per site; the clinic
agent's staff page counts wrong PINs per client address. Both follow one rule, kept here
(pure, no I/O; the caller passes the time):

    wrong guesses of a key   1 … free-1   free         free+1         …   later
    then it waits            nothing      first_wait   2*first_wait   …   max_wait

A right guess forgets the key. A key quiet for ``max_wait_s`` (and not waiting) starts
again from nothing. While a key waits its guesses are refused unseen and not counted.

**Memory is bounded**: the table never holds more than ``max_keys`` keys; a new key beyond
that pushes out the one heard from longest ago. Someone with more addresses than that can
push their own count out, which is why the cloud also counts per site.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

_MAX_DOUBLINGS = 30  # the wait stops growing long before; this keeps 2**n a small number


@dataclass(frozen=True, slots=True)
class GuessRules:
    """How many wrong guesses a key makes before its first wait (``free``), how the wait
    grows after that, and how many keys the table may hold."""

    free: int
    first_wait_s: float
    max_wait_s: float
    max_keys: int

    def wait_after(self, wrong: int) -> float:
        """The wait after the ``wrong``-th wrong guess in a row (0: none)."""
        over = wrong - self.free
        if over < 0:
            return 0.0
        return min(self.max_wait_s, self.first_wait_s * float(1 << min(over, _MAX_DOUBLINGS)))


@dataclass(slots=True)
class _Record:
    wrong: int
    last_at: float
    waits_until: float


class GuessTable:
    """Wrong guesses of each key under :class:`GuessRules` (see the module docstring)."""

    def __init__(self, rules: GuessRules) -> None:
        self.rules = rules
        self._records: dict[str, _Record] = {}  # oldest heard-from first

    def __len__(self) -> int:
        return len(self._records)

    def waits_until(self, key: str, now: float) -> float | None:
        """Until when ``key`` must wait before its next guess is looked at; None: not."""
        record = self._records.get(key)
        if record is None or now >= record.waits_until:
            return None
        return record.waits_until

    def wrong_count(self, key: str, now: float) -> int:
        """Wrong guesses of ``key`` in a row that still count at ``now``."""
        record = self._current(key, now)
        return 0 if record is None else record.wrong

    def wrong(self, key: str, now: float) -> float | None:
        """Count a wrong guess of ``key`` at ``now``; until when it must now wait (None:
        not yet)."""
        record = self._current(key, now)
        if record is None:
            record = _Record(0, now, now)
        elif now < record.waits_until:
            return record.waits_until  # refused unseen: not another guess
        record.wrong += 1
        record.last_at = now
        record.waits_until = now + self.rules.wait_after(record.wrong)
        self._records.pop(key, None)
        self._records[key] = record
        while len(self._records) > self.rules.max_keys:
            del self._records[next(iter(self._records))]
        return record.waits_until if record.waits_until > now else None

    def right(self, key: str) -> None:
        """A right guess: ``key`` starts again from nothing."""
        self._records.pop(key, None)

    def _current(self, key: str, now: float) -> _Record | None:
        record = self._records.get(key)
        if record is None:
            return None
        if now >= record.waits_until and now - record.last_at >= self.rules.max_wait_s:
            del self._records[key]
            return None
        return record


def minutes_left(until: float, now: float) -> int:
    """Whole minutes (at least 1) from ``now`` to ``until``, for "try again in N minutes"."""
    return max(1, math.ceil((until - now) / 60))
