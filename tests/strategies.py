"""Hypothesis strategies for the protocol's wire types, in one place (attrs' habit)."""

from __future__ import annotations

import uuid

from hypothesis import strategies as st

from protocol.lock_wire import (
    MAC_LEN,
    MAX_EVENTS_PER_FRAME,
    MAX_PAYLOAD,
    TAG_LEN,
    FrameType,
    LockFrame,
    LockInfo,
    SlotEntry,
    WireEvent,
)
from protocol.messages import LockEventKind

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
grant_ids = st.none() | st.uuids().map(str).filter(lambda g: uuid.UUID(g).int != 0)
short_text = st.text(max_size=8)  # 8 characters fit the 32-byte field

frames = st.builds(
    LockFrame,
    type=st.sampled_from(FrameType),
    seq=u16,
    payload=st.binary(max_size=MAX_PAYLOAD),
    key_id=u8,
    counter=u32,
    mac=st.binary(min_size=MAC_LEN, max_size=MAC_LEN),
)

infos = st.builds(
    LockInfo,
    model=short_text,
    firmware=short_text,
    slot_count=u8,
    clock=u32,
    event_head=u32,
    locked_out=st.booleans(),
    battery_pct=st.integers(0, 100),
    door_open=st.booleans(),
)

slot_entries = st.builds(
    SlotEntry,
    slot=st.integers(0, 254),
    start=u32,
    end=u32,
    grant_id=grant_ids,
    tag=st.binary(min_size=TAG_LEN, max_size=TAG_LEN),
)

wire_events = st.builds(
    WireEvent,
    seq=u32,
    ts=u32,
    kind=st.sampled_from(LockEventKind),
    slot=st.none() | st.integers(0, 254),
    grant_id=grant_ids,
    value=u16,
)

event_lists = st.lists(wire_events, max_size=MAX_EVENTS_PER_FRAME)
