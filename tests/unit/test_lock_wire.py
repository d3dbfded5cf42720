"""The lock wire codec: round trips, and garbage that never breaks the parser."""

from __future__ import annotations

import contextlib
import struct
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.errors import FrameError, LocalProtocolError
from protocol.framing import MAX_BODY, crc16
from protocol.lock_wire import (
    MAGIC,
    FrameParser,
    FrameType,
    LockFrame,
    LockInfo,
    NackCode,
    SlotEntry,
    WireEvent,
    decode_events,
    decode_nack,
    decode_slots,
    decode_unlock_ack,
    encode_events,
    encode_nack,
    encode_slots,
    encode_unlock_ack,
)
from protocol.messages import LockEventKind
from tests import strategies as s

GRANT = "0b6c9d5e-1f2a-4b3c-8d4e-5f6a7b8c9d0e"


@given(s.frames)
def test_frame_round_trip(frame: LockFrame) -> None:
    assert LockFrame.from_bytes(bytes(frame)) == frame


@given(st.lists(s.frames, max_size=5), st.data())
def test_parser_yields_every_frame_whatever_the_chunking(
    frames: list[LockFrame], data: st.DataObject
) -> None:
    stream = b"".join(bytes(f) for f in frames)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    parser = FrameParser()
    out: list[LockFrame] = []
    last = 0
    for cut in [*cuts, len(stream)]:
        out += parser.feed(stream[last:cut])
        last = cut
    assert out == frames
    assert parser.dropped_bytes == 0
    assert parser.buffered == 0


@given(st.binary(max_size=2000), s.frames)
def test_parser_resynchronises_after_garbage(garbage: bytes, frame: LockFrame) -> None:
    parser = FrameParser()
    out = parser.feed(garbage)
    # garbage may end in a false header that claims the next bytes; once enough clean
    # bytes follow to disprove it, the real frame inside them is found
    out += parser.feed(bytes(frame) + bytes(MAX_BODY + 8))
    assert frame in out


@given(st.binary(max_size=4000))
def test_parser_never_raises_on_garbage(garbage: bytes) -> None:
    parser = FrameParser()
    parser.feed(garbage)
    assert parser.buffered <= len(garbage)


def test_garbage_between_frames_is_counted() -> None:
    a = bytes(LockFrame(FrameType.GET_INFO, 1))
    b = bytes(LockFrame(FrameType.SET_TIME, 2, b"\x00\x00\x00\x01"))
    parser = FrameParser()
    frames = parser.feed(a + b"noise!" + b)
    assert [f.seq for f in frames] == [1, 2]
    assert parser.dropped_bytes == len(b"noise!")


def test_corrupted_frame_is_dropped_and_the_next_one_kept() -> None:
    bad = bytearray(bytes(LockFrame(FrameType.GET_INFO, 1, b"hello")))
    bad[10] ^= 0xFF
    good = bytes(LockFrame(FrameType.GET_INFO, 2))
    parser = FrameParser()
    assert [f.seq for f in parser.feed(bytes(bad) + good)] == [2]
    assert parser.bad_frames >= 1
    assert parser.dropped_bytes >= len(bad)


def test_truncated_frame_waits_for_the_rest() -> None:
    raw = bytes(LockFrame(FrameType.GET_EVENTS, 9, b"\x08"))
    parser = FrameParser()
    assert parser.feed(raw[:-3]) == []
    assert parser.feed(raw[-3:])[0].seq == 9


def test_oversized_length_is_not_waited_for() -> None:
    # a length field of 65535 must not make the parser hold the line for 64 KiB
    parser = FrameParser()
    good = bytes(LockFrame(FrameType.GET_INFO, 3))
    assert [f.seq for f in parser.feed(MAGIC + b"\xff\xff" + good)] == [3]


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "shorter"),
        (b"\x00" * 30, "magic"),
        (MAGIC + b"\x00\x01" + b"\x00" * 26, "body length"),
    ],
)
def test_from_bytes_says_what_is_wrong(raw: bytes, reason: str) -> None:
    with pytest.raises(FrameError, match=reason):
        LockFrame.from_bytes(raw)


