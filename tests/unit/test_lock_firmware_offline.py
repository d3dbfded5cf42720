"""Offline PINs at the door: the lock checks 12-digit codes with its own secret and clock,
refuses revoked ones, and counts wrong ones towards lockout. Pure: a ManualClock."""

from __future__ import annotations

from firmware_sim.lock import LockFirmware
from firmware_sim.lock.revocations import DEFAULT_CAPACITY
from protocol.lock_auth import LockSecrets
from protocol.lock_wire import FrameType, LockFrame, NackCode, encode_revocations
from protocol.messages import LockEventKind as K
from protocol.offline_pin import (
    CLOCK_GRACE_S,
    HOUR_S,
    OfflinePin,
    OfflinePinId,
    issue_offline_pin,
)
from tests.unit.test_lock_firmware_support import (
    SECRETS,
    T0,
    events,
    kinds,
    make_lock,
    nack_of,
    ready_lock,
    request,
    send,
    set_time,
    type_keys,
)

START = T0 - T0 % HOUR_S  # the hour the lock's clock is in
OTHER_LOCK = LockSecrets.generate()


def offline_pin(
    start: int = START, hours: int = 2, *, nonce: int = 0, keys: LockSecrets = SECRETS
) -> OfflinePin:
    return issue_offline_pin(keys.offline_secret, start, start + hours * HOUR_S, nonce=nonce)


def revoke(fw: LockFirmware, *ids: OfflinePinId) -> LockFrame:
    """Send the whole revocation list as the agent does at a sync; the lock's answer."""
    return request(fw, FrameType.REVOKE_OFFLINE, encode_revocations(list(ids)))


def decisions(fw: LockFirmware) -> list[K]:
    """What the lock decided on each entry, without clock and relock noise."""
    return [k for k in kinds(fw) if k not in (K.CLOCK_SET, K.RELOCKED)]


# ------------------------------------------------------------------ opening


def test_offline_pin_opens_a_paired_lock_inside_its_window() -> None:
    fw, _ = ready_lock()
    pin = offline_pin()
    type_keys(fw, pin.code + "#")
    view = fw.view()
    assert not view.locked
    assert view.display == "OPEN"
    (event,) = events(fw)
    assert (event.kind, event.slot, event.grant_id) == (K.UNLOCKED, None, None)
    assert event.value == pin.id.short_id  # the cloud maps it back to its grant
    assert event.ts == T0


def test_keypad_masks_all_twelve_digits() -> None:
    fw, _ = ready_lock()
    type_keys(fw, offline_pin().code)
    assert fw.view().display == "*" * 12


def test_window_edges_by_the_locks_own_clock() -> None:
    fw, clock = make_lock()
    set_time(fw)
    pin = offline_pin(START + HOUR_S, 1)
    clock.set(START + HOUR_S - CLOCK_GRACE_S - 1)
    type_keys(fw, pin.code + "#")
    clock.advance(1)
    type_keys(fw, pin.code + "#")
    clock.set(START + 2 * HOUR_S + CLOCK_GRACE_S - 1)
    type_keys(fw, pin.code + "#")
    clock.advance(1)
    type_keys(fw, pin.code + "#")
    assert decisions(fw) == [
        K.DENIED_OUTSIDE_WINDOW,
        K.UNLOCKED,
        K.UNLOCKED,
        K.DENIED_OUTSIDE_WINDOW,
    ]


def test_a_slow_lock_clock_still_opens_at_the_start() -> None:
    fw, _ = make_lock()
    # the citizen arrives on the hour, by a lock clock that fell four minutes behind
    set_time(fw, START + HOUR_S - 240)
    type_keys(fw, offline_pin(START + HOUR_S, 1).code + "#")
    assert decisions(fw) == [K.UNLOCKED]


def test_outside_its_window_it_is_denied_with_its_id_and_not_counted() -> None:
    fw, _ = ready_lock()
    pin = offline_pin(START + 3 * HOUR_S, 1)
    type_keys(fw, (pin.code + "#") * 8)
    got = events(fw)
    assert [e.kind for e in got] == [K.DENIED_OUTSIDE_WINDOW] * 8
    assert {e.value for e in got} == {pin.id.short_id}
    assert fw.view().locked
    assert not fw.view().locked_out


def test_a_code_for_another_lock_is_a_wrong_pin() -> None:
    fw, _ = ready_lock()
    type_keys(fw, offline_pin(keys=OTHER_LOCK).code + "#")
    (event,) = events(fw)
    assert (event.kind, event.value) == (K.DENIED_WRONG_PIN, 1)  # the hour's first
    assert fw.view().locked


def test_wrong_offline_codes_count_towards_lockout() -> None:
    fw, _ = ready_lock()
    good = offline_pin()
    wrong = f"{(int(good.code) + 1) % 10**12:012d}"
    type_keys(fw, (wrong + "#") * 5)
    assert kinds(fw) == [K.DENIED_WRONG_PIN] * 5 + [K.LOCKOUT_STARTED]
    type_keys(fw, good.code + "#")
    assert kinds(fw)[-1] == K.DENIED_LOCKED_OUT
    assert fw.view().locked


