"""Firmware updates of the sans-IO lock and display, driven by the agent-side updater:
a good image is installed and reported, every bad one is refused with its reason while the
old version keeps running, and what a device keeps in flash survives the reboot."""

from __future__ import annotations

from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from firmware_sim.display.firmware import DisplayFirmware
from firmware_sim.lock import LockFirmware
from protocol import display_wire as dw
from protocol import firmware_image as fi
from protocol import firmware_transfer as ft
from protocol.clock import ManualClock
from protocol.errors import LocalProtocolError
from protocol.firmware_updater import (
    FirmwareUpdater,
    UpdateRefusedError,
    UpdateResult,
    UpdateStep,
    display_updater,
    lock_updater,
)
from protocol.lock_wire import FrameType, LockFrame, LockInfo, NackCode
from protocol.messages import LockEventKind as K
from tests import strategies as s
from tests.unit.test_lock_firmware_support import (
    T0,
    events,
    make_lock,
    nack_of,
    ready_lock,
    request,
    send,
    type_keys,
)

RELEASE = s.TEST_RELEASE_KEY
LOCK_MODEL = "RL-2000"
PAYLOAD = bytes(range(256)) * 12  # 3,072 bytes: three full chunks and a short one
F = dw.DisplayFrameType


def lock_image(
    version: str = "1.4.2",
    *,
    kind: fi.DeviceKind = fi.DeviceKind.LOCK,
    model: str = LOCK_MODEL,
    payload: bytes = PAYLOAD,
    key: Ed25519PrivateKey = RELEASE,
) -> fi.FirmwareImage:
    return fi.build_image(key, kind=kind, model=model, version=version, payload=payload)


def updatable_lock(**kw: Any) -> tuple[LockFirmware, ManualClock]:
    """A ready lock (PIN 482913 in slot 0) running 1.4.1 that trusts the test release key."""
    args = {"model": LOCK_MODEL, "firmware": "1.4.1", "release_keys": [RELEASE.public_key()]}
    return ready_lock(**(args | kw))


def update_lock(fw: LockFirmware, image: fi.FirmwareImage, chunk_size: int = 1000) -> UpdateResult:
    updater = lock_updater(image, chunk_size=chunk_size)
    while (step := updater.next_request()) is not None:
        updater.receive(request(fw, step.type, step.payload))
    assert updater.result is not None
    return updater.result


def refused(fw: LockFirmware, image: fi.FirmwareImage) -> UpdateRefusedError:
    with pytest.raises(UpdateRefusedError) as info:
        update_lock(fw, image)
    assert fw.firmware == "1.4.1"  # the old version keeps running
    assert LockInfo.decode(request(fw, FrameType.GET_INFO).payload).firmware == "1.4.1"
    return info.value


def info(fw: LockFirmware) -> LockInfo:
    return LockInfo.decode(request(fw, FrameType.GET_INFO).payload)


# ------------------------------------------------------------------------ the lock


def test_a_good_image_is_installed_and_the_lock_reports_its_version() -> None:
    fw, _ = updatable_lock()

    result = update_lock(fw, lock_image())

    assert result == UpdateResult(
        "1.4.2", installed=True, previous="1.4.1", payload_bytes_sent=3072
    )
    assert info(fw).firmware == "1.4.2"


def test_pins_keys_and_events_survive_the_update() -> None:
    fw, _ = updatable_lock()
    type_keys(fw, "000000#")  # a wrong PIN before the update: its event is not yet read
    head = fw.events.head

    update_lock(fw, lock_image())

    type_keys(fw, "482913#")
    assert not fw.view().locked  # the slot and the PIN key came through
    log = events(fw)  # the link key and counters too: this request is authenticated
    assert [e.kind for e in log][:2] == [K.DENIED_WRONG_PIN, K.UNLOCKED]
    assert log[0].seq == head
    assert info(fw).clock == T0  # the clock runs on (a battery-backed RTC)


def test_the_rebooted_lock_wakes_the_gateway() -> None:
    fw, _ = updatable_lock()
    update_lock(fw, lock_image())
    (wake,) = fw.take_unsolicited()
    assert wake.type is FrameType.WAKE


def test_running_the_same_rollout_again_changes_nothing() -> None:
    fw, _ = updatable_lock()
    update_lock(fw, lock_image())
    again = update_lock(fw, lock_image())
    assert again == UpdateResult("1.4.2", installed=False, previous="1.4.2", payload_bytes_sent=0)


