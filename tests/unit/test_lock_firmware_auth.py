"""The lock firmware's pairing and authentication: who may command it, and replays."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from firmware_sim.lock import LockFirmware
from firmware_sim.lock.firmware import REFUSALS_REPORT_S
from firmware_sim.lock.pairing import COUNTER_BLOCK, PairingRecord
from protocol.lock_auth import KEY_ID_LINK, Direction, LinkAuth, LockSecrets, PairRequest
from protocol.lock_wire import (
    FrameParser,
    FrameType,
    LockFrame,
    LockInfo,
    NackCode,
    SlotEntry,
    encode_u32,
)
from protocol.messages import LockEventKind as K
from protocol.pin import pin_tag
from tests.fuzzing import fuzz_settings
from tests.unit.test_lock_firmware_support import (
    GRANT,
    SECRETS,
    T0,
    make_lock,
    nack_of,
    request,
    sealed,
    send,
    set_slot,
    type_keys,
)

NEW = LockSecrets(bytes([1]) * 32, bytes([2]) * 32, bytes([3]) * 32)


def pair_frame(keys: LockSecrets = NEW, when: int = T0) -> LockFrame:
    return LockFrame(FrameType.PAIR, 5, PairRequest(keys, when).encode())


def slot_payload(pin: str, key: bytes = SECRETS.pin_key) -> bytes:
    return SlotEntry(0, T0 - 60, T0 + 3600, GRANT, pin_tag(key, pin)).encode_set()


def test_an_unpaired_lock_answers_get_info_and_refuses_set_slot() -> None:
    fw, _ = make_lock(paired=False)
    info = LockInfo.decode(send(fw, LockFrame(FrameType.GET_INFO, 1)).payload)
    assert info.paired is False
    code, message = nack_of(send(fw, LockFrame(FrameType.SET_SLOT, 2, slot_payload("482913"))))
    assert code == NackCode.NOT_PAIRED
    assert "denen provision lock pair" in message
    assert fw.slots == {}
    assert fw.view().auth_failures == 1


def test_pair_outside_the_window_is_refused_with_what_to_do() -> None:
    fw, clock = make_lock(paired=False)
    code, message = nack_of(send(fw, pair_frame()))
    assert code == NackCode.NOT_PAIRING
    assert "press the pairing button on the lock" in message
    fw.press_pair_button()
    clock.advance(61)  # the window lasts 60 s
    assert nack_of(send(fw, pair_frame()))[0] == NackCode.NOT_PAIRING
    assert not fw.view().paired
    assert fw.view().auth_failures == 2


def test_pair_inside_the_window_installs_keys_time_and_answers_sealed() -> None:
    fw, clock = make_lock(paired=False)
    fw.press_pair_button()
    assert fw.view().display == "PAIRING"
    clock.advance(30)
    reply = send(fw, pair_frame(when=T0 + 1000))
    assert (reply.type, reply.key_id) == (FrameType.ACK, KEY_ID_LINK)
    agent = LinkAuth(NEW.link_key, Direction.TO_LOCK)
    agent.check(reply)
    view = fw.view()
    assert (view.paired, view.pairing_open_s, view.lock_time) == (True, 30, T0 + 1000)
    assert view.display == "ENTER PIN"  # paired: the keypad is ready, the window unseen
    # the same PAIR again (its ACK was lost) is answered again and changes nothing
    again = send(fw, pair_frame(when=T0 + 1000))
    assert again.type is FrameType.ACK
    agent.check(again)  # still sealed under the same key, with a newer counter
    # a second one under other keys (an attacker's, say) waits for the code the lock shows
    code, message = nack_of(send(fw, pair_frame(SECRETS)))
    assert code == NackCode.CONFIRM_CODE
    assert "code it shows" in message
    assert fw.view().display.startswith("CODE ")


def test_re_pairing_replaces_keys_and_clears_slots() -> None:
    fw, _ = make_lock()
    assert set_slot(fw, "482913").type is FrameType.ACK
    fw.press_pair_button()
    assert send(fw, pair_frame()).type is FrameType.ACK
    assert fw.slots == {}  # tags made with the old PIN key mean nothing now
    # the old agent's key no longer commands the lock
    assert nack_of(request(fw, FrameType.GET_SLOTS))[0] == NackCode.AUTH_FAILED


def test_a_paired_lock_refuses_unauthenticated_commands_but_not_get_info() -> None:
    fw, _ = make_lock()
    assert LockInfo.decode(send(fw, LockFrame(FrameType.GET_INFO, 1)).payload).paired
    for ftype, payload in [
        (FrameType.SET_SLOT, slot_payload("111111")),
        (FrameType.CLEAR_SLOT, b"\xff"),
        (FrameType.SET_TIME, encode_u32(T0 + 99)),
        (FrameType.ACK_EVENTS, encode_u32(99)),
    ]:
        assert nack_of(send(fw, LockFrame(ftype, 2, payload)))[0] == NackCode.AUTH_FAILED
    assert fw.view().auth_failures == 4
    assert fw.slots == {}


def test_a_replayed_set_slot_captured_from_the_wire_is_refused_and_counted() -> None:
    fw, _ = make_lock()
    wire = bytes(sealed(fw, FrameType.SET_SLOT, slot_payload("482913")))
    (captured,) = FrameParser().feed(wire)
    assert send(fw, captured).type is FrameType.ACK
    request(fw, FrameType.CLEAR_SLOT, b"\x00")  # the agent removes the PIN
    code, message = nack_of(send(fw, captured))
    assert code == NackCode.AUTH_FAILED
    assert "replay" in message
    assert fw.slots == {}
    assert fw.view().auth_failures == 1


def test_refused_frames_become_one_event_a_minute_with_their_count() -> None:
    fw, clock = make_lock()
    forged = LockFrame(FrameType.UNLOCK, 9, b"", KEY_ID_LINK, 1, bytes(8))
    send(fw, forged)
    (first,) = fw.events.oldest(10)
    assert (first.kind, first.value) == (K.FRAMES_REFUSED, 1)
    assert fw.take_unsolicited(), "the gateway is woken to fetch it"
    for _ in range(99):  # a flood does not flood the log: the door's events stay
        send(fw, forged)
    assert fw.events.pending == 1
    clock.advance(REFUSALS_REPORT_S)
    fw.tick()
    assert [(e.kind, e.value) for e in fw.events.oldest(10)][1:] == [(K.FRAMES_REFUSED, 99)]
    clock.advance(REFUSALS_REPORT_S)
    fw.tick()
    assert fw.events.pending == 2, "nothing refused since: nothing to report"


def test_an_unpaired_lock_reports_no_refused_frames() -> None:
    fw, _ = make_lock(paired=False)
    send(fw, LockFrame(FrameType.SET_TIME, 1, encode_u32(T0)))
    assert fw.view().auth_failures == 1
    assert fw.events.pending == 0


def test_a_forged_mac_is_refused() -> None:
    fw, _ = make_lock()
    frame = sealed(fw, FrameType.CLEAR_SLOT, b"\xff")
    forged = LockFrame(frame.type, frame.seq, frame.payload, frame.key_id, frame.counter, bytes(8))
    assert nack_of(send(fw, forged))[0] == NackCode.AUTH_FAILED


def test_counters_survive_a_restart_and_the_send_counter_skips_ahead() -> None:
    fw, clock = make_lock()
    replies = [request(fw, FrameType.GET_INFO) for _ in range(3)]
    record = fw.pairing.record()
    assert record is not None
    assert record.recv_counter == 3
    assert record.send_counter >= replies[-1].counter
    assert SECRETS.link_key.hex() not in repr(record)
    again = LockFirmware(clock, PairingRecord.from_json(record.to_json()))
    assert again.pairing.record() == record
    wake_counter = again.pairing.seal(LockFrame(FrameType.WAKE, 0)).counter
    assert wake_counter == record.send_counter + 1 <= replies[-1].counter + COUNTER_BLOCK + 1


def test_a_pin_opens_only_a_paired_lock() -> None:
    fw, _ = make_lock(paired=False)
    type_keys(fw, "482913#")
    assert fw.view().locked


# --------------------------------------------------------------- fuzz: byte streams

chunks = st.one_of(
    st.binary(max_size=80),
    st.builds(
        lambda t, p: bytes(LockFrame(t, 1, p)),
        st.sampled_from(FrameType),
        st.binary(max_size=120),
    ),
)


@fuzz_settings(1000)
@given(st.lists(st.tuples(chunks, st.booleans()), max_size=30), st.booleans())
def test_random_byte_streams_never_raise_in_authenticated_mode(
    script: list[tuple[bytes, bool]], window: bool
) -> None:
    fw, _ = make_lock(event_buffer=16)
    if window:
        fw.press_pair_button()
    parser = FrameParser()
    for data, seal_it in script:
        for parsed in parser.feed(data):
            # the agent's key on random content: the handlers behind the check see garbage too
            frame = sealed(fw, parsed.type, parsed.payload, parsed.seq) if seal_it else parsed
            for reply in fw.receive(frame):
                assert LockFrame.from_bytes(bytes(reply)) == reply
        fw.take_unsolicited()
    view = fw.view()
    assert all(slot < fw.slot_count for slot in fw.slots)
    assert view.events_pending <= 16
