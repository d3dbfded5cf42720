"""The keypad lock firmware as a person at the door meets it: PINs, windows, lockout,
auto-lock, the door sensor and the display. Pure: a ManualClock, no event loop."""

from __future__ import annotations

import pytest

from firmware_sim.errors import UnknownKeyError
from firmware_sim.lock.firmware import ENTRY_TIMEOUT_S, FLASH_S
from protocol.lock_wire import FrameType
from protocol.messages import LockEventKind as K
from tests.unit.test_lock_firmware_support import (
    GRANT,
    T0,
    events,
    kinds,
    make_lock,
    ready_lock,
    request,
    set_slot,
    set_time,
    type_keys,
)

# ------------------------------------------------------------------ PIN windows


def test_right_pin_inside_window_unlocks_with_slot_and_grant() -> None:
    fw, _ = ready_lock("482913")
    type_keys(fw, "482913#")
    view = fw.view()
    assert not view.locked
    assert view.display == "OPEN"
    (event,) = events(fw)
    assert (event.kind, event.slot, event.grant_id, event.ts) == (K.UNLOCKED, 0, GRANT, T0)


def test_window_start_is_inclusive_and_end_exclusive() -> None:
    fw, clock = make_lock()
    set_time(fw)
    set_slot(fw, "482913", start=T0 + 100, end=T0 + 200)
    clock.advance(99)
    type_keys(fw, "482913#")
    clock.advance(1)
    type_keys(fw, "482913#")
    clock.advance(100)
    type_keys(fw, "482913#")
    decisions = [k for k in kinds(fw) if k not in (K.CLOCK_SET, K.RELOCKED)]
    assert decisions == [K.DENIED_OUTSIDE_WINDOW, K.UNLOCKED, K.DENIED_OUTSIDE_WINDOW]


def test_pin_outside_window_is_denied_with_its_grant_and_stays_locked() -> None:
    fw, _ = make_lock()
    set_time(fw)
    set_slot(fw, "482913", slot=3, start=T0 + 3600, end=T0 + 7200)
    type_keys(fw, "482913#")
    assert fw.view().locked
    assert fw.view().display == "DENIED"
    last = events(fw)[-1]
    assert (last.kind, last.slot, last.grant_id) == (K.DENIED_OUTSIDE_WINDOW, 3, GRANT)


def test_wrong_pin_is_denied_without_slot() -> None:
    fw, _ = ready_lock("482913")
    type_keys(fw, "482914#")
    (event,) = events(fw)
    assert (event.kind, event.slot, event.grant_id) == (K.DENIED_WRONG_PIN, None, None)
    assert fw.view().locked


@pytest.mark.parametrize("digits", ["123", "12345678901", "1234567890123", "12345678901234"])
def test_too_short_or_too_long_is_a_wrong_pin(digits: str) -> None:
    fw, _ = ready_lock("1234567890")
    type_keys(fw, digits + "#")
    assert kinds(fw) == [K.DENIED_WRONG_PIN]


def test_star_clears_the_entry() -> None:
    fw, _ = ready_lock("482913")
    type_keys(fw, "99*482913#")
    assert kinds(fw) == [K.UNLOCKED]


def test_lone_hash_is_not_an_attempt() -> None:
    fw, _ = ready_lock()
    type_keys(fw, "###")
    assert kinds(fw) == []
    assert fw.view().display == "ENTER PIN"


def test_abandoned_entry_is_forgotten() -> None:
    fw, clock = ready_lock("482913")
    type_keys(fw, "11")
    clock.advance(ENTRY_TIMEOUT_S)
    type_keys(fw, "482913#")
    assert kinds(fw) == [K.UNLOCKED]


def test_display_masks_digits() -> None:
    fw, _ = ready_lock()
    type_keys(fw, "4829")
    assert fw.view().display == "****"


def test_unknown_key_is_refused() -> None:
    fw, _ = ready_lock()
    with pytest.raises(UnknownKeyError):
        fw.press("A")
    with pytest.raises(UnknownKeyError):
        fw.press("12")


def test_cleared_slot_no_longer_opens() -> None:
    fw, _ = ready_lock("482913")
    set_slot(fw, "555555", slot=1)
    request(fw, FrameType.CLEAR_SLOT, b"\x00")
    type_keys(fw, "482913#555555#")
    assert kinds(fw)[-2:] == [K.DENIED_WRONG_PIN, K.UNLOCKED]


