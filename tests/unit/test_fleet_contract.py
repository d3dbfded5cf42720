"""The fleet's part of the contract, without I/O: command and config messages, telemetry
that older peers still read, opening hours, and the lock's authenticated remote unlock."""

from __future__ import annotations

import base64
import json
import logging
from datetime import datetime, timedelta, timezone

import pytest

from edge.log_ring import LogRing
from firmware_sim.lock.states import DoorLock
from protocol import messages, topics
from protocol.errors import MessageError
from protocol.lock_wire import FrameType, LockFrame, NackCode, decode_unlock_ack
from protocol.messages import (
    FIRMWARE_IMAGE_MAX,
    AgentConfigData,
    CommandReplyData,
    CommandStatus,
    CommandVerb,
    FirmwareUpdateArgs,
    LockEventKind,
    LockTelemetry,
    MessageType,
    OpeningHours,
    TelemetryData,
    UnlockArgs,
)
from tests.unit.test_lock_firmware_support import events, make_lock, nack_of, request, send

JST = timezone(timedelta(hours=9))


def at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=JST).timestamp()


def test_a_gateway_subscribes_to_its_own_commands() -> None:
    assert topics.request_subscription("gym-a", "gw-1") == "denen/v1/gym-a/gw-1/req/+"
    assert topics.config("gym-a", "gw-1") == "denen/v1/gym-a/gw-1/config"


def test_telemetry_without_the_new_fields_reads_as_before() -> None:
    old_shape = {"uptime_s": 1.0, "outbox_depth": 0, "frames_dropped": 0, "time_trusted": True}
    lock = {"lock_id": "gym-a-1", "reachable": True}
    data = TelemetryData(**old_shape, locks=[LockTelemetry(**lock)])
    wire = data.model_dump(mode="json")
    # what a peer that forbids unknown fields expects: nothing added while at defaults
    assert set(wire) == {*old_shape, "locks"}
    assert "firmware" not in wire["locks"][0]
    assert "rssi_dbm" not in wire["locks"][0]
    richer = data.model_copy(update={"config_version": 4, "outbox_oldest_age_s": 2.5})
    assert richer.model_dump(mode="json")["config_version"] == 4


def test_a_command_reply_round_trips() -> None:
    reply = CommandReplyData(
        transaction="tx-1", status=CommandStatus.EXPIRED, error="received 3 s after it expired"
    )
    env, data = messages.parse(messages.make(MessageType.COMMAND_REPLY, reply, ts=1))
    assert env.type is MessageType.COMMAND_REPLY
    assert data == reply


@pytest.mark.parametrize(
    ("verb", "data", "reason"),
    [
        ("reboot-city", {}, "unknown verb 'reboot-city'"),
        ("unlock", {"lock_id": "gym-a-1"}, "invalid unlock arguments: reason: Field required"),
        ("logs", {"lines": 0}, "lines: Input should be greater than or equal to 1"),
        ("force-sync", {"lock": "x"}, "lock: Extra inputs are not permitted"),
    ],
)
def test_command_arguments_say_what_is_wrong(
    verb: str, data: dict[str, object], reason: str
) -> None:
    with pytest.raises(MessageError, match=reason):
        messages.command_args(verb, data)


def test_command_arguments_never_echo_values() -> None:
    with pytest.raises(MessageError) as info:
        messages.command_args(
            "unlock", {"lock_id": "NOT A SLUG 4829", "reason": "r", "requested_by": "o"}
        )
    assert "4829" not in str(info.value)


def test_every_verb_has_arguments_and_results() -> None:
    assert set(messages.COMMAND_ARGS) == set(CommandVerb) == set(messages.COMMAND_RESULTS)
    verb, args = messages.command_args(
        "unlock", {"lock_id": "gym-a-1", "reason": "r", "requested_by": "o"}
    )
    assert verb is CommandVerb.UNLOCK
    assert isinstance(args, UnlockArgs)