def test_an_unlocked_or_open_door_refuses_the_update() -> None:
    fw, clock = updatable_lock()
    type_keys(fw, "482913#")  # unlocked
    err = refused(fw, lock_image())
    assert (err.step, err.code) == (UpdateStep.BEGIN, NackCode.DOOR_IN_USE)
    assert "locked and closed" in err.message

    clock.advance(10)
    fw.tick()  # relocked
    fw.open_door(from_inside=True)  # locked, but open: still no
    assert refused(fw, lock_image()).code == NackCode.DOOR_IN_USE
    fw.close_door()
    assert update_lock(fw, lock_image()).installed


def test_a_commit_while_the_door_is_in_use_waits_and_can_be_repeated() -> None:
    fw, clock = updatable_lock()
    image = lock_image()
    updater = lock_updater(image)
    step = updater.next_request()
    while step is not None and step.step is not UpdateStep.COMMIT:
        updater.receive(request(fw, step.type, step.payload))
        step = updater.next_request()
    assert step is not None
    type_keys(fw, "482913#")  # someone comes in just before the commit

    assert nack_of(request(fw, step.type, step.payload))[0] == NackCode.DOOR_IN_USE
    assert fw.firmware == "1.4.1"

    clock.advance(10)  # auto-lock
    updater.receive(request(fw, step.type, step.payload))  # the same COMMIT, later
    assert fw.firmware == "1.4.2"


def test_an_image_with_a_forged_signature_is_refused_at_commit() -> None:
    fw, _ = updatable_lock()
    good = lock_image()
    forged = fi.FirmwareImage(good.header, good.payload, bytes(64))
    err = refused(fw, forged)
    assert (err.step, err.code) == (UpdateStep.COMMIT, NackCode.BAD_SIGNATURE)


def test_an_image_signed_by_an_untrusted_key_is_refused_before_its_payload() -> None:
    fw, _ = updatable_lock()
    err = refused(fw, lock_image("9.0.0", key=Ed25519PrivateKey.generate()))
    assert (err.step, err.code) == (UpdateStep.BEGIN, NackCode.BAD_SIGNATURE)


def test_a_lock_without_a_release_key_refuses_every_update() -> None:
    fw, _ = updatable_lock(release_keys=())
    err = refused(fw, lock_image())
    assert err.code == NackCode.BAD_SIGNATURE
    assert "trusts no release key" in err.message


@pytest.mark.parametrize(
    ("image", "code"),
    [
        (lock_image(model="RL-3000"), NackCode.WRONG_DEVICE),
        (lock_image(kind=fi.DeviceKind.DISPLAY), NackCode.WRONG_DEVICE),
        (lock_image("1.4.0"), NackCode.NOT_NEWER),
        (lock_image("1.4.1"), NackCode.NOT_NEWER),
    ],
    ids=["other-model", "display-image", "downgrade", "same-version"],
)
def test_an_image_for_another_device_or_an_older_version_is_refused(
    image: fi.FirmwareImage, code: NackCode
) -> None:
    fw, _ = updatable_lock()
    begin = request(fw, FrameType.UPDATE_BEGIN, image.head)
    assert nack_of(begin)[0] == code
    assert fw.firmware == "1.4.1"


def test_an_image_larger_than_the_flash_slot_is_refused() -> None:
    fw, _ = updatable_lock(update_capacity=1024)
    assert refused(fw, lock_image()).code == NackCode.BAD_IMAGE


def test_a_corrupted_chunk_fails_the_hash_and_the_transfer_is_dropped() -> None:
    fw, _ = updatable_lock()
    good = lock_image()
    corrupted = fi.FirmwareImage(
        good.header, PAYLOAD[:2000] + b"\x00" + PAYLOAD[2001:], good.signature
    )
    err = refused(fw, corrupted)
    assert (err.step, err.code) == (UpdateStep.COMMIT, NackCode.HASH_MISMATCH)
    commit = request(fw, FrameType.UPDATE_COMMIT, ft.encode_commit(good.header.sha256))
    assert nack_of(commit)[0] == NackCode.UPDATE_SEQUENCE  # nothing left to commit


def test_a_truncated_transfer_leaves_the_old_version_and_a_new_begin_starts_over() -> None:
    fw, _ = updatable_lock()
    image = lock_image()
    request(fw, FrameType.UPDATE_BEGIN, image.head)
    request(fw, FrameType.UPDATE_CHUNK, ft.encode_chunk(0, PAYLOAD[:1000]))

    code, message = nack_of(
        request(fw, FrameType.UPDATE_COMMIT, ft.encode_commit(image.header.sha256))
    )

    assert (code, message) == (
        NackCode.UPDATE_SEQUENCE,
        "1000 of 3072 payload bytes received: send the rest",
    )
    assert info(fw).firmware == "1.4.1"
    type_keys(fw, "482913#")  # the old firmware still opens the door
    assert not fw.view().locked


