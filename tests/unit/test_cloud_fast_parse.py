"""The bridge's fast path for lock events accepts exactly what protocol.messages.parse
accepts, with the same data, and leaves every refusal to parse's own words."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from cloud.mqtt_bridge import parse_payload
from protocol import messages
from protocol.errors import MessageError
from protocol.messages import LockEventData, LockEventKind, MessageType
from protocol.topics import Channel
from tests.fuzzing import fuzz_settings

events = st.builds(
    LockEventData,
    lock_id=st.from_regex(r"[a-z0-9-]{1,40}", fullmatch=True),
    seq=st.integers(0, 2**32 - 1),
    lock_ts=st.integers(0, 2**32 - 1),
    kind=st.sampled_from(LockEventKind),
    slot=st.none() | st.integers(0, 254),
    grant_id=st.none() | st.uuids().map(str),
    value=st.none() | st.integers(-(2**15), 2**16),
)
scalars = (
    st.none() | st.booleans() | st.integers() | st.text(max_size=12) | st.floats(allow_nan=False)
)


def _both(payload: bytes) -> tuple[object, object]:
    def slow() -> object:
        try:
            env, data = messages.parse(payload)
        except MessageError as exc:
            return ("error", str(exc))
        return (env.type, data)

    def fast() -> object:
        try:
            return parse_payload(Channel.EVENTS, payload)
        except MessageError as exc:
            return ("error", str(exc))

    return slow(), fast()


@fuzz_settings(500)
@given(events, st.sampled_from(["v", "type", "id", "ts", "data", None]), scalars)
def test_fast_and_slow_parse_agree(event: LockEventData, field: str | None, value: object) -> None:
    raw = json.loads(messages.make(MessageType.LOCK_EVENT, event, ts=1_800_000_000))
    if field is not None:
        raw[field] = value  # sometimes valid, mostly not
    slow, fast = _both(json.dumps(raw).encode())
    assert fast == slow


@fuzz_settings(300)
@given(events, st.sampled_from(["lock_id", "seq", "lock_ts", "kind", "slot", "extra"]), scalars)
def test_fast_and_slow_parse_agree_on_bad_data(
    event: LockEventData, field: str, value: object
) -> None:
    raw = json.loads(messages.make(MessageType.LOCK_EVENT, event, ts=1_800_000_000))
    raw["data"][field] = value
    slow, fast = _both(json.dumps(raw).encode())
    assert fast == slow
