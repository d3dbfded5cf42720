"""Every parser that takes bytes from outside, fed thousands of random and mutated inputs:
none may raise anything but its own documented error, and none may hang.

The lock firmware's own frame handling is fuzzed in test_lock_firmware_auth.py; the
clinic display's frames, payloads and firmware, and the card reader's lines, are here.
"""

from __future__ import annotations

import contextlib
import json

from hypothesis import given
from hypothesis import strategies as st

from firmware_sim.display.firmware import DisplayFirmware
from protocol import display_wire as dw
from protocol import messages, topics
from protocol.clock import ManualClock
from protocol.errors import FrameError, MessageError, TopicError
from protocol.lock_auth import AuthError, Direction, LinkAuth
from protocol.lock_wire import (
    FrameParser,
    LockFrame,
    LockInfo,
    SlotEntry,
    decode_events,
    decode_nack,
    decode_slots,
)
from protocol.patient_card import MAX_LINE, CardLineParser, CardRead, decode_card_line
from tests import strategies as s
from tests.fuzzing import fuzz_settings

FUZZ = fuzz_settings(3000)


def _mutate(data: bytes, flips: list[tuple[int, int]]) -> bytes:
    out = bytearray(data)
    for pos, value in flips:
        if out:
            out[pos % len(out)] = value
    return bytes(out)


@FUZZ
@given(
    st.lists(s.frames, max_size=3),
    st.lists(st.tuples(st.integers(0, 4000), st.integers(0, 255)), max_size=8),
    st.binary(max_size=64),
)
def test_lock_frame_parser_survives_mutated_streams(
    frames: list[LockFrame], flips: list[tuple[int, int]], noise: bytes
) -> None:
    stream = _mutate(b"".join(bytes(f) for f in frames), flips) + noise
    parser = FrameParser()
    out = parser.feed(stream)
    # every byte is either in a frame, dropped and counted, or still waiting
    assert len(out) <= len(frames) + len(noise)
    assert parser.buffered <= len(stream)


@FUZZ
@given(st.binary(max_size=1200))
def test_frame_and_payload_decoders_raise_only_frame_errors(raw: bytes) -> None:
    decoders = (
        LockFrame.from_bytes,
        LockInfo.decode,
        SlotEntry.decode_set,
        decode_slots,
        decode_events,
        decode_nack,
    )
    for decode in decoders:
        with contextlib.suppress(FrameError):
            decode(raw)


@FUZZ
@given(
    s.frames, st.lists(st.tuples(st.integers(0, 2000), st.integers(0, 255)), min_size=1, max_size=4)
)
def test_a_tampered_sealed_frame_is_refused_never_accepted(
    frame: LockFrame, flips: list[tuple[int, int]]
) -> None:
    key = b"k" * 32
    sender, receiver = (
        LinkAuth(key, Direction.TO_LOCK),
        LinkAuth(key, Direction.TO_AGENT),
    )
    raw = bytes(sender.seal(frame))
    # the untouched frame is accepted by the lock's side of the link …
    LinkAuth(key, Direction.TO_AGENT).check(LockFrame.from_bytes(raw))
    # … and a tampered one never is
    tampered = _mutate(raw, flips)
    try:
        received = LockFrame.from_bytes(tampered)
    except FrameError:
        return  # the CRC caught it
    if tampered == raw:
        return
    try:
        receiver.check(received)
    except AuthError:
        return
    # a change the MAC does not cover would be a hole: only the CRC bytes may differ
    assert bytes(received) == raw


def _containers(inner: st.SearchStrategy[object]) -> st.SearchStrategy[object]:
    return st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)


# nested two deep by hand: st.recursive's check that `extend` uses its argument misfires
# here now and then (a HypothesisDeprecationWarning, an error under our filterwarnings)
_leaves = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
)
json_values = _leaves | _containers(_leaves) | _containers(_containers(_leaves))


@FUZZ
@given(st.binary(max_size=600))
def test_mqtt_payload_parser_raises_only_message_errors_on_bytes(raw: bytes) -> None:
    with contextlib.suppress(MessageError):
        messages.parse(raw)


