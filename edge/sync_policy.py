"""When to load a lock and what to write into its slots: pure functions, no I/O, no clock.

A lock holds ``slot_count`` PIN windows. The agent loads the soonest ones (ended windows
are dropped) and tops the lock up at every sync, so a window that does not fit now is
loaded once an earlier one has ended.

Loading is a diff: :func:`plan_load` compares the wanted windows with what the lock holds
and writes only the slots that change (a slot that already holds the same grant, window
and PIN tag is left alone, and keeps the time it was loaded).

A battery lock is reachable only at its scheduled sync, when its keypad wakes it, or when
the agent wakes it on purpose, which costs battery. :func:`immediate_load_reason` says when
that cost is worth it: a window that starts (or a cancelled one that is still current)
before the lock's next scheduled sync would otherwise be wrong at the door.
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


@dataclass(frozen=True, slots=True)
class HeldSlot:
    """One slot as the agent believes the lock holds it.

    ``tag`` is ``None`` when the agent cannot vouch for the PIN tag in it (the lock never
    reports tags back, and this slot does not match what the agent last wrote): such a
    slot is rewritten rather than trusted. ``loaded_at`` is when this exact content was
    written (epoch seconds), ``None`` when unknown.
    """

    slot: int
    grant_id: str | None
    start: int
    end: int
    tag: bytes | None = None
    loaded_at: int | None = None


@dataclass(frozen=True, slots=True)
class LoadPlan:
    """What to write to a lock: ``clears`` and ``sets``, and what it holds afterwards."""

    target: list[HeldSlot] = field(default_factory=list)  # sorted by window start
    sets: list[SlotEntry] = field(default_factory=list)
    clears: list[int] = field(default_factory=list)
    removed: list[HeldSlot] = field(default_factory=list)  # held content that goes away
    ended: list[str] = field(default_factory=list)
    deferred: list[str] = field(default_factory=list)
    invalid: list[str] = field(default_factory=list)

    @property
    def is_noop(self) -> bool:
        """True when the lock already holds exactly what it should."""
        return not self.sets and not self.clears

    @property
    def grant_ids(self) -> list[str]:
        """The grants on the lock once the plan is carried out, soonest first."""
        return [h.grant_id for h in self.target if h.grant_id is not None]


@dataclass(frozen=True, slots=True)
class LockState:
    """What the policy needs to know about a lock right now."""

    reachable: bool  # the agent has a working session with it
    awake_until: float | None = None  # the lock's radio stays on after a sync or a wake


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def _choose(
    grants: list[AccessGrantEntry], now: float, slot_count: int
) -> tuple[list[AccessGrantEntry], list[str], list[str], list[str]]:
    """The grants that get a slot (soonest first), and the ended, deferred, invalid ids."""
    ended = [g.grant_id for g in grants if g.end <= now]
    invalid = [g.grant_id for g in grants if g.end > now and not _is_uuid(g.grant_id)]
    live = sorted(
        (g for g in grants if g.end > now and _is_uuid(g.grant_id)),
        key=lambda g: (g.start, g.end, g.grant_id),
    )
    count = max(slot_count, 0)
    return live[:count], ended, [g.grant_id for g in live[count:]], invalid


def plan_slots(grants: list[AccessGrantEntry], *, now: float, slot_count: int) -> SlotPlan:
    """Assign the soonest not-yet-ended windows to slots ``0..slot_count-1``.

    Order is by start, then end, then grant id, so the same inputs give the same slots.
    Grant ids that are not UUIDs cannot travel on the lock wire and are reported invalid.
    """
    chosen, ended, deferred, invalid = _choose(grants, now, slot_count)
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
    return SlotPlan(entries, ended, deferred, invalid)


def plan_load(
    grants: list[AccessGrantEntry], held: list[HeldSlot], *, now: float, slot_count: int
) -> LoadPlan:
    """The fewest SET_SLOT / CLEAR_SLOT that leave the soonest windows on the lock.

    A chosen grant already held with the same window and tag stays in its slot; the others
    go into free slots, lowest first (a SET_SLOT overwrites, so a stale slot that is reused
    needs no CLEAR_SLOT). Held slots that end up unused are cleared, ended ones included,
    so a slot never keeps a window the snapshot no longer has.
    """
    chosen, ended, deferred, invalid = _choose(grants, now, slot_count)
    trusted = {
        (h.grant_id, h.start, h.end, h.tag): h
        for h in held
        if h.tag is not None and h.grant_id is not None and h.slot < slot_count
    }
    target: list[HeldSlot] = []
    waiting: list[AccessGrantEntry] = []
    for g in chosen:
        grant_id, tag = str(uuid.UUID(g.grant_id)), bytes.fromhex(g.tag)
        kept = trusted.pop((grant_id, g.start, g.end, tag), None)
        if kept is None:
            waiting.append(g)
        else:
            target.append(kept)
    used = {h.slot for h in target}
    free = (s for s in range(slot_count) if s not in used)
    sets: list[SlotEntry] = []
    for g, slot in zip(waiting, free, strict=False):  # chosen never exceeds slot_count
        entry = SlotEntry(slot, g.start, g.end, str(uuid.UUID(g.grant_id)), bytes.fromhex(g.tag))
        sets.append(entry)
        target.append(HeldSlot(slot, entry.grant_id, g.start, g.end, entry.tag, None))
    written = {e.slot for e in sets}
    kept_slots = {h.slot for h in target} - written
    removed = [h for h in held if h.slot not in kept_slots]
    clears = sorted({h.slot for h in removed if h.slot < slot_count} - written)
    target.sort(key=lambda h: (h.start, h.end, h.grant_id or ""))
    return LoadPlan(target, sets, clears, removed, ended, deferred, invalid)


def immediate_load_reason(
    plan: LoadPlan, lock: LockState, next_sync_at: float | None, now: float
) -> str | None:
    """Why the lock must be loaded now rather than at its next scheduled sync, or ``None``.

    ``plan`` is the change against what the lock holds. Loading now is worth waking a
    battery lock when, before ``next_sync_at``, a new or changed window would start, or a
    removed (cancelled, changed) one would still be open. A lock that is awake anyway
    costs nothing extra to load. An unreachable lock is loaded in full when it comes back.
    """
    if plan.is_noop or not lock.reachable:
        return None
    if next_sync_at is None:
        return "no scheduled sync is known"
    if lock.awake_until is not None and now < lock.awake_until:
        return "the lock is awake"
    for entry in plan.sets:
        if entry.start < next_sync_at:
            return f"grant {entry.grant_id} starts before the next scheduled sync"
    for held in plan.removed:
        if held.end > now and held.start < next_sync_at:
            return f"grant {held.grant_id} was removed while its window is open or opening"
    return None


def needs_immediate_load(
    plan: LoadPlan, lock: LockState, next_sync_at: float | None, now: float
) -> bool:
    """True when :func:`immediate_load_reason` gives a reason to load the lock now."""
    return immediate_load_reason(plan, lock, next_sync_at, now) is not None
