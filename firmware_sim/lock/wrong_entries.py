"""How many wrong codes the keypad takes: sliding windows of the lock's own clock.

A run of wrong PINs "in a row" is no limit: one valid code (a citizen's, or the guesser's
own booking) starts the run again, so 20,000 guesses never locked the keypad. Here every
wrong entry is counted in every window it falls in, whatever came between, and the
keypad is locked out while any window holds its limit. A lockout ends when the oldest
entry that filled the window leaves it, so in the long run a window passes exactly its
limit and no more (``docs/offline-pins.md``, "Guessing a PIN at the door", works the
odds out from these figures).

The figures, for a school gym booked by the hour:

* **5 in 10 minutes.** A citizen who mistypes tries again two or three times; five is a
  forgotten PIN, and ten minutes is short enough to phone the facility and be let in
  (the fleet's remote unlock ignores the keypad lockout).
* **20 in a day.** A busy gym sees a handful of typos a day. Twenty caps a patient
  guesser, who could otherwise make 5 guesses every 10 minutes (720 a day), at 20 a
  day. Reaching it locks the keypad until the oldest of the 20 is a day old: a vandal
  who types 20 wrong codes shuts the keypad for up to a day. The lockout alert (and,
  from 10 wrong entries in an hour, the guessing alert) tells on-call, who can
  let booked citizens in remotely; a lock that opened for guesses instead would be worse.

The lock keeps the times of the wrong entries of the longest window (at most the largest
limit, as entries refused during a lockout are not counted); a firmware update
(``reboot_into``) keeps them, as it keeps the lockout.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

HOUR_S = 3600.0


@dataclass(frozen=True, slots=True)
class Limit:
    """At most ``entries`` wrong entries in any ``window_s`` seconds."""

    entries: int
    window_s: float

    def __post_init__(self) -> None:
        if self.entries < 1 or self.window_s <= 0:
            raise ValueError("a keypad limit needs at least one entry and a positive window")


KEYPAD_LIMITS = (Limit(5, 600.0), Limit(20, 86_400.0))


def guesses_per_day(limits: Sequence[Limit]) -> int | None:
    """The most wrong entries ``limits`` let through in any 24 hours (``None``: no limit).

    Each window passes at most its limit per window length, and a day holds
    ``ceil(86400 / window_s)`` starts of a window; the tightest limit wins.
    """
    day = 86_400.0
    caps = [lim.entries * -(-day // lim.window_s) for lim in limits]
    return int(min(caps)) if caps else None


class WrongEntries:
    """The times of recent wrong entries, and the lockout they call for."""

    def __init__(self, limits: Sequence[Limit] = KEYPAD_LIMITS) -> None:
        self.limits = tuple(limits)
        self._longest = max((lim.window_s for lim in self.limits), default=HOUR_S)
        self._times: deque[float] = deque()

    def add(self, now: float) -> None:
        """Count a wrong entry made at ``now``; forget those no window looks back to."""
        self._times.append(now)
        horizon = now - max(self._longest, HOUR_S)
        while self._times[0] <= horizon:
            self._times.popleft()

    def in_last(self, now: float, window_s: float) -> int:
        """Wrong entries in the ``window_s`` seconds up to ``now``."""
        return sum(1 for t in self._times if now - t < window_s)

    def locked_until(self, now: float) -> float | None:
        """When the keypad may take a code again, if a window is full now; else ``None``."""
        until: float | None = None
        for lim in self.limits:
            recent = [t for t in self._times if now - t < lim.window_s]
            if len(recent) >= lim.entries:
                frees = recent[-lim.entries] + lim.window_s
                until = frees if until is None else max(until, frees)
        return until