# ------------------------------------------------------------------ unset clock


def test_unset_clock_denies_every_pin_and_says_no_time() -> None:
    fw, clock = make_lock()
    set_slot(fw, "482913")
    assert fw.view().display == "NO TIME"
    type_keys(fw, "482913#1111#")
    assert fw.view().locked
    got = events(fw)
    assert [e.kind for e in got] == [K.DENIED_OUTSIDE_WINDOW, K.DENIED_WRONG_PIN]
    assert [e.ts for e in got] == [0, 0]
    clock.advance(FLASH_S)
    assert fw.view().display == "NO TIME"


def test_clock_set_event_carries_the_correction() -> None:
    fw, _ = make_lock()
    set_time(fw, T0)
    set_time(fw, T0 + 90)
    set_time(fw, T0)
    got = events(fw)
    assert [e.kind for e in got] == [K.CLOCK_SET] * 3
    assert [e.value for e in got] == [0, 90, 90]
    assert [e.ts for e in got] == [T0, T0 + 90, T0]


def test_lock_time_runs_with_the_clock() -> None:
    fw, clock = make_lock()
    set_time(fw, T0 - 500)
    clock.advance(10)
    assert fw.view().lock_time == T0 - 490


# ------------------------------------------------------------------ lockout


def test_five_wrong_pins_in_ten_minutes_lock_the_keypad_out() -> None:
    fw, clock = ready_lock("482913")
    type_keys(fw, "1111#" * 5)
    assert kinds(fw) == [K.DENIED_WRONG_PIN] * 5 + [K.LOCKOUT_STARTED]
    assert fw.view().display == "LOCKED OUT 10:00"
    clock.advance(1)
    assert fw.view().display == "LOCKED OUT 9:59"
    assert fw.view().lockout_remaining_s == 599
    type_keys(fw, "482913#")
    assert kinds(fw)[-1] == K.DENIED_LOCKED_OUT
    assert fw.view().locked
    assert fw.info().locked_out


def test_lockout_expires_and_the_right_pin_works_again() -> None:
    fw, clock = ready_lock("482913")
    type_keys(fw, "1111#" * 5)
    clock.advance(600)
    fw.tick()
    assert not fw.view().locked_out
    assert fw.view().display == "ENTER PIN"
    type_keys(fw, "482913#")
    assert kinds(fw)[-1] == K.UNLOCKED


def test_five_wrong_pins_spread_over_more_than_ten_minutes_do_not_lock_out() -> None:
    fw, clock = ready_lock("482913")
    for _ in range(5):
        type_keys(fw, "1111#")
        clock.advance(151)
    assert K.LOCKOUT_STARTED not in kinds(fw)


def test_a_valid_pin_does_not_reset_the_wrong_count() -> None:
    fw, _ = ready_lock("482913")
    type_keys(fw, "1111#" * 4 + "482913#" + "1111#")
    assert kinds(fw)[-1] == K.LOCKOUT_STARTED


def test_a_pin_outside_its_window_counts_as_wrong_and_shows_denied() -> None:
    fw, _ = make_lock()
    set_time(fw)
    set_slot(fw, "482913", slot=3, start=T0 + 3600, end=T0 + 7200)
    type_keys(fw, "482913#")
    assert fw.view().display == "DENIED"
    type_keys(fw, "482913#" * 4)
    decisions = [k for k in kinds(fw) if k is not K.CLOCK_SET]
    assert decisions == [K.DENIED_OUTSIDE_WINDOW] * 5 + [K.LOCKOUT_STARTED]
    assert fw.view().locked_out


def test_twenty_wrong_pins_in_a_day_lock_the_keypad_until_the_first_is_a_day_old() -> None:
    fw, clock = ready_lock("482913")
    first = clock.now()
    for _ in range(4):
        type_keys(fw, "1111#" * 5)
        clock.advance(600)
    assert kinds(fw).count(K.DENIED_WRONG_PIN) == 20
    assert fw.view().locked_out
    assert fw.view().display == "LOCKED OUT 23h20"  # until the first is a day old
    clock.set(first + 86_400 - 1)
    type_keys(fw, "1111#")
    assert kinds(fw)[-1] == K.DENIED_LOCKED_OUT
    clock.set(first + 86_400)
    type_keys(fw, "1111#")  # the first five are a day old: checked again
    assert kinds(fw)[-1] == K.DENIED_WRONG_PIN
    assert not fw.view().locked_out