def test_a_new_begin_after_an_interrupted_transfer_installs_cleanly() -> None:
    fw, _ = updatable_lock()
    image = lock_image()
    request(fw, FrameType.UPDATE_BEGIN, image.head)
    request(fw, FrameType.UPDATE_CHUNK, ft.encode_chunk(0, b"garbage from an older attempt"))
    assert update_lock(fw, image).installed
    assert fw.firmware == "1.4.2"


def test_chunks_repeated_after_a_lost_ack_are_taken_and_gaps_are_not() -> None:
    fw, _ = updatable_lock()
    image = lock_image()
    request(fw, FrameType.UPDATE_BEGIN, image.head)
    first = ft.encode_chunk(0, PAYLOAD[:1000])
    assert ft.decode_progress(request(fw, FrameType.UPDATE_CHUNK, first).payload) == (1000, 3072)
    # the agent's channel retries on silence: the same chunk again is acknowledged again
    assert ft.decode_progress(request(fw, FrameType.UPDATE_CHUNK, first).payload) == (1000, 3072)
    gap = request(fw, FrameType.UPDATE_CHUNK, ft.encode_chunk(2000, PAYLOAD[2000:3000]))
    assert nack_of(gap) == (
        NackCode.UPDATE_SEQUENCE,
        "chunk at 2000 leaves a gap: the next byte expected is 1000",
    )
    other = request(fw, FrameType.UPDATE_CHUNK, ft.encode_chunk(0, b"\x01" * 10))
    assert nack_of(other)[0] == NackCode.UPDATE_SEQUENCE  # not the bytes it holds
    request(fw, FrameType.UPDATE_BEGIN, lock_image(payload=b"abc").head)
    past = request(fw, FrameType.UPDATE_CHUNK, ft.encode_chunk(0, b"abcd"))
    assert nack_of(past) == (NackCode.UPDATE_SEQUENCE, "chunk ends at 4, past the 3-byte payload")
    assert fw.firmware == "1.4.1"


def test_a_repeated_commit_after_a_lost_ack_is_acknowledged_again() -> None:
    fw, _ = updatable_lock()
    image = lock_image()
    update_lock(fw, image)
    again = request(fw, FrameType.UPDATE_COMMIT, ft.encode_commit(image.header.sha256))
    assert again.type is FrameType.UPDATE_ACK
    assert ft.decode_progress(again.payload) == (3072, 3072)


def test_update_frames_without_the_link_key_are_refused() -> None:
    fw, _ = updatable_lock()
    reply = send(fw, LockFrame(FrameType.UPDATE_BEGIN, 3, lock_image().head))
    assert nack_of(reply)[0] == NackCode.AUTH_FAILED


def test_a_lock_must_know_its_own_version() -> None:
    with pytest.raises(ValueError, match="does not end in a version"):
        make_lock(firmware="latest")


def test_an_updater_refuses_an_image_for_the_other_kind_of_device() -> None:
    with pytest.raises(LocalProtocolError):
        lock_updater(lock_image(kind=fi.DeviceKind.DISPLAY))


# ---------------------------------------------------------------------- the display

DISPLAY_MODEL = "denen-sim-display"
STATE = dw.DisplayState(
    7,
    dw.Calls((dw.RoomCall("1", "A-021", 3), dw.RoomCall("2", "B-005", 1)), ("A-022",)),
    dw.Announcement("本日は混雑しています"),
    brightness=70,
    time=T0,
)


class DisplayAgent:
    """Sends unauthenticated frames to a display, as the agent does for one without a key."""

    def __init__(self, fw: DisplayFirmware) -> None:
        self.fw = fw
        self.seq = 0

    def send(self, ftype: F, payload: bytes = b"") -> dw.DisplayFrame:
        self.seq += 1
        (reply,) = self.fw.receive(dw.DisplayFrame(ftype, self.seq, payload))
        return reply

    def update(self, updater: FirmwareUpdater[F]) -> UpdateResult:
        while (step := updater.next_request()) is not None:
            updater.receive(self.send(step.type, step.payload))
        assert updater.result is not None
        return updater.result


def display_image(version: str = "0.2.0", *, model: str = DISPLAY_MODEL) -> fi.FirmwareImage:
    kind = fi.DeviceKind.DISPLAY
    return fi.build_image(RELEASE, kind=kind, model=model, version=version, payload=PAYLOAD)


