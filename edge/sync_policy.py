"""Which grants go into a lock's slots: a pure function, no I/O, no clock of its own.

A lock holds ``slot_count`` PIN windows. The agent loads the soonest ones (ended windows
are dropped) and tops the lock up at every sync, so a window that does not fit now is
loaded once an earlier one has ended.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from protocol.lock_wire import SlotEntry
from protocol.messages import AccessGrantEntry


@dataclass(frozen=True, slots=True)
class SlotPlan:
    """The slots to load, and what was left out and why (for logs and telemetry)."""

    entries: list[SlotEntry] = field(default_factory=list)
    ended: list[str] = field(default_factory=list)
    deferred: list[str] = field(default_factory=list)
    invalid: list[str] = field(default_factory=list)

    @property
    def grant_ids(self) -> list[str]:
        return [e.grant_id for e in self.entries if e.grant_id is not None]


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def plan_slots(grants: list[AccessGrantEntry], *, now: float, slot_count: int) -> SlotPlan:
    """Assign the soonest not-yet-ended windows to slots ``0..slot_count-1``.

    Order is by start, then end, then grant id, so the same inputs give the same slots.
    Grant ids that are not UUIDs cannot travel on the lock wire and are reported invalid.
    """
    ended = [g.grant_id for g in grants if g.end <= now]
    invalid = [g.grant_id for g in grants if g.end > now and not _is_uuid(g.grant_id)]
    live = sorted(
        (g for g in grants if g.end > now and _is_uuid(g.grant_id)),
        key=lambda g: (g.start, g.end, g.grant_id),
    )
    chosen, deferred = live[: max(slot_count, 0)], live[max(slot_count, 0) :]
    entries = [
        SlotEntry(
            slot=i,
            start=g.start,
            end=g.end,
            grant_id=str(uuid.UUID(g.grant_id)),
            tag=bytes.fromhex(g.tag),
        )
        for i, g in enumerate(chosen)
    ]
    return SlotPlan(entries, ended, [g.grant_id for g in deferred], invalid)