def test_a_wrong_pin_event_carries_the_wrong_entries_of_the_last_hour() -> None:
    fw, clock = ready_lock("482913")
    for _ in range(3):
        type_keys(fw, "1111#" * 4)
        clock.advance(1500)
    type_keys(fw, "1111#")
    wrong = [e.value for e in events(fw) if e.kind is K.DENIED_WRONG_PIN]
    # four at 0, 1500 and 3000 s, then one at 4500 s, which is past the hour of the first four
    assert wrong == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 9]


# ------------------------------------------------------------------ auto-lock and door


def test_relocks_after_auto_lock_time() -> None:
    fw, clock = ready_lock("482913", auto_lock_s=5)
    type_keys(fw, "482913#")
    clock.advance(4.9)
    fw.tick()
    assert not fw.view().locked
    clock.advance(0.1)
    fw.tick()
    assert fw.view().locked
    assert fw.view().display == "ENTER PIN"
    assert kinds(fw) == [K.UNLOCKED, K.RELOCKED]


def test_open_door_holds_relock_until_closed() -> None:
    fw, clock = ready_lock("482913", auto_lock_s=5)
    type_keys(fw, "482913#")
    assert fw.open_door()
    clock.advance(30)
    fw.tick()
    assert not fw.view().locked
    assert fw.close_door()
    assert fw.view().locked
    assert kinds(fw) == [K.UNLOCKED, K.DOOR_OPENED, K.DOOR_CLOSED, K.RELOCKED]


def test_closing_before_the_timer_relocks_when_it_runs_out() -> None:
    fw, clock = ready_lock("482913", auto_lock_s=5)
    type_keys(fw, "482913#")
    fw.open_door()
    clock.advance(2)
    fw.close_door()
    assert not fw.view().locked
    clock.advance(3)
    fw.tick()
    assert fw.view().locked


def test_locked_door_does_not_open_from_outside_but_always_from_inside() -> None:
    fw, _ = ready_lock()
    assert not fw.open_door()
    assert not fw.view().door_open
    assert fw.open_door(from_inside=True)
    view = fw.view()
    assert view.door_open
    assert view.locked  # egress does not unlock the outside
    assert fw.close_door()
    assert kinds(fw) == [K.DOOR_OPENED, K.DOOR_CLOSED]
    assert not fw.close_door()  # already closed: nothing happens


def test_door_held_open_is_reported_once() -> None:
    fw, clock = ready_lock(door_held_open_s=60)
    fw.open_door(from_inside=True)
    clock.advance(59)
    fw.tick()
    clock.advance(1)
    fw.tick()
    clock.advance(600)
    fw.tick()
    assert kinds(fw) == [K.DOOR_OPENED, K.DOOR_HELD_OPEN]
    assert fw.info().door_open


# ------------------------------------------------------------------ events and wake


def test_events_are_numbered_from_one() -> None:
    fw, _ = make_lock()
    set_time(fw)
    fw.open_door(from_inside=True)
    assert [e.seq for e in events(fw)] == [1, 2]


def test_event_buffer_drops_the_oldest_when_full() -> None:
    fw, _ = make_lock(event_buffer=4)
    type_keys(fw, "1111#2222#3333#")  # 3 events
    fw.open_door(from_inside=True)
    fw.close_door()
    got = events(fw)
    assert [e.seq for e in got] == [2, 3, 4, 5]
    assert fw.view().events_dropped == 1
    assert fw.view().events_pending == 4


def test_keypad_use_and_new_events_produce_one_wake() -> None:
    fw, _ = ready_lock("482913")
    assert fw.take_unsolicited() == []
    fw.press("4")
    (wake,) = fw.take_unsolicited()
    assert wake.seq == 0
    assert fw.take_unsolicited() == []
    type_keys(fw, "82913#")
    (wake,) = fw.take_unsolicited()
    assert int.from_bytes(wake.payload, "big") == fw.events.head
    assert fw.outbox() == []


def test_battery_reading_is_an_event() -> None:
    fw, _ = make_lock()
    fw.set_battery(17)
    assert fw.view().battery_pct == 17
    (event,) = events(fw)
    assert (event.kind, event.value) == (K.BATTERY, 17)


def test_constructor_refuses_more_slots_than_a_frame_can_report() -> None:
    with pytest.raises(ValueError, match="slot_count"):
        make_lock(slot_count=41)