def showing_display() -> tuple[DisplayFirmware, DisplayAgent]:
    fw = DisplayFirmware(ManualClock(T0), release_keys=[RELEASE.public_key()])
    agent = DisplayAgent(fw)
    fw.take_unsolicited()  # the boot HELLO
    assert agent.send(F.SHOW_STATE, STATE.encode()).type is F.ACK
    return fw, agent


def test_an_updated_display_says_hello_with_its_new_version_and_shows_the_state_again() -> None:
    fw, agent = showing_display()
    before = fw.view()

    result = agent.update(display_updater(display_image()))

    assert (result.previous, result.version, result.installed) == ("sim-0.1.0", "0.2.0", True)
    (hello,) = fw.take_unsolicited()
    assert dw.Hello.decode(hello.payload) == dw.Hello(
        DISPLAY_MODEL, "0.2.0", 2, dw.BootReason.FIRMWARE_UPDATE
    )
    assert not fw.view().has_state
    assert agent.send(F.SHOW_STATE, STATE.encode()).type is F.ACK  # what the agent does on HELLO
    after = fw.view()
    assert (after.rooms, after.next_numbers, after.announcement, after.brightness) == (
        before.rooms,
        before.next_numbers,
        before.announcement,
        before.brightness,
    )
    assert after.chime_count == before.chime_count  # restoring is not a new call


def test_a_refused_display_update_does_not_reboot_it() -> None:
    fw, agent = showing_display()
    good = display_image()
    with pytest.raises(UpdateRefusedError) as info:
        agent.update(display_updater(fi.FirmwareImage(good.header, good.payload, bytes(64))))
    assert info.value.code == dw.DisplayNackCode.BAD_SIGNATURE
    assert fw.firmware == "sim-0.1.0"
    assert fw.view().has_state
    assert fw.take_unsolicited() == []


def test_a_display_does_not_reboot_while_an_urgent_announcement_shows() -> None:
    fw, agent = showing_display()
    urgent = dw.Announcement("避難してください", dw.AnnouncementLevel.URGENT)
    assert agent.send(F.SET_ANNOUNCEMENT, urgent.encode()).type is F.ACK
    with pytest.raises(UpdateRefusedError) as info:
        agent.update(display_updater(display_image()))
    assert (info.value.step, info.value.code) == (UpdateStep.BEGIN, dw.DisplayNackCode.BUSY)
    assert fw.view().announcement == "避難してください"


def test_a_power_cut_during_a_display_transfer_needs_a_new_begin() -> None:
    fw, agent = showing_display()
    image = display_image()
    agent.send(F.UPDATE_BEGIN, image.head)
    agent.send(F.UPDATE_CHUNK, ft.encode_chunk(0, PAYLOAD[:1000]))
    fw.power_cycle()
    reply = agent.send(F.UPDATE_CHUNK, ft.encode_chunk(1000, PAYLOAD[1000:2000]))
    assert dw.decode_nack(reply.payload)[0] == dw.DisplayNackCode.UPDATE_SEQUENCE
    assert agent.update(display_updater(image)).installed
    assert fw.firmware == "0.2.0"


@pytest.mark.parametrize(
    ("image", "code"),
    [
        (display_image(model="other-display"), dw.DisplayNackCode.WRONG_DEVICE),
        (display_image("0.1.0"), dw.DisplayNackCode.NOT_NEWER),
    ],
    ids=["other-model", "same-version"],
)
def test_a_display_refuses_images_not_meant_for_it(image: fi.FirmwareImage, code: int) -> None:
    fw, agent = showing_display()
    reply = agent.send(F.UPDATE_BEGIN, image.head)
    assert dw.decode_nack(reply.payload)[0] == code
    assert fw.firmware == "sim-0.1.0"


UPDATE_TYPES = (FrameType.UPDATE_BEGIN, FrameType.UPDATE_CHUNK, FrameType.UPDATE_COMMIT)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(
            st.sampled_from(UPDATE_TYPES),
            st.one_of(
                st.binary(max_size=200),
                st.just(lock_image().head),
                st.binary(max_size=40).map(lambda b: ft.encode_chunk(0, PAYLOAD[:100]) + b),
            ),
        ),
        max_size=8,
    )
)
def test_random_update_frames_are_answered_and_never_install_anything(
    frames: list[tuple[FrameType, bytes]],
) -> None:
    fw, _ = updatable_lock()
    for ftype, payload in frames:
        reply = request(fw, ftype, payload)
        assert reply.type in (FrameType.UPDATE_ACK, FrameType.NACK)
    assert fw.firmware == "1.4.1"