def test_unknown_frame_type_is_refused() -> None:
    raw = bytearray(bytes(LockFrame(FrameType.ACK, 1)))
    raw[5] = 0x7E  # type byte
    body_end = len(raw) - 2
    raw[body_end:] = crc16(bytes(raw[2:body_end])).to_bytes(2, "big")
    with pytest.raises(FrameError, match="unknown frame type"):
        LockFrame.from_bytes(bytes(raw))


def test_a_frame_we_build_must_fit() -> None:
    with pytest.raises(LocalProtocolError):
        LockFrame(FrameType.ACK, 70000)
    with pytest.raises(LocalProtocolError):
        LockFrame(FrameType.ACK, 1, b"x" * 5000)


@given(s.infos)
def test_info_round_trip(info: LockInfo) -> None:
    decoded = LockInfo.decode(info.encode())
    assert decoded.slot_count == info.slot_count
    assert decoded.clock == info.clock
    assert decoded.battery_pct == info.battery_pct
    assert (decoded.locked_out, decoded.door_open) == (info.locked_out, info.door_open)
    assert decoded.model == info.model
    assert decoded.firmware == info.firmware


def test_long_text_is_cut_on_a_character_boundary() -> None:
    info = LockInfo("é" * 40, "fw", 32, 0, 0, False, 100, False)
    assert LockInfo.decode(info.encode()).model == "é" * 16


@given(s.slot_entries)
def test_set_slot_round_trip(entry: SlotEntry) -> None:
    assert SlotEntry.decode_set(entry.encode_set()) == entry


@given(st.lists(s.slot_entries, max_size=32))
def test_slot_report_round_trip_drops_tags(entries: list[SlotEntry]) -> None:
    decoded = decode_slots(encode_slots(entries))
    assert [(e.slot, e.start, e.end, e.grant_id) for e in decoded] == [
        (e.slot, e.start, e.end, e.grant_id) for e in entries
    ]
    assert all(e.tag == bytes(16) for e in decoded)


@given(s.event_lists)
def test_events_round_trip(events: list[WireEvent]) -> None:
    assert decode_events(encode_events(events)) == events


def test_events_from_a_lock_without_boot_ids_read_as_boot_0() -> None:
    # the layout before boot ids: count (high bit clear), then 28-byte events
    legacy = bytes([1]) + struct.pack(">IIBBH", 9, 1_800_000_000, 1, 3, 0) + uuid.UUID(GRANT).bytes
    (event,) = decode_events(legacy)
    assert event == WireEvent(9, 1_800_000_000, LockEventKind.UNLOCKED, 3, GRANT, 0, boot=0)


def test_events_carry_their_boot() -> None:
    events = [WireEvent(1, 5, LockEventKind.RELOCKED, boot=0xDEADBEEF)]
    assert encode_events(events)[0] & 0x80  # the layout with boot ids
    assert decode_events(encode_events(events))[0].boot == 0xDEADBEEF


@given(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1))
def test_unlock_ack_round_trip(seq: int, boot: int) -> None:
    assert decode_unlock_ack(encode_unlock_ack(seq, boot)) == (seq, boot)


def test_unlock_ack_of_a_lock_without_boot_ids_is_boot_0() -> None:
    assert decode_unlock_ack(struct.pack(">I", 12)) == (12, 0)


@given(st.binary(max_size=300))
def test_payload_decoders_raise_only_frame_errors(raw: bytes) -> None:
    decoders = (
        decode_events,
        decode_slots,
        LockInfo.decode,
        SlotEntry.decode_set,
        decode_nack,
        decode_unlock_ack,
    )
    for decode in decoders:
        with contextlib.suppress(FrameError):
            decode(raw)


def test_nack_carries_its_reason() -> None:
    code, message = decode_nack(encode_nack(NackCode.NO_SUCH_SLOT, "slot 40 > 31"))
    assert code == NackCode.NO_SUCH_SLOT
    assert message == "slot 40 > 31"
