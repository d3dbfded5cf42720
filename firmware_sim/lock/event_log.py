"""The lock's own event log: numbered at birth, kept until the gateway acknowledges them.

Like the counter it numbers events with, the log lives in the lock's RAM: a power-up starts
both again, under a new random boot id (:mod:`protocol.lock_wire`), so the events of this
run are never mistaken for those of an earlier one.
"""

from __future__ import annotations

import secrets
from collections import deque
from itertools import islice

from protocol.lock_wire import WireEvent
from protocol.messages import LockEventKind

U16_MAX = 0xFFFF
U32_MAX = 0xFFFFFFFF


class EventLog:
    """A bounded buffer of :class:`WireEvent`; when full the oldest event is dropped.

    Sequence numbers start at 1 and are never reused while the lock runs (u32; wrapping
    would take a century of door openings, so it simply restarts at 1). Every event carries
    ``boot``, drawn at random when the log is made (a power-up) unless one is given.
    """

    def __init__(self, capacity: int, boot: int | None = None) -> None:
        self.capacity = capacity
        self.boot = new_boot() if boot is None else boot
        self.dropped = 0
        self._events: deque[WireEvent] = deque()
        self._last_seq = 0

    def append(
        self,
        kind: LockEventKind,
        ts: int,
        *,
        slot: int | None = None,
        grant_id: str | None = None,
        value: int = 0,
    ) -> WireEvent:
        """Number a new event and keep it; drop (and count) the oldest when full."""
        self._last_seq = self._last_seq % U32_MAX + 1
        event = WireEvent(
            seq=self._last_seq,
            ts=min(max(ts, 0), U32_MAX),
            kind=kind,
            slot=slot,
            grant_id=grant_id,
            value=min(max(value, 0), U16_MAX),
            boot=self.boot,
        )
        if len(self._events) >= self.capacity:
            self._events.popleft()
            self.dropped += 1
        self._events.append(event)
        return event

    def oldest(self, n: int) -> list[WireEvent]:
        """Up to ``n`` unacknowledged events, oldest first."""
        return list(islice(self._events, max(n, 0)))

    def ack(self, upto: int) -> int:
        """Forget every event with ``seq <= upto``; return how many were forgotten."""
        removed = 0
        while self._events and self._events[0].seq <= upto:
            self._events.popleft()
            removed += 1
        return removed

    @property
    def head(self) -> int:
        """The seq of the newest event ever made (0 before the first)."""
        return self._last_seq

    @property
    def pending(self) -> int:
        return len(self._events)


def new_boot() -> int:
    """A random non-zero u32 (0 means "no boot id" on the wire)."""
    return secrets.randbelow(U32_MAX) + 1