@FUZZ
@given(
    st.sampled_from(list(messages.MessageType)),
    json_values,
    st.dictionaries(st.sampled_from(["v", "id", "ts"]), json_values),
)
def test_mqtt_payload_parser_raises_only_message_errors_on_json(
    kind: messages.MessageType, data: object, envelope: dict[str, object]
) -> None:
    payload = {"v": 1, "type": kind.value, "id": "x", "ts": 1, "data": data, **envelope}
    with contextlib.suppress(MessageError):
        messages.parse(json.dumps(payload))


@FUZZ
@given(st.text(max_size=120))
def test_topic_parser_raises_only_topic_errors(topic: str) -> None:
    with contextlib.suppress(TopicError):
        topics.parse(topic)


# ------------------------------------------------------------------ clinic devices


@FUZZ
@given(
    st.lists(s.display_frames, max_size=3),
    st.lists(st.tuples(st.integers(0, 4000), st.integers(0, 255)), max_size=8),
    st.binary(max_size=64),
)
def test_display_frame_parser_survives_mutated_streams(
    frames: list[dw.DisplayFrame], flips: list[tuple[int, int]], noise: bytes
) -> None:
    stream = _mutate(b"".join(bytes(f) for f in frames), flips) + noise
    parser = dw.DisplayFrameParser()
    out = parser.feed(stream)
    assert len(out) <= len(frames) + len(noise)
    assert parser.buffered <= len(stream)


DISPLAY_DECODERS = (
    dw.DisplayFrame.from_bytes,
    dw.DisplayState.decode,
    dw.Calls.decode,
    dw.Announcement.decode,
    dw.StandbySchedule.decode,
    dw.DisplayStatus.decode,
    dw.Hello.decode,
    dw.decode_brightness,
    dw.decode_nack,
    lambda raw: dw.decode_u32(raw, "ACK"),
)


@FUZZ
@given(st.binary(max_size=1200))
def test_display_decoders_raise_only_frame_errors_on_random_bytes(raw: bytes) -> None:
    for decode in DISPLAY_DECODERS:
        with contextlib.suppress(FrameError):
            decode(raw)


@FUZZ
@given(s.display_states, st.lists(st.tuples(st.integers(0, 1000), st.integers(0, 255)), max_size=6))
def test_display_state_decoder_raises_only_frame_errors_on_mutated_states(
    state: dw.DisplayState, flips: list[tuple[int, int]]
) -> None:
    # random bytes rarely get past the first length field; a mutated real state does
    raw = _mutate(state.encode(), flips)
    for decode in DISPLAY_DECODERS:
        with contextlib.suppress(FrameError):
            decode(raw)


@FUZZ
@given(st.sampled_from(dw.DisplayFrameType), st.binary(max_size=300), st.integers(0, 0xFFFF))
def test_the_display_firmware_answers_any_frame_without_raising(
    ftype: dw.DisplayFrameType, payload: bytes, seq: int
) -> None:
    fw = DisplayFirmware(ManualClock())
    fw.receive(dw.DisplayFrame(dw.DisplayFrameType.SHOW_STATE, 1, dw.DisplayState(1).encode()))
    (reply,) = fw.receive(dw.DisplayFrame(ftype, seq, payload))
    assert reply.seq == seq


@FUZZ
@given(st.lists(st.binary(max_size=40) | st.sampled_from([b"\r", b"\n", b"\r\n"]), max_size=30))
def test_card_line_parser_never_raises_and_stays_bounded(chunks: list[bytes]) -> None:
    parser = CardLineParser()
    for chunk in chunks:
        for line in parser.feed(chunk):
            if isinstance(line, CardRead):
                assert len(line.card.digits) == 16
        assert parser.buffered <= MAX_LINE


@FUZZ
@given(st.binary(max_size=200))
def test_card_line_decoder_returns_a_read_or_a_reason(raw: bytes) -> None:
    decode_card_line(raw)
