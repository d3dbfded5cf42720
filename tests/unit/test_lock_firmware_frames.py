"""The lock firmware as the gateway meets it: every request frame, and bad input from the
wire answered with a NACK rather than an exception."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_sim.lock.firmware import KEYS
from protocol.framing import MAX_PAYLOAD
from protocol.lock_wire import (
    MAX_EVENTS_PER_FRAME,
    FrameType,
    LockFrame,
    LockInfo,
    NackCode,
    SlotEntry,
    decode_slots,
    decode_u32,
    encode_u32,
)
from protocol.messages import LockEventKind as K
from tests.unit.test_lock_firmware_support import (
    GRANT,
    T0,
    events,
    make_lock,
    nack_of,
    ready_lock,
    request,
    set_slot,
    set_time,
    type_keys,
)


def test_get_info_reports_the_lock() -> None:
    fw, _ = make_lock(model="RL-2000", firmware="1.4.2", slot_count=16, battery_pct=80)
    reply = request(fw, FrameType.GET_INFO)
    assert reply.type is FrameType.INFO
    info = LockInfo.decode(reply.payload)
    assert info == LockInfo("RL-2000", "1.4.2", 16, 0, 0, False, 80, False, paired=True)
    set_time(fw)
    assert LockInfo.decode(request(fw, FrameType.GET_INFO).payload).clock == T0
    assert LockInfo.decode(request(fw, FrameType.GET_INFO).payload).event_head == 1


def test_set_time_refuses_an_untrusted_time() -> None:
    fw, _ = make_lock()
    code, message = nack_of(request(fw, FrameType.SET_TIME, encode_u32(12)))
    assert code == NackCode.BAD_REQUEST
    assert "trusted" in message
    assert not fw.view().clock_set


def test_set_slot_then_get_slots_reports_windows_without_tags() -> None:
    fw, _ = make_lock()
    assert set_slot(fw, "482913", slot=5, start=T0, end=T0 + 60).type is FrameType.ACK
    assert set_slot(fw, "111111", slot=2, start=T0, end=T0 + 90, grant_id=None).type is (
        FrameType.ACK
    )
    reply = request(fw, FrameType.GET_SLOTS)
    assert reply.type is FrameType.SLOTS
    assert decode_slots(reply.payload) == [
        SlotEntry(2, T0, T0 + 90, None),
        SlotEntry(5, T0, T0 + 60, GRANT),
    ]
    assert fw.view().slots_used == 2


def test_set_slot_beyond_slot_count_is_no_such_slot() -> None:
    fw, _ = make_lock(slot_count=4)
    code, _ = nack_of(set_slot(fw, "482913", slot=4))
    assert code == NackCode.NO_SUCH_SLOT


def test_set_slot_with_empty_window_is_bad_request() -> None:
    fw, _ = make_lock()
    code, message = nack_of(set_slot(fw, "482913", start=T0, end=T0))
    assert code == NackCode.BAD_REQUEST
    assert "window" in message


def test_clear_slot_one_or_all() -> None:
    fw, _ = make_lock()
    for slot in range(3):
        set_slot(fw, f"48291{slot}", slot=slot)
    assert request(fw, FrameType.CLEAR_SLOT, b"\x01").type is FrameType.ACK
    assert [e.slot for e in decode_slots(request(fw, FrameType.GET_SLOTS).payload)] == [0, 2]
    assert request(fw, FrameType.CLEAR_SLOT, b"\xff").type is FrameType.ACK
    assert decode_slots(request(fw, FrameType.GET_SLOTS).payload) == []
    assert nack_of(request(fw, FrameType.CLEAR_SLOT, b"\x40"))[0] == NackCode.NO_SUCH_SLOT


def test_get_events_is_oldest_first_and_capped() -> None:
    fw, _ = make_lock()
    type_keys(fw, "1111#" * 3)
    assert [e.seq for e in events(fw, limit=2)] == [1, 2]
    assert events(fw, limit=0) == []
    fw2, _ = make_lock(keypad_limits=())
    type_keys(fw2, "1111#" * (MAX_EVENTS_PER_FRAME + 5))
    assert len(events(fw2, limit=255)) == MAX_EVENTS_PER_FRAME


def test_ack_events_forgets_acknowledged_events_only() -> None:
    fw, _ = make_lock(keypad_limits=())
    type_keys(fw, "1111#" * 4)
    assert request(fw, FrameType.ACK_EVENTS, encode_u32(2)).type is FrameType.ACK
    assert [e.seq for e in events(fw)] == [3, 4]
    request(fw, FrameType.ACK_EVENTS, encode_u32(2))  # a repeated ack changes nothing
    assert [e.seq for e in events(fw)] == [3, 4]
    request(fw, FrameType.ACK_EVENTS, encode_u32(10))
    assert events(fw) == []
    type_keys(fw, "1111#")
    assert [e.seq for e in events(fw)] == [5]  # numbering goes on after an ack


def test_unlock_event_travels_through_frames() -> None:
    fw, _ = ready_lock("482913")
    type_keys(fw, "482913#")
    (wake,) = fw.take_unsolicited()
    head = decode_u32(wake.payload, "WAKE")
    (event,) = events(fw)
    assert (event.seq, event.kind, event.grant_id) == (head, K.UNLOCKED, GRANT)


@pytest.mark.parametrize(
    ("ftype", "payload"),
    [
        (FrameType.GET_INFO, b"\x00"),
        (FrameType.SET_TIME, b"\x01\x02"),
        (FrameType.SET_SLOT, b"\x00" * 40),
        (FrameType.CLEAR_SLOT, b""),
        (FrameType.GET_EVENTS, b"\x01\x02"),
        (FrameType.ACK_EVENTS, b""),
        (FrameType.GET_SLOTS, b"junk"),
        (FrameType.ACK, b""),
        (FrameType.WAKE, encode_u32(1)),
    ],
)
def test_undecodable_or_misdirected_frames_get_bad_request(
    ftype: FrameType, payload: bytes
) -> None:
    fw, _ = make_lock()
    code, message = nack_of(request(fw, ftype, payload, seq=0xBEEF))
    assert code == NackCode.BAD_REQUEST
    assert message


def test_a_frame_under_an_unknown_key_is_refused() -> None:
    fw, _ = make_lock()
    (reply,) = fw.receive(LockFrame(FrameType.GET_INFO, 9, key_id=3, counter=1))
    assert nack_of(reply)[0] == NackCode.AUTH_FAILED
    assert fw.view().auth_failures == 1


def test_set_slot_payload_layout_is_the_wire_one() -> None:
    fw, _ = make_lock()
    payload = struct.pack(">BII", 1, T0, T0 + 10) + bytes(16) + bytes(range(16))
    assert request(fw, FrameType.SET_SLOT, payload).type is FrameType.ACK
    assert fw.slots[1].tag == bytes(range(16))


# ------------------------------------------------------------------ never raises

frames = st.builds(
    LockFrame,
    type=st.sampled_from(FrameType),
    seq=st.integers(0, 0xFFFF),
    payload=st.one_of(
        st.binary(max_size=64),
        st.binary(min_size=41, max_size=41),  # SET_SLOT size, random content
        st.integers(0, 0xFFFFFFFF).map(encode_u32),
        st.binary(max_size=MAX_PAYLOAD),
    ),
    key_id=st.sampled_from([0, 0, 0, 1, 255]),
)
actions = st.one_of(
    frames,
    st.sampled_from(sorted(KEYS)),
    st.sampled_from(["open", "open_inside", "close", "tick"]),
    st.floats(0, 400),
)


@settings(max_examples=300)
@given(st.lists(actions, max_size=60))
def test_random_frames_keys_and_time_never_raise(script: list[object]) -> None:
    fw, clock = make_lock(event_buffer=16)
    for action in script:
        if isinstance(action, LockFrame):
            (reply,) = fw.receive(action)
            assert reply.seq == action.seq
            assert LockFrame.from_bytes(bytes(reply)) == reply
        elif isinstance(action, float):
            clock.advance(action)
        elif action == "open":
            was_locked = fw.view().locked
            assert not (fw.open_door() and was_locked)  # fails secure outside
        elif action == "open_inside":
            fw.open_door(from_inside=True)
        elif action == "close":
            fw.close_door()
        elif action == "tick":
            fw.tick()
        else:
            assert isinstance(action, str)
            fw.press(action)
        view = fw.view()
        assert view.events_pending <= 16
        assert view.display.startswith("LOCKED OUT") == view.locked_out
    for frame in fw.take_unsolicited():
        assert frame.type is FrameType.WAKE
    assert [e.seq for e in events(fw)] == sorted(e.seq for e in events(fw))
