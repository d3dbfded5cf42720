"""The MQTT contract: topics build and parse back; payloads validate and say what is wrong."""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol import messages, topics
from protocol.errors import MessageError, TopicError
from protocol.messages import (
    AccessAppliedData,
    AccessGrantEntry,
    AccessSnapshotData,
    LockAccess,
    LockEventData,
    LockEventKind,
    LockTelemetry,
    MessageType,
    RevokedOffline,
    TelemetryData,
)

slugs = st.from_regex(r"[a-z0-9-]{1,40}", fullmatch=True)


@given(
    slugs,
    slugs,
    st.sampled_from(
        [
            c
            for c in topics.Channel
            if c
            not in (topics.Channel.REQUEST, topics.Channel.RESPONSE, topics.Channel.CERT_IN_USE)
        ]
    ),
)
def test_gateway_topics_round_trip(site: str, gw: str, channel: topics.Channel) -> None:
    topic = topics.gateway_topic(site, gw, channel)
    assert topics.parse(topic) == topics.GatewayTopic(site, gw, channel)


def test_request_topics_carry_a_verb() -> None:
    t = topics.request("gym-a", "gw-1", "force-sync")
    assert t == "denen/v1/gym-a/gw-1/req/force-sync"
    assert topics.parse(t).verb == "force-sync"


def test_certificate_topics() -> None:
    assert topics.parse(topics.cert_renew("gym-a", "gw-1")).channel is topics.Channel.CERT_RENEW
    assert topics.parse(topics.cert("gym-a", "gw-1")).channel is topics.Channel.CERT
    in_use = topics.parse("denen/v1/gym-a/gw-1/cert/in-use/0123abcd")
    assert (in_use.channel, in_use.verb) == (topics.Channel.CERT_IN_USE, "0123abcd")
    with pytest.raises(TopicError):
        topics.parse("denen/v1/gym-a/gw-1/cert/in-use")
    assert topics.cloud_subscription(topics.Channel.CERT_IN_USE, shared=False) == (
        "denen/v1/+/+/cert/in-use/+"
    )


@pytest.mark.parametrize(
    "bad",
    [
        "denen/v2/a/b/events",
        "denen/v1/A/b/events",
        "denen/v1/a/b/nonsense",
        "denen/v1/a/b/req",
        "denen/v1/a/b/req/x/y",
        "other/topic",
        "denen/v1/" + "x" * 41 + "/b/events",
    ],
)
def test_foreign_topics_are_refused(bad: str) -> None:
    with pytest.raises(TopicError):
        topics.parse(bad)


def test_builders_refuse_non_slugs() -> None:
    with pytest.raises(TopicError, match="slug"):
        topics.events("Gym A", "gw")


def test_cloud_subscribes_shared() -> None:
    assert topics.cloud_subscription(topics.Channel.EVENTS) == "$share/cloud/denen/v1/+/+/events"


def _event(seq: int = 7) -> LockEventData:
    return LockEventData(
        lock_id="lock-1", seq=seq, lock_ts=1_800_000_000, kind=LockEventKind.UNLOCKED, slot=3
    )


def test_message_round_trip() -> None:
    raw = messages.make(MessageType.LOCK_EVENT, _event(), ts=1_800_000_000.5)
    env, data = messages.parse(raw)
    assert env.type is MessageType.LOCK_EVENT
    assert env.ts == 1_800_000_000
    assert data == _event()


def test_a_lock_event_carries_its_boot() -> None:
    raw = messages.make(MessageType.LOCK_EVENT, _event().model_copy(update={"boot": 77}), ts=1)
    _env, data = messages.parse(raw)
    assert isinstance(data, LockEventData)
    assert (data.boot, data.seq) == (77, 7)


def test_a_lock_event_from_before_boot_ids_parses_as_boot_0() -> None:
    raw = (
        b'{"v": 1, "type": "lock_event", "id": "x", "ts": 1, "data": {"lock_id": "lock-1",'
        b' "seq": 7, "lock_ts": 1800000000, "kind": "unlocked", "slot": 3}}'
    )
    _env, data = messages.parse(raw)
    assert data == _event()
    assert isinstance(data, LockEventData)
    assert data.boot == 0


