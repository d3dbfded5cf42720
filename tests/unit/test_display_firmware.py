"""The display firmware with a ManualClock: chime, next numbers, announcement expiry,
standby, power cycle → HELLO → one SHOW_STATE restores it, and sealed links."""

from __future__ import annotations

from dataclasses import replace

import pytest

from firmware_sim.display.firmware import CHIME_S, HELLO_RETRY_S, DisplayFirmware
from firmware_sim.display.pairing import DisplayPairingRecord
from firmware_sim.display.states import (
    BACKLIGHT_TRANSITIONS,
    SCREEN_TRANSITIONS,
    Backlight,
    Screen,
    ScreenTrigger,
    next_screen,
)
from protocol import display_wire as dw
from protocol.clock import ManualClock
from protocol.display_auth import DisplayDirection, DisplayLinkAuth, DisplayPairRequest

T0 = 1_800_000_000  # 2027-01-15 17:00 in Tokyo
F = dw.DisplayFrameType
KEY = bytes.fromhex("5a" * 32)


def call(room: str, number: str, seq: int = 1) -> dw.RoomCall:
    return dw.RoomCall(room, number, seq)


def state(
    version: int = 1, *rooms: dw.RoomCall, nxt: tuple[str, ...] = (), **kw: object
) -> dw.DisplayState:
    """A full state at T0 with these calls; ``kw`` sets the other fields."""
    return replace(dw.DisplayState(version, dw.Calls(rooms, nxt), time=T0), **kw)


class Agent:
    """Sends frames to a firmware the way the agent would (sealed when given a key)."""

    def __init__(self, fw: DisplayFirmware, key: bytes | None = None) -> None:
        self.fw = fw
        self.link = None if key is None else DisplayLinkAuth(key, DisplayDirection.TO_DISPLAY)
        self.seq = 0

    def send(self, ftype: F, payload: bytes = b"") -> dw.DisplayFrame:
        self.seq += 1
        frame = dw.DisplayFrame(ftype, self.seq, payload)
        if self.link is not None:
            frame = self.link.seal(frame)
        (reply,) = self.fw.receive(frame)
        assert reply.seq == self.seq
        if self.link is not None and reply.key_id:
            self.link.check(reply, bound=frame.counter)
        return reply

    def show(self, s: dw.DisplayState) -> dw.DisplayFrame:
        reply = self.send(F.SHOW_STATE, s.encode())
        assert reply.type is F.ACK, dw.decode_nack(reply.payload)
        return reply


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
def fw(clock: ManualClock) -> DisplayFirmware:
    return DisplayFirmware(clock)


@pytest.fixture
def agent(fw: DisplayFirmware) -> Agent:
    return Agent(fw)


# -------------------------------------------------------------------- state tables


def test_every_state_has_a_row_and_a_power_cycle() -> None:
    assert set(SCREEN_TRANSITIONS) == set(Screen)
    assert set(BACKLIGHT_TRANSITIONS) == set(Backlight)
    for row in SCREEN_TRANSITIONS.values():
        assert row[ScreenTrigger.POWER_CYCLE] is Screen.NO_STATE
    assert next_screen(Screen.NO_STATE, ScreenTrigger.PARTIAL_UPDATE) is None


# --------------------------------------------------------------------------- calls


def test_calls_and_next_numbers_show(fw: DisplayFirmware, agent: Agent) -> None:
    agent.show(state(1, call("1", "A-021"), call("3", "A-023"), nxt=("A-024", "A-025")))
    view = fw.view()
    assert [(r.room, r.number) for r in view.rooms] == [("1", "A-021"), ("3", "A-023")]
    assert view.next_numbers == ("A-024", "A-025")
    assert (view.has_state, view.state_version) == (True, 1)


def test_a_new_call_chimes_once_and_a_resend_does_not(
    fw: DisplayFirmware, agent: Agent, clock: ManualClock
) -> None:
    agent.show(state(1, call("3", "A-022", 1)))
    assert fw.view().chime_count == 0  # the first state after boot is a restore

    calls = dw.Calls((call("3", "A-023", 2),), ("A-024",))
    assert agent.send(F.SET_CALLS, calls.encode()).type is F.ACK
    view = fw.view()
    assert (view.chime, view.chime_count) == (True, 1)
    assert view.rooms[0].fresh

    agent.send(F.SET_CALLS, calls.encode())  # the same document again (a redelivery)
    agent.show(state(2, call("3", "A-023", 2)))  # or inside a full state
    assert fw.view().chime_count == 1

    clock.advance(CHIME_S)
    view = fw.view()
    assert (view.chime, view.rooms[0].fresh, view.chime_count) == (False, False, 1)


