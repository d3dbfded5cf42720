"""The display wire codec: round trips of every frame and payload, garbage, numbers only."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol import display_wire as dw
from protocol import framing
from protocol.display_auth import AuthError, DisplayDirection, DisplayLinkAuth
from protocol.errors import FrameError, LocalProtocolError
from protocol.lock_wire import FrameParser, FrameType, LockFrame
from tests import strategies as s


@given(s.display_frames)
def test_frame_round_trip(frame: dw.DisplayFrame) -> None:
    assert dw.DisplayFrame.from_bytes(bytes(frame)) == frame


@given(s.display_states)
def test_show_state_round_trip_and_fits_one_frame(state: dw.DisplayState) -> None:
    payload = state.encode()
    assert dw.DisplayState.decode(payload) == state
    frame = dw.DisplayFrame(dw.DisplayFrameType.SHOW_STATE, 1, payload)
    assert dw.DisplayFrame.from_bytes(bytes(frame)).payload == payload


@given(s.calls)
def test_calls_round_trip(calls: dw.Calls) -> None:
    assert dw.Calls.decode(calls.encode()) == calls


@given(s.announcements)
def test_announcement_round_trip(announcement: dw.Announcement) -> None:
    assert dw.Announcement.decode(announcement.encode()) == announcement


@given(s.standby_schedules)
def test_standby_round_trip(schedule: dw.StandbySchedule) -> None:
    assert dw.StandbySchedule.decode(schedule.encode()) == schedule


@given(s.display_statuses)
def test_status_round_trip(status: dw.DisplayStatus) -> None:
    assert dw.DisplayStatus.decode(status.encode()) == status


@given(s.hellos)
def test_hello_round_trip(hello: dw.Hello) -> None:
    assert dw.Hello.decode(hello.encode()) == hello


@given(st.integers(0, 100))
def test_brightness_round_trip(value: int) -> None:
    assert dw.decode_brightness(dw.encode_brightness(value)) == value


@given(st.sampled_from(dw.DisplayNackCode), s.names)
def test_nack_round_trip(code: dw.DisplayNackCode, message: str) -> None:
    assert dw.decode_nack(dw.encode_nack(code, message)) == (code, message)


def test_the_largest_state_fits_one_frame() -> None:
    room = "診察室" + "1" * 7  # 16 bytes
    state = dw.DisplayState(
        version=2**32 - 1,
        calls=dw.Calls(
            tuple(dw.RoomCall(room[:-2] + f"{i:02d}", "ABC-12345", 9) for i in range(16)),
            ("ABC-12345",) * dw.MAX_NEXT,
        ),
        announcement=dw.Announcement("地" * 80, dw.AnnouncementLevel.URGENT, 1),
    )
    assert len(state.encode()) <= framing.MAX_PAYLOAD
    assert dw.DisplayState.decode(state.encode()) == state


def test_japanese_announcement_travels_intact() -> None:
    text = "地震のため、ただいま受付を中止しています。係員の指示に従ってください。"
    a = dw.Announcement(text, dw.AnnouncementLevel.URGENT, 1_800_000_600)
    assert dw.Announcement.decode(a.encode()).text == text


def test_an_announcement_longer_than_the_bound_is_refused_before_sending() -> None:
    with pytest.raises(LocalProtocolError, match="240"):
        dw.Announcement("あ" * 81)


@pytest.mark.parametrize("label", ["A-023", "023", "B12", "ABC-12345", "7"])
def test_ticket_labels_are_numbers(label: str) -> None:
    assert dw.RoomCall("3", label).number == label


@pytest.mark.parametrize("label", ["Yamada Taro", "山田", "A-", "", "A-0234567", "a-023", "A 023"])
def test_a_name_cannot_be_a_ticket_label(label: str) -> None:
    with pytest.raises(LocalProtocolError, match="ticket label"):
        dw.RoomCall("3", label)
    with pytest.raises(LocalProtocolError):
        dw.Calls(next_numbers=(label,))


def test_a_decoder_refuses_a_name_in_a_ticket_field() -> None:
    good = dw.Calls((dw.RoomCall("3", "A-023"),)).encode()
    forged = good.replace(b"\x05A-023", b"\x05Sato!")
    with pytest.raises(FrameError, match="ticket label"):
        dw.Calls.decode(forged)


def test_a_room_listed_twice_is_refused() -> None:
    with pytest.raises(LocalProtocolError, match="twice"):
        dw.Calls((dw.RoomCall("3", "A-1"), dw.RoomCall("3", "A-2")))


def test_trailing_bytes_and_short_payloads_are_frame_errors() -> None:
    payload = dw.DisplayState(1).encode()
    with pytest.raises(FrameError, match="too many"):
        dw.DisplayState.decode(payload + b"\x00")
    with pytest.raises(FrameError, match="ends early"):
        dw.DisplayState.decode(payload[:-1])


def test_standby_schedule_in_tokyo_time() -> None:
    # 07:30 to 19:00 local; 1_800_000_000 is 2027-01-15 08:00 UTC = 17:00 JST
    day = dw.StandbySchedule(on_minute=7 * 60 + 30, off_minute=19 * 60, utc_offset_min=540)
    t = 1_800_000_000
    assert day.is_on(t)
    assert not day.is_on(t + 2 * 3600)  # 19:00
    assert day.is_on(t + 14 * 3600 + 30 * 60)  # 07:30 next day
    night = dw.StandbySchedule(on_minute=22 * 60, off_minute=6 * 60)
    assert night.is_on(t + 5 * 3600)  # 22:00
    assert not night.is_on(t)
    assert dw.StandbySchedule().is_on(t)  # on == off: always on


# ------------------------------------------------------------------------- parser


@given(st.lists(s.display_frames, max_size=5), st.data())
def test_parser_yields_every_frame_whatever_the_chunking(
    frames: list[dw.DisplayFrame], data: st.DataObject
) -> None:
    stream = b"".join(bytes(f) for f in frames)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    parser = dw.DisplayFrameParser()
    out: list[dw.DisplayFrame] = []
    last = 0
    for cut in [*cuts, len(stream)]:
        out += parser.feed(stream[last:cut])
        last = cut
    assert out == frames
    assert (parser.dropped_bytes, parser.buffered) == (0, 0)


@given(st.binary(max_size=2000), s.display_frames)
def test_parser_resynchronises_after_garbage(garbage: bytes, frame: dw.DisplayFrame) -> None:
    parser = dw.DisplayFrameParser()
    out = parser.feed(garbage)
    # a false header at the end of the garbage is disproved once enough bytes follow
    out += parser.feed(bytes(frame) + bytes(framing.MAX_BODY + 8))
    assert frame in out


def test_garbage_and_a_corrupted_frame_are_counted_and_skipped() -> None:
    a = bytes(dw.DisplayFrame(dw.DisplayFrameType.GET_STATUS, 1))
    b = bytes(dw.DisplayFrame(dw.DisplayFrameType.SET_TIME, 2, dw.encode_u32(1_800_000_000)))
    broken = bytearray(a)
    broken[8] ^= 0xFF  # the CRC catches it
    parser = dw.DisplayFrameParser()
    frames = parser.feed(b"noise!" + bytes(broken) + b + b"\xd5")
    assert [f.seq for f in frames] == [2]
    assert parser.bad_frames == 1
    assert parser.dropped_bytes == len(b"noise!") + len(broken)
    assert parser.buffered == 1  # a first magic byte: the rest may come


def test_a_lock_and_a_display_ignore_each_others_frames() -> None:
    lock_frame = bytes(LockFrame(FrameType.GET_INFO, 1))
    display_frame = bytes(dw.DisplayFrame(dw.DisplayFrameType.GET_STATUS, 1))
    assert dw.DisplayFrameParser().feed(lock_frame) == []
    assert FrameParser().feed(display_frame) == []


def test_a_frame_from_a_lock_is_not_a_display_frame() -> None:
    with pytest.raises(FrameError, match="magic"):
        dw.DisplayFrame.from_bytes(bytes(LockFrame(FrameType.GET_INFO, 1)))


# --------------------------------------------------------------------------- auth

KEY = bytes(range(32))


def test_a_sealed_frame_is_accepted_once() -> None:
    agent = DisplayLinkAuth(KEY, DisplayDirection.TO_DISPLAY)
    display = DisplayLinkAuth(KEY, DisplayDirection.TO_AGENT)
    frame = agent.seal(dw.DisplayFrame(dw.DisplayFrameType.SHOW_STATE, 1, b"x"))
    display.check(dw.DisplayFrame.from_bytes(bytes(frame)))
    with pytest.raises(AuthError, match="replay"):
        display.check(frame)


def test_a_frame_sealed_for_the_other_direction_or_key_is_refused() -> None:
    agent = DisplayLinkAuth(KEY, DisplayDirection.TO_DISPLAY)
    frame = agent.seal(dw.DisplayFrame(dw.DisplayFrameType.SHOW_STATE, 1, b"x"))
    with pytest.raises(AuthError, match="MAC"):
        DisplayLinkAuth(KEY, DisplayDirection.TO_DISPLAY).check(frame)  # reflected back
    with pytest.raises(AuthError, match="MAC"):
        DisplayLinkAuth(bytes(32), DisplayDirection.TO_AGENT).check(frame)


def test_a_reply_is_bound_to_its_request() -> None:
    display = DisplayLinkAuth(KEY, DisplayDirection.TO_AGENT)
    reply = display.seal(dw.DisplayFrame(dw.DisplayFrameType.ACK, 1), bound=7)
    with pytest.raises(AuthError, match="MAC"):
        DisplayLinkAuth(KEY, DisplayDirection.TO_DISPLAY).check(reply, bound=8)
    DisplayLinkAuth(KEY, DisplayDirection.TO_DISPLAY).check(reply, bound=7)