def test_a_firmware_update_names_one_device_and_carries_at_most_one_mebibyte() -> None:
    image = base64.b64encode(b"DNFW" + bytes(60)).decode()
    assert FirmwareUpdateArgs(lock_id="gym-a-1", image=image).image_bytes()[:4] == b"DNFW"
    with pytest.raises(ValueError, match="exactly one"):
        FirmwareUpdateArgs(lock_id="gym-a-1", display_id="d-1", image=image)
    with pytest.raises(ValueError, match="exactly one"):
        FirmwareUpdateArgs(image=image)
    with pytest.raises(ValueError, match="not base64"):
        FirmwareUpdateArgs(lock_id="gym-a-1", image="@@@@")
    too_big = base64.b64encode(bytes(FIRMWARE_IMAGE_MAX + 1)).decode()
    with pytest.raises(ValueError, match="larger than"):
        FirmwareUpdateArgs(lock_id="gym-a-1", image=too_big)


@pytest.mark.parametrize(
    ("when", "is_open"),
    [
        ("2027-06-01T08:29", False),  # a Tuesday
        ("2027-06-01T08:30", True),
        ("2027-06-01T17:59", True),
        ("2027-06-01T18:00", False),
        ("2027-06-05T10:00", False),  # Saturday: closed
    ],
)
def test_clinic_hours(when: str, is_open: bool) -> None:
    weekdays = OpeningHours(open_minute=8 * 60 + 30, close_minute=18 * 60, weekdays=[0, 1, 2, 3, 4])
    assert weekdays.is_open(at(when)) is is_open


def test_hours_past_midnight_belong_to_the_day_they_opened() -> None:
    friday_night = OpeningHours(open_minute=22 * 60, close_minute=2 * 60, weekdays=[4])
    assert friday_night.is_open(at("2027-06-04T23:00"))  # Friday
    assert friday_night.is_open(at("2027-06-05T01:30"))  # Saturday, small hours
    assert not friday_night.is_open(at("2027-06-05T23:00"))
    assert not friday_night.is_open(at("2027-06-04T01:30"))  # Thursday's night


def test_a_config_twin_is_versioned_and_strict() -> None:
    config = AgentConfigData(version=2, telemetry_interval_s=30)
    _, data = messages.parse(messages.make(MessageType.AGENT_CONFIG, config, ts=1))
    assert data == config
    raw = json.loads(messages.make(MessageType.AGENT_CONFIG, config, ts=1))
    raw["data"]["surprise"] = 1
    with pytest.raises(MessageError, match="surprise: Extra inputs"):
        messages.parse(json.dumps(raw))


# ------------------------------------------------------------------ the lock's UNLOCK


def test_an_authenticated_unlock_opens_the_bolt_and_is_logged() -> None:
    fw, clock = make_lock(auto_lock_s=5)
    reply = request(fw, FrameType.UNLOCK)
    assert reply.type is FrameType.ACK
    seq, boot = decode_unlock_ack(reply.payload)
    assert fw.state is DoorLock.UNLOCKED_CLOSED
    (event,) = [e for e in events(fw) if e.kind is LockEventKind.REMOTE_UNLOCKED]
    assert (event.seq, event.boot) == (seq, boot)
    assert boot != 0
    assert (event.slot, event.grant_id) == (None, None)
    assert fw.open_door()
    fw.close_door()
    clock.advance(6)
    fw.tick()
    assert fw.view().locked  # it relocks itself, as after a PIN


def test_an_unauthenticated_unlock_is_refused() -> None:
    fw, _ = make_lock()
    reply = send(fw, LockFrame(FrameType.UNLOCK, 3))
    assert nack_of(reply)[0] == NackCode.AUTH_FAILED
    assert fw.state is DoorLock.LOCKED_CLOSED


def test_unlock_takes_no_payload() -> None:
    fw, _ = make_lock()
    assert nack_of(request(fw, FrameType.UNLOCK, b"\x01"))[0] == NackCode.BAD_REQUEST
    assert fw.state is DoorLock.LOCKED_CLOSED


# ------------------------------------------------------------------ the log ring


def test_the_log_ring_keeps_the_newest_lines_and_masks_long_digit_runs() -> None:
    ring = LogRing(capacity=3)
    logger = logging.getLogger("edge.test-ring")
    logger.addHandler(ring)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        for i in range(5):
            logger.info("line %d", i)
        logger.info("card 4980123456789012 read; trace 0193a1b2-0000-7000-8000-123456789012")
    finally:
        logger.removeHandler(ring)
    lines = [json.loads(line) for line in ring.tail(10)]
    assert [line["msg"] for line in lines[:2]] == ["line 3", "line 4"]
    assert lines[2]["msg"] == (
        "card ################ read; trace 0193a1b2-0000-7000-8000-123456789012"
    )
    assert len(ring.tail(1)) == 1