def test_message_ids_are_unique_and_time_ordered() -> None:
    ids = [
        messages.parse(messages.make(MessageType.LOCK_EVENT, _event(), ts=t))[0].id
        for t in (1, 2, 3)
    ]
    assert ids == sorted(ids)
    assert len(set(ids)) == 3


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"not json", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"v": 2}', "version"),
        (b'{"v": 1, "type": "lock_event", "id": "x", "ts": 1, "data": {"lock_id": "l"}}', "seq"),
        (b'{"v": 1, "type": "bogus", "id": "x", "ts": 1, "data": {}}', "type"),
        (b"\xff\xfe", "not JSON"),
    ],
)
def test_bad_payloads_say_what_is_wrong(payload: bytes, reason: str) -> None:
    with pytest.raises(MessageError, match=reason):
        messages.parse(payload)


def test_errors_never_echo_values() -> None:
    secret = "a" * 32
    bad = {
        "v": 1,
        "type": "access_snapshot",
        "id": "x",
        "ts": 1,
        "data": {
            "version": 1,
            "locks": [
                {
                    "lock_id": "l",
                    "grants": [{"grant_id": "g", "tag": secret, "start": "x", "end": 2}],
                }
            ],
        },
    }
    with pytest.raises(MessageError) as info:
        messages.parse(json.dumps(bad))
    assert secret not in str(info.value)


@given(st.binary(max_size=500))
def test_parse_raises_only_message_errors(raw: bytes) -> None:
    with contextlib.suppress(MessageError):
        messages.parse(raw)


def test_snapshot_schema_is_exported() -> None:
    schemas = messages.json_schemas()
    assert {"envelope", "lock_event", "access_snapshot", "status"} <= set(schemas)
    assert "tag" in json.dumps(schemas["access_snapshot"])


def test_make_refuses_the_wrong_data_model() -> None:
    snap = AccessSnapshotData(
        version=1,
        locks=[
            LockAccess(
                lock_id="l", grants=[AccessGrantEntry(grant_id="g", tag="0" * 32, start=1, end=2)]
            )
        ],
    )
    with pytest.raises(TypeError):
        messages.make(MessageType.LOCK_EVENT, snap, ts=1)


def test_fields_added_after_v1_stay_off_the_wire_only_while_at_their_default() -> None:
    revoked = RevokedOffline(id="000001000100", expires_at=5)
    bare = LockAccess(lock_id="d", revoked_offline=[])  # given, but equal to the default
    assert json.loads(bare.model_dump_json()) == {"lock_id": "d", "grants": []}
    listed = LockAccess(lock_id="d", revoked_offline=[revoked])
    assert json.loads(listed.model_dump_json())["revoked_offline"] == [
        {"id": "000001000100", "expires_at": 5}
    ]
    # the same again: a serialisation never changes the default the next one compares with
    assert json.loads(LockAccess(lock_id="d").model_dump_json()) == {"lock_id": "d", "grants": []}

    lock = LockTelemetry(lock_id="d", reachable=True, battery_pct=80)
    assert set(lock.model_dump()) == {
        "lock_id",
        "reachable",
        "battery_pct",
        "clock_offset_s",
        "door_open",
        "locked_out",
        "clock_drift_s",
        "last_sync_at",
        "next_sync_at",
    }
    assert lock.model_copy(update={"rssi_dbm": -60}).model_dump()["rssi_dbm"] == -60
    health = TelemetryData(
        uptime_s=1, outbox_depth=0, frames_dropped=0, time_trusted=True, locks=[lock]
    )
    assert set(health.model_dump()) == {
        "uptime_s",
        "outbox_depth",
        "frames_dropped",
        "time_trusted",
        "locks",
    }
    richer = health.model_copy(update={"displays": [], "config_version": 2})
    assert set(richer.model_dump()) - set(health.model_dump()) == {"config_version"}
    applied = AccessAppliedData(lock_id="d", version=1, revocations=0)
    assert applied.model_dump()["revocations"] == 0  # 0 is not the default (None)
    assert "revocation_error" not in applied.model_dump()