def test_a_good_offline_code_does_not_reset_the_wrong_count() -> None:
    fw, _ = ready_lock()
    type_keys(fw, "1111#" * 4 + offline_pin().code + "#" + "1111#")
    assert kinds(fw)[-1] == K.LOCKOUT_STARTED


def test_slot_pins_keep_working_beside_offline_codes() -> None:
    fw, _ = ready_lock("482913")
    type_keys(fw, offline_pin().code + "#482913#")
    assert [(e.kind, e.slot) for e in events(fw)] == [(K.UNLOCKED, None), (K.UNLOCKED, 0)]


# ------------------------------------------------------------------ unpaired, no clock


def test_an_unpaired_lock_refuses_offline_codes() -> None:
    fw, _ = make_lock(paired=False)
    fw.set_time(T0)
    fw.events.ack(fw.events.head)
    type_keys(fw, offline_pin().code + "#")
    assert fw.view().locked
    (event,) = fw.events.oldest(10)
    assert event.kind is K.DENIED_WRONG_PIN


def test_a_lock_without_time_refuses_offline_codes_without_counting() -> None:
    fw, _ = make_lock()
    type_keys(fw, (offline_pin().code + "#") * 6)
    got = events(fw)
    assert [e.kind for e in got] == [K.DENIED_OUTSIDE_WINDOW] * 6
    assert [e.ts for e in got] == [0] * 6
    assert fw.view().locked
    assert not fw.view().locked_out


# ------------------------------------------------------------------ revocation


def test_a_revoked_code_is_refused_and_its_neighbour_still_opens() -> None:
    fw, _ = ready_lock()
    cancelled, kept = offline_pin(nonce=0), offline_pin(nonce=1)
    assert revoke(fw, cancelled.id).type is FrameType.ACK
    type_keys(fw, (cancelled.code + "#") * 6)
    assert fw.view().locked
    assert not fw.view().locked_out  # a cancelled code is not a guess
    type_keys(fw, kept.code + "#")
    got = events(fw)
    assert [e.kind for e in got] == [K.DENIED_REVOKED] * 6 + [K.UNLOCKED]
    assert got[0].value == cancelled.id.short_id
    assert got[-1].value == kept.id.short_id


def test_each_list_replaces_the_last() -> None:
    fw, _ = ready_lock()
    a, b = offline_pin(nonce=0), offline_pin(nonce=1)
    revoke(fw, a.id, b.id)
    revoke(fw, a.id, b.id)  # resending is harmless
    assert len(fw.revocations) == 2
    revoke(fw, b.id)
    type_keys(fw, a.code + "#" + b.code + "#")
    assert decisions(fw) == [K.UNLOCKED, K.DENIED_REVOKED]


def test_expired_revocations_are_dropped() -> None:
    fw, clock = ready_lock()
    ending = offline_pin(START, 1)
    later = offline_pin(START + 5 * HOUR_S, 1)
    gone = OfflinePinId(ending.id.start_hour - 10, 1, 0)  # expired before it arrives
    revoke(fw, ending.id, later.id, gone)
    assert len(fw.revocations) == 2
    clock.set(ending.id.expires_at - 1)
    fw.tick()
    assert ending.id in fw.revocations
    clock.advance(1)
    fw.tick()
    assert ending.id not in fw.revocations
    assert later.id in fw.revocations


def test_a_list_that_does_not_fit_suspends_offline_codes_until_one_fits() -> None:
    fw, _ = ready_lock("482913", revocation_capacity=2)
    ids = [offline_pin(START + h * HOUR_S, 1).id for h in range(3)]
    good = offline_pin(nonce=7)
    code, message = nack_of(revoke(fw, *ids))
    assert code == NackCode.REVOCATIONS_FULL
    assert "more than 2" in message
    type_keys(fw, good.code + "#482913#")
    assert decisions(fw) == [K.DENIED_REVOKED, K.UNLOCKED]  # slot PINs unaffected
    assert revoke(fw, *ids[:2]).type is FrameType.ACK
    type_keys(fw, good.code + "#")
    assert decisions(fw)[-1] == K.UNLOCKED


def test_default_capacity_takes_a_full_list() -> None:
    fw, _ = ready_lock()
    ids = [
        OfflinePinId(START // HOUR_S + i // 8, 1 + i % 3, i % 8) for i in range(DEFAULT_CAPACITY)
    ]
    assert revoke(fw, *ids).type is FrameType.ACK
    assert len(fw.revocations) == DEFAULT_CAPACITY


def test_revocations_need_an_authenticated_frame() -> None:
    fw, _ = ready_lock()
    pin = offline_pin()
    frame = LockFrame(FrameType.REVOKE_OFFLINE, 3, encode_revocations([pin.id]))
    assert nack_of(send(fw, frame))[0] == NackCode.AUTH_FAILED
    type_keys(fw, pin.code + "#")
    assert decisions(fw) == [K.FRAMES_REFUSED, K.UNLOCKED]


def test_a_malformed_list_is_a_bad_request_and_changes_nothing() -> None:
    fw, _ = ready_lock()
    pin = offline_pin()
    revoke(fw, pin.id)
    code, _ = nack_of(request(fw, FrameType.REVOKE_OFFLINE, b"\x02" + bytes(6)))
    assert code == NackCode.BAD_REQUEST
    assert pin.id in fw.revocations