def test_a_recall_chimes_again(fw: DisplayFirmware, agent: Agent) -> None:
    agent.show(state(1))
    agent.send(F.SET_CALLS, dw.Calls((call("3", "A-023", 5),)).encode())
    agent.send(F.SET_CALLS, dw.Calls((call("3", "A-023", 6),)).encode())  # recall
    assert fw.view().chime_count == 2


def test_one_chime_for_calls_in_two_rooms_at_once_and_only_they_are_fresh(
    fw: DisplayFirmware, agent: Agent
) -> None:
    agent.show(state(1, call("1", "A-001"), call("2", "B-001"), call("3", "C-001")))
    agent.show(state(2, call("1", "A-002"), call("2", "B-002"), call("3", "C-001")))
    view = fw.view()
    assert view.chime_count == 1
    assert [r.fresh for r in view.rooms] == [True, True, False]


def test_a_muted_chime_still_highlights_the_new_number(fw: DisplayFirmware, agent: Agent) -> None:
    agent.show(state(1, chime_volume=0))
    agent.send(F.SET_CALLS, dw.Calls((call("3", "A-023"),)).encode())
    view = fw.view()
    assert (view.chime, view.chime_count, view.rooms[0].fresh) == (False, 0, True)


# -------------------------------------------------------------------- announcement


def test_an_announcement_shows_and_clears_at_its_expiry(
    fw: DisplayFirmware, agent: Agent, clock: ManualClock
) -> None:
    agent.show(state(1))
    text = "本日は午後の診察を休止します"
    ann = dw.Announcement(text, dw.AnnouncementLevel.INFO, T0 + 600)
    assert agent.send(F.SET_ANNOUNCEMENT, ann.encode()).type is F.ACK
    view = fw.view()
    assert (view.announcement, view.announcement_level) == (text, "info")
    assert view.announcement_expires_at == T0 + 600

    clock.advance(599)
    assert fw.view().announcement == text
    clock.advance(1)
    assert fw.view().announcement == ""  # hidden at once, even before the tick
    fw.tick()
    assert fw.announcement.text == ""


def test_an_announcement_without_expiry_stays_until_cleared(
    fw: DisplayFirmware, agent: Agent, clock: ManualClock
) -> None:
    agent.show(state(1, announcement=dw.Announcement("受付は1階です")))
    clock.advance(86_400)
    fw.tick()
    assert fw.view().announcement == "受付は1階です"
    agent.send(F.SET_ANNOUNCEMENT, dw.Announcement().encode())
    assert (fw.view().announcement, fw.view().announcement_level) == ("", "")


# ------------------------------------------------------------------------- standby


def test_standby_by_schedule_dims_and_wakes(
    fw: DisplayFirmware, agent: Agent, clock: ManualClock
) -> None:
    # open 08:00-18:00 Tokyo; T0 is 17:00 there
    schedule = dw.StandbySchedule(on_minute=8 * 60, off_minute=18 * 60)
    agent.show(state(1, call("3", "A-023"), brightness=80, standby=schedule))
    assert (fw.view().standby, fw.view().brightness) == (False, 80)

    clock.advance(3600)  # 18:00
    fw.tick()
    view = fw.view()
    assert view.standby
    assert view.brightness < view.set_brightness == 80
    assert [r.number for r in view.rooms] == ["A-023"]  # still shown, dimmed
    assert fw.status().standby

    clock.advance(14 * 3600)  # 08:00 next day
    fw.tick()
    assert (fw.view().standby, fw.view().brightness) == (False, 80)


def test_an_urgent_announcement_wakes_a_display_in_standby(
    fw: DisplayFirmware, agent: Agent, clock: ManualClock
) -> None:
    schedule = dw.StandbySchedule(on_minute=8 * 60, off_minute=18 * 60)
    agent.show(state(1, standby=schedule))
    clock.advance(4 * 3600)  # 21:00
    fw.tick()
    assert fw.view().standby
    urgent = dw.Announcement("津波警報が発表されました", dw.AnnouncementLevel.URGENT, T0 + 5 * 3600)
    agent.send(F.SET_ANNOUNCEMENT, urgent.encode())
    assert not fw.view().standby
    clock.advance(3600)  # expired
    fw.tick()
    assert fw.view().standby


def test_without_a_clock_the_display_stays_on(clock: ManualClock) -> None:
    fw = DisplayFirmware(clock)
    agent = Agent(fw)
    night_only = dw.StandbySchedule(on_minute=0, off_minute=1)
    agent.show(dw.DisplayState(1, standby=night_only, time=0))  # the agent has no time
    fw.tick()
    assert not fw.view().standby
    assert not fw.view().clock_set


