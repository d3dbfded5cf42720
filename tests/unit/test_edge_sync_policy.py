"""Slot planning: soonest windows first, ended ones dropped, never more than the lock holds."""

from __future__ import annotations

import uuid

from edge.sync_policy import plan_slots
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
