"""Slot planning: soonest windows first, ended ones dropped, never more than the lock holds;
only changed slots are written; a change reaches the lock at once only when it must."""

from __future__ import annotations

import uuid

from edge.sync_policy import (
    HeldSlot,
    LoadPlan,
    LockState,
    immediate_load_reason,
    needs_immediate_load,
    plan_load,
    plan_slots,
)
from protocol.messages import AccessGrantEntry

NOW = 1_800_000_000
TAG = "ab" * 16


def grant(start: int, end: int, grant_id: str | None = None) -> AccessGrantEntry:
    return AccessGrantEntry(
        grant_id=grant_id or str(uuid.uuid4()), tag=TAG, start=NOW + start, end=NOW + end
    )


def test_soonest_windows_fill_the_slots() -> None:
    later, soon, soonest = grant(7200, 9000), grant(3600, 5400), grant(60, 3000)
    plan = plan_slots([later, soon, soonest], now=NOW, slot_count=2)
    assert [e.grant_id for e in plan.entries] == [soonest.grant_id, soon.grant_id]
    assert [e.slot for e in plan.entries] == [0, 1]
    assert plan.deferred == [later.grant_id]


def test_ended_windows_are_skipped_and_running_ones_kept() -> None:
    ended, running = grant(-7200, -1), grant(-600, 600)
    plan = plan_slots([ended, running], now=NOW, slot_count=8)
    assert plan.grant_ids == [running.grant_id]
    assert plan.ended == [ended.grant_id]


def test_a_window_ending_exactly_now_has_ended() -> None:
    assert plan_slots([grant(-10, 0)], now=NOW, slot_count=4).entries == []


def test_slot_entries_carry_window_and_tag() -> None:
    g = grant(100, 200)
    (entry,) = plan_slots([g], now=NOW, slot_count=4).entries
    assert (entry.start, entry.end, entry.tag) == (g.start, g.end, bytes.fromhex(TAG))


def test_same_start_is_ordered_deterministically() -> None:
    a = grant(100, 300, "00000000-0000-4000-8000-000000000002")
    b = grant(100, 200, "00000000-0000-4000-8000-000000000003")
    c = grant(100, 200, "00000000-0000-4000-8000-000000000001")
    plan = plan_slots([a, b, c], now=NOW, slot_count=3)
    assert plan.grant_ids == [c.grant_id, b.grant_id, a.grant_id]


def test_non_uuid_grant_ids_cannot_go_on_the_wire() -> None:
    plan = plan_slots([grant(0, 100, "booking-17")], now=NOW, slot_count=4)
    assert plan.entries == []
    assert plan.invalid == ["booking-17"]


def test_zero_slots_defers_everything() -> None:
    plan = plan_slots([grant(0, 100)], now=NOW, slot_count=0)
    assert plan.entries == []
    assert len(plan.deferred) == 1


# ------------------------------------------------------------ diff-based loading


def held_from(plan: LoadPlan, at: int = NOW) -> list[HeldSlot]:
    """What the lock holds once ``plan`` was carried out and recorded at ``at``."""
    return [
        HeldSlot(h.slot, h.grant_id, h.start, h.end, h.tag, h.loaded_at or at) for h in plan.target
    ]


def test_an_empty_lock_gets_every_chosen_window() -> None:
    a, b = grant(60, 600), grant(7200, 9000)
    plan = plan_load([b, a], [], now=NOW, slot_count=4)
    assert [e.grant_id for e in plan.sets] == [a.grant_id, b.grant_id]
    assert plan.clears == []
    assert plan.grant_ids == [a.grant_id, b.grant_id]


def test_a_lock_that_holds_the_plan_is_left_alone() -> None:
    a, b = grant(60, 600), grant(7200, 9000)
    first = plan_load([a, b], [], now=NOW, slot_count=4)
    again = plan_load([a, b], held_from(first), now=NOW + 100, slot_count=4)
    assert again.is_noop
    assert [h.loaded_at for h in again.target] == [NOW, NOW]


def test_a_new_grant_is_written_alone_and_the_others_keep_their_slots() -> None:
    a, b = grant(3600, 7200), grant(7200, 9000)
    first = plan_load([a, b], [], now=NOW, slot_count=4)
    soon = grant(60, 600)
    plan = plan_load([a, b, soon], held_from(first), now=NOW + 10, slot_count=4)
    assert [(e.slot, e.grant_id) for e in plan.sets] == [(2, soon.grant_id)]
    assert plan.clears == []
    # soonest first in the report, whatever slot each one sits in
    assert plan.grant_ids == [soon.grant_id, a.grant_id, b.grant_id]
    loaded = {h.grant_id: h.loaded_at for h in plan.target}
    assert loaded == {a.grant_id: NOW, b.grant_id: NOW, soon.grant_id: None}


def test_a_cancelled_grant_is_cleared_and_reported_removed() -> None:
    a, b = grant(60, 600), grant(7200, 9000)
    first = plan_load([a, b], [], now=NOW, slot_count=4)
    plan = plan_load([b], held_from(first), now=NOW, slot_count=4)
    assert plan.sets == []
    assert plan.clears == [0]
    assert [h.grant_id for h in plan.removed] == [a.grant_id]