def test_set_time_refuses_untrusted_time(fw: DisplayFirmware, agent: Agent) -> None:
    reply = agent.send(F.SET_TIME, dw.encode_u32(10))
    assert dw.decode_nack(reply.payload)[0] == dw.DisplayNackCode.BAD_REQUEST
    assert agent.send(F.SET_TIME, dw.encode_u32(T0)).type is F.ACK
    assert fw.view().display_time == T0


def test_brightness_update(fw: DisplayFirmware, agent: Agent) -> None:
    agent.show(state(1))
    assert agent.send(F.SET_BRIGHTNESS, dw.encode_brightness(40)).type is F.ACK
    assert fw.view().brightness == 40
    reply = agent.send(F.SET_BRIGHTNESS, b"\x65")
    assert dw.decode_nack(reply.payload)[0] == dw.DisplayNackCode.BAD_REQUEST
    assert fw.view().brightness == 40


# -------------------------------------------------------------- boot and power cycle


def test_hello_at_boot_repeats_until_the_state_arrives(
    fw: DisplayFirmware, agent: Agent, clock: ManualClock
) -> None:
    (hello,) = fw.take_unsolicited()
    assert hello.type is F.HELLO
    assert dw.Hello.decode(hello.payload).reason is dw.BootReason.POWER_ON
    assert fw.take_unsolicited() == []
    clock.advance(HELLO_RETRY_S)
    assert [f.type for f in fw.take_unsolicited()] == [F.HELLO]
    agent.show(state(1))
    clock.advance(HELLO_RETRY_S)
    assert fw.take_unsolicited() == []


def test_partial_updates_before_the_full_state_are_refused(
    fw: DisplayFirmware, agent: Agent
) -> None:
    reply = agent.send(F.SET_CALLS, dw.Calls((call("3", "A-023"),)).encode())
    assert dw.decode_nack(reply.payload)[0] == dw.DisplayNackCode.NEED_STATE
    assert fw.view().rooms == ()


def test_power_cycle_then_hello_then_one_full_state_restores_everything_quietly(
    fw: DisplayFirmware, agent: Agent, clock: ManualClock
) -> None:
    full = state(
        7,
        call("1", "A-021", 3),
        call("3", "A-023", 4),
        nxt=("A-024",),
        announcement=dw.Announcement("お呼び出しの際は番号でお知らせします"),
        brightness=70,
        standby=dw.StandbySchedule(on_minute=8 * 60, off_minute=18 * 60),
    )
    agent.show(full)
    fw.take_unsolicited()
    before = fw.view()
    chimes = before.chime_count

    fw.power_cycle()
    blank = fw.view()
    assert (blank.has_state, blank.rooms, blank.announcement) == (False, (), "")
    assert (blank.clock_set, blank.boot_count) == (False, 2)
    (hello,) = fw.take_unsolicited()
    assert dw.Hello.decode(hello.payload) == dw.Hello(
        "denen-sim-display", "sim-0.1.0", 2, dw.BootReason.POWER_CYCLE
    )

    ack = agent.show(full)
    assert dw.decode_u32(ack.payload, "ACK") == 7
    after = fw.view()
    assert after.chime_count == chimes  # a restore is not a new call
    keep = ("rooms", "next_numbers", "announcement", "brightness", "state_version", "standby")
    assert {k: getattr(after, k) for k in keep} == {k: getattr(before, k) for k in keep}
    assert after.display_time == T0


def test_status_reports_state_and_clock(fw: DisplayFirmware, agent: Agent) -> None:
    agent.show(state(3))
    status = dw.DisplayStatus.decode(agent.send(F.GET_STATUS).payload)
    assert (status.state_version, status.clock, status.has_state) == (3, T0, True)
    assert not status.provisioned


def test_frames_that_are_not_requests_and_bad_bytes_get_nacks(
    fw: DisplayFirmware, agent: Agent
) -> None:
    assert dw.decode_nack(agent.send(F.ACK).payload)[0] == dw.DisplayNackCode.NOT_A_REQUEST
    reply = agent.send(F.SHOW_STATE, b"\x00\x01")
    assert dw.decode_nack(reply.payload)[0] == dw.DisplayNackCode.BAD_REQUEST
    assert fw.view().bad_requests == 2


def test_feed_answers_frames_in_a_noisy_byte_stream(fw: DisplayFirmware) -> None:
    raw = bytes(dw.DisplayFrame(F.SHOW_STATE, 9, state(1, call("3", "A-023")).encode()))
    replies = fw.feed(b"\x00garbage" + raw[:10])
    replies += fw.feed(raw[10:])
    assert [(r.type, r.seq) for r in replies] == [(F.ACK, 9)]
    assert fw.view().dropped_bytes == len(b"\x00garbage")


# -------------------------------------------------------------------- sealed link


def test_a_provisioned_display_takes_state_only_from_the_key_holder(clock: ManualClock) -> None:
    fw = DisplayFirmware(clock, DisplayPairingRecord(KEY))
    attacker, agent = Agent(fw), Agent(fw, KEY)
    fake = state(1, call("3", "Z-999"), announcement=dw.Announcement("避難してください"))
    reply = attacker.send(F.SHOW_STATE, fake.encode())
    assert dw.decode_nack(reply.payload)[0] == dw.DisplayNackCode.AUTH_FAILED
    forged = Agent(fw, bytes(32))
    assert forged.send(F.SHOW_STATE, fake.encode()).type is F.NACK
    assert fw.view().rooms == ()
    assert fw.view().auth_failures == 2

    # a technician can still read the status in clear
    assert attacker.send(F.GET_STATUS).type is F.STATUS

    agent.show(state(1, call("3", "A-023")))  # the reply is sealed and checked in Agent
    assert [r.number for r in fw.view().rooms] == ["A-023"]


def test_a_replayed_state_is_refused_and_hello_is_sealed(clock: ManualClock) -> None:
    fw = DisplayFirmware(clock, DisplayPairingRecord(KEY))
    link = DisplayLinkAuth(KEY, DisplayDirection.TO_DISPLAY)
    old = link.seal(dw.DisplayFrame(F.SHOW_STATE, 1, state(1, call("3", "A-001")).encode()))
    new = link.seal(dw.DisplayFrame(F.SHOW_STATE, 2, state(2, call("3", "A-009")).encode()))
    assert fw.receive(old)[0].type is F.ACK
    assert fw.receive(new)[0].type is F.ACK
    (reply,) = fw.receive(old)  # an eavesdropper replays yesterday's frame
    assert reply.type is F.NACK
    assert [r.number for r in fw.view().rooms] == ["A-009"]

    fw.power_cycle()  # the counters survive (flash): the old frame still fails
    assert fw.receive(old)[0].type is F.NACK
    (hello,) = fw.take_unsolicited()
    DisplayLinkAuth(KEY, DisplayDirection.TO_DISPLAY, recv_counter=2).check(hello)


# -------------------------------------------------------------------- pairing


def pair(fw: DisplayFirmware, key: bytes, confirm: int | None = None) -> dw.DisplayFrame:
    (reply,) = fw.receive(dw.DisplayFrame(F.PAIR, 3, DisplayPairRequest(key, T0, confirm).encode()))
    return reply


def test_pairing_takes_a_key_only_inside_the_button_window(clock: ManualClock) -> None:
    fw = DisplayFirmware(clock)
    code, message = dw.decode_nack(pair(fw, KEY).payload)
    assert code == dw.DisplayNackCode.NOT_PAIRING
    assert "press the pairing button on the display" in message
    fw.press_pair_button()
    assert fw.view().pairing_open_s == 60
    reply = pair(fw, KEY)
    assert reply.type is F.ACK
    DisplayLinkAuth(KEY, DisplayDirection.TO_DISPLAY).check(reply)  # sealed under the new key
    assert pair(fw, KEY).type is F.ACK  # the same PAIR again (a lost ACK) changes nothing
    view = fw.view()
    assert (view.provisioned, view.clock_set, view.auth_failures) == (True, True, 1)
    assert fw.record() == DisplayPairingRecord(KEY, 2, 0)
    Agent(fw, KEY).show(state(1, call("3", "A-023")))
    assert Agent(fw).send(F.SHOW_STATE, state(2).encode()).type is F.NACK


def test_a_second_pair_in_the_window_needs_the_code_the_display_shows(
    clock: ManualClock,
) -> None:
    fw = DisplayFirmware(clock)
    fw.press_pair_button()
    assert pair(fw, KEY).type is F.ACK
    other = bytes(range(32))
    assert dw.decode_nack(pair(fw, other).payload)[0] == dw.DisplayNackCode.CONFIRM_CODE
    shown = fw.view().pairing_code
    assert len(shown) == 6
    assert shown.isdigit()
    assert pair(fw, other, confirm=int(shown)).type is F.ACK
    assert fw.record() == DisplayPairingRecord(other, 1, 0)
    assert (fw.view().pairing_open_s, fw.view().pairing_code) == (0, "")