def test_a_changed_window_or_pin_is_rewritten_in_place() -> None:
    a = grant(60, 600)
    first = plan_load([a], [], now=NOW, slot_count=4)
    longer = a.model_copy(update={"end": a.end + 3600})
    new_pin = a.model_copy(update={"tag": "cd" * 16})
    for changed in (longer, new_pin):
        plan = plan_load([changed], held_from(first), now=NOW, slot_count=4)
        assert [(e.slot, e.end, e.tag.hex()) for e in plan.sets] == [(0, changed.end, changed.tag)]
        assert plan.clears == []  # SET_SLOT overwrites
        assert [h.grant_id for h in plan.removed] == [a.grant_id]


def test_ended_windows_leave_the_lock_and_free_slots_for_deferred_ones() -> None:
    ended_soon, later, latest = grant(0, 600), grant(3600, 7200), grant(9000, 9900)
    first = plan_load([ended_soon, later, latest], [], now=NOW, slot_count=2)
    assert first.deferred == [latest.grant_id]
    plan = plan_load([ended_soon, later, latest], held_from(first), now=NOW + 700, slot_count=2)
    assert plan.ended == [ended_soon.grant_id]
    assert [(e.slot, e.grant_id) for e in plan.sets] == [(0, latest.grant_id)]
    assert plan.deferred == []
    assert plan.grant_ids == [later.grant_id, latest.grant_id]


def test_a_slot_the_agent_cannot_vouch_for_is_rewritten() -> None:
    a = grant(60, 600)
    # the lock reports grant a in slot 0, but the agent has no record of the tag in it
    unknown = HeldSlot(0, a.grant_id, a.start, a.end, None, None)
    plan = plan_load([a], [unknown], now=NOW, slot_count=4)
    assert [e.grant_id for e in plan.sets] == [a.grant_id]


def test_foreign_slots_are_cleared() -> None:
    stray = HeldSlot(3, None, NOW, NOW + 60, None, None)
    plan = plan_load([], [stray], now=NOW, slot_count=4)
    assert plan.clears == [3]


# ------------------------------------------------------------ when to load at once

HOUR = 3600
AT_18 = NOW + 18 * HOUR
NEXT_SYNC_20 = NOW + 20 * HOUR
ASLEEP = LockState(reachable=True)


def change(*grants: AccessGrantEntry, held: list[HeldSlot] | None = None) -> LoadPlan:
    return plan_load(list(grants), held or [], now=AT_18, slot_count=32)


def window(start_h: float, end_h: float) -> AccessGrantEntry:
    return grant(int(start_h * HOUR), int(end_h * HOUR))


def test_a_window_before_the_next_sync_is_loaded_at_once() -> None:
    plan = change(window(19, 21))  # booked at 18:00 for 19:00, next sync at 20:00
    reason = immediate_load_reason(plan, ASLEEP, NEXT_SYNC_20, AT_18)
    assert reason is not None
    assert "starts before the next scheduled sync" in reason
    assert needs_immediate_load(plan, ASLEEP, NEXT_SYNC_20, AT_18)


def test_a_window_after_the_next_sync_waits_for_it() -> None:
    plan = change(window(21, 22))
    assert not needs_immediate_load(plan, ASLEEP, NEXT_SYNC_20, AT_18)


def test_a_window_starting_exactly_at_the_next_sync_waits() -> None:
    # the sync at 20:00 loads it before the first second of the window
    assert not needs_immediate_load(change(window(20, 22)), ASLEEP, NEXT_SYNC_20, AT_18)


def test_a_cancelled_window_that_is_open_or_opens_before_the_sync_is_removed_at_once() -> None:
    for start_h, end_h in ((17, 19), (19, 21)):  # current; starts before the next sync
        cancelled = window(start_h, end_h)
        held = held_from(plan_load([cancelled], [], now=AT_18, slot_count=32))
        plan = change(held=held)  # the snapshot without it
        assert needs_immediate_load(plan, ASLEEP, NEXT_SYNC_20, AT_18), (start_h, end_h)


def test_a_cancelled_window_after_the_next_sync_waits() -> None:
    cancelled = window(22, 23)
    held = held_from(plan_load([cancelled], [], now=AT_18, slot_count=32))
    assert not needs_immediate_load(change(held=held), ASLEEP, NEXT_SYNC_20, AT_18)


def test_an_ended_window_on_the_lock_is_no_reason_to_wake_it() -> None:
    ended = window(10, 12)
    held = held_from(plan_load([ended], [], now=NOW, slot_count=32))
    plan = change(ended, held=held)
    assert plan.clears == [0]
    assert not needs_immediate_load(plan, ASLEEP, NEXT_SYNC_20, AT_18)


def test_nothing_changed_means_no_load() -> None:
    g = window(19, 21)
    held = held_from(plan_load([g], [], now=AT_18, slot_count=32))
    assert not needs_immediate_load(change(g, held=held), ASLEEP, NEXT_SYNC_20, AT_18)


def test_an_awake_lock_takes_any_change_at_once() -> None:
    awake = LockState(reachable=True, awake_until=AT_18 + 5)
    assert needs_immediate_load(change(window(30, 31)), awake, NEXT_SYNC_20, AT_18)
    dozed = LockState(reachable=True, awake_until=AT_18)
    assert not needs_immediate_load(change(window(30, 31)), dozed, NEXT_SYNC_20, AT_18)


def test_an_unreachable_lock_is_left_for_its_reconnection() -> None:
    away = LockState(reachable=False)
    assert not needs_immediate_load(change(window(19, 21)), away, NEXT_SYNC_20, AT_18)


def test_with_no_known_next_sync_any_change_is_loaded() -> None:
    assert needs_immediate_load(change(window(30, 31)), ASLEEP, None, AT_18)
