"""Hypothesis strategies for the protocol's wire types, in one place (attrs' habit)."""

from __future__ import annotations

import uuid

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import strategies as st

from edge.clinic.staff_access import PinHash
from protocol import display_wire as dw
from protocol import firmware_image as fi
from protocol import framing
from protocol import mqtt5 as mw
from protocol.framing import MAC_LEN, MAX_PAYLOAD
from protocol.lock_wire import (
    MAX_EVENTS_PER_FRAME,
    TAG_LEN,
    FrameType,
    LockFrame,
    LockInfo,
    SlotEntry,
    WireEvent,
)
from protocol.messages import LockEventKind
from protocol.patient_card import PatientCardNumber

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
    boot=u32,
)

event_lists = st.lists(wire_events, max_size=MAX_EVENTS_PER_FRAME)


# ------------------------------------------------------------------ clinic display

tickets = st.from_regex(dw.TICKET_RE, fullmatch=True)
# printable text (Japanese included) that fits a byte bound
printable = st.characters(categories=["L", "N", "P", "S", "Zs"])
room_labels = st.text(printable, min_size=1, max_size=5).filter(
    lambda r: len(r.encode()) <= dw.ROOM_MAX_BYTES and r.isprintable()
)
announcement_text = st.text(printable, max_size=80).filter(
    lambda t: len(t.encode()) <= dw.ANNOUNCEMENT_MAX_BYTES and t.isprintable()
)
names = st.text(printable, max_size=12).filter(
    lambda t: len(t.encode()) <= dw.TEXT_MAX_BYTES and t.isprintable()
)

display_frames = st.builds(
    dw.DisplayFrame,
    type=st.sampled_from(dw.DisplayFrameType),
    seq=u16,
    payload=st.binary(max_size=framing.MAX_PAYLOAD),
    key_id=u8,
    counter=u32,
    mac=st.binary(min_size=framing.MAC_LEN, max_size=framing.MAC_LEN),
)

room_calls = st.builds(dw.RoomCall, room=room_labels, number=tickets, call_seq=u16)

calls = st.builds(
    dw.Calls,
    rooms=st.lists(room_calls, max_size=dw.MAX_ROOMS, unique_by=lambda c: c.room).map(tuple),
    next_numbers=st.lists(tickets, max_size=dw.MAX_NEXT).map(tuple),
)

announcements = st.builds(
    dw.Announcement,
    text=announcement_text,
    level=st.sampled_from(dw.AnnouncementLevel),
    expires_at=u32,
)

standby_schedules = st.builds(
    dw.StandbySchedule,
    on_minute=st.integers(0, dw.MINUTES_PER_DAY - 1),
    off_minute=st.integers(0, dw.MINUTES_PER_DAY - 1),
    utc_offset_min=st.integers(-720, 840),
)

display_states = st.builds(
    dw.DisplayState,
    version=u32,
    calls=calls,
    announcement=announcements,
    brightness=st.integers(0, 100),
    chime_volume=st.integers(0, 100),
    standby=standby_schedules,
    time=u32,
)

display_statuses = st.builds(
    dw.DisplayStatus,
    model=names,
    firmware=names,
    state_version=u32,
    clock=u32,
    boot_count=u32,
    brightness=st.integers(0, 100),
    has_state=st.booleans(),
    standby=st.booleans(),
    provisioned=st.booleans(),
    bad_frames=u32,
)

hellos = st.builds(
    dw.Hello,
    model=names,
    firmware=names,
    boot_count=u32,
    reason=st.sampled_from(dw.BootReason),
)


# ------------------------------------------------------------------ patient card

patient_cards = st.builds(
    PatientCardNumber.issue,
    facility=st.integers(0, 99),
    serial=st.integers(0, 10**11 - 1),
    network=st.from_regex(r"[0-9]{2}", fullmatch=True),
)


# ------------------------------------------------------------------ firmware images

firmware_versions = st.builds(fi.FirmwareVersion, major=u16, minor=u16, patch=u16)
# a fixed release key, so that examples shrink and replay
TEST_RELEASE_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
image_models = st.text(printable, min_size=1, max_size=10).filter(
    lambda m: 1 <= len(m.encode()) <= fi.MODEL_MAX_BYTES and m.isprintable()
)
firmware_images = st.builds(
    lambda kind, model, version, payload: fi.build_image(
        TEST_RELEASE_KEY, kind=kind, model=model, version=version, payload=payload
    ),
    st.sampled_from(fi.DeviceKind),
    image_models,
    firmware_versions,
    st.binary(max_size=3000),
)


# ------------------------------------------------------------------ MQTT 5 (protocol.mqtt5)

mqtt_strings = st.text(
    st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=40
)
mqtt_packet_ids = st.integers(1, 0xFFFF)
# a few properties of each wire type: a reason string, user properties, a message expiry
mqtt_properties = st.lists(
    st.one_of(
        st.tuples(st.just(int(mw.Prop.REASON_STRING)), mqtt_strings),
        st.tuples(st.just(int(mw.Prop.USER_PROPERTY)), st.tuples(mqtt_strings, mqtt_strings)),
        st.tuples(st.just(0x02), u32),  # message expiry interval
        st.tuples(st.just(0x01), st.integers(0, 1)),  # payload format indicator
    ),
    max_size=3,
).map(tuple)
mqtt_subscriptions = st.builds(
    mw.Subscription,
    topic_filter=mqtt_strings,
    qos=st.integers(0, 2),
    no_local=st.booleans(),
    retain_as_published=st.booleans(),
    retain_handling=st.sampled_from(mw.RetainHandling),
)
# what gateways send and the cloud's fast path decodes: QoS 0 or 1, no properties
mqtt_plain_publishes = st.one_of(
    st.builds(
        mw.Publish,
        topic=mqtt_strings,
        payload=st.binary(max_size=300),
        qos=st.just(0),
        retain=st.booleans(),
        dup=st.booleans(),
    ),
    st.builds(
        mw.Publish,
        topic=mqtt_strings,
        payload=st.binary(max_size=300),
        qos=st.just(1),
        retain=st.booleans(),
        packet_id=mqtt_packet_ids,
        dup=st.booleans(),
    ),
)
mqtt_publishes = mqtt_plain_publishes | st.builds(
    mw.Publish,
    topic=mqtt_strings,
    payload=st.binary(max_size=300),
    qos=st.just(1),
    retain=st.booleans(),
    packet_id=mqtt_packet_ids,
    dup=st.booleans(),
    properties=mqtt_properties,
)
mqtt_packets = st.one_of(
    st.builds(
        mw.Connect,
        client_id=mqtt_strings,
        keepalive=u16,
        clean_start=st.booleans(),
        session_expiry_s=u32,
        receive_maximum=st.none() | st.integers(1, 0xFFFF),
        will=st.none()
        | st.builds(
            mw.Will,
            topic=mqtt_strings,
            payload=st.binary(max_size=200),
            qos=st.integers(0, 1),
            retain=st.booleans(),
        ),
    ),
    st.builds(
        mw.ConnAck,
        session_present=st.booleans(),
        reason_code=u8,
        properties=st.lists(
            st.one_of(
                st.tuples(st.just(int(mw.Prop.RECEIVE_MAXIMUM)), st.integers(1, 0xFFFF)),
                st.tuples(st.just(int(mw.Prop.SERVER_KEEP_ALIVE)), u16),
                st.tuples(st.just(int(mw.Prop.MAXIMUM_QOS)), st.integers(0, 1)),
                st.tuples(st.just(int(mw.Prop.REASON_STRING)), mqtt_strings),
            ),
            max_size=2,
        ).map(tuple),
    ),
    mqtt_publishes,
    st.builds(mw.PubAck, packet_id=mqtt_packet_ids, reason_code=u8, properties=mqtt_properties),
    st.builds(
        mw.Subscribe,
        packet_id=mqtt_packet_ids,
        filters=st.lists(mqtt_subscriptions, min_size=1, max_size=4).map(tuple),
    ),
    st.builds(
        mw.SubAck,
        packet_id=mqtt_packet_ids,
        reason_codes=st.lists(u8, max_size=4).map(tuple),
        properties=mqtt_properties,
    ),
    st.just(mw.PingReq()),
    st.just(mw.PingResp()),
    st.builds(mw.Disconnect, reason_code=u8, properties=mqtt_properties),
)

# the staff PIN's hash as the site config keeps it (any parameters the parser accepts)
pin_hashes = st.builds(
    PinHash,
    ln=st.integers(10, 20),
    r=st.integers(1, 16),
    p=st.integers(1, 4),
    salt=st.binary(min_size=16, max_size=32),
    digest=st.binary(min_size=32, max_size=32),
)

# the clinic check-in window (protocol.checkin_window): a day around 09:00 Tokyo, to the
# second or finer, so boundaries and equal times come up often
_NINE = 1_799_971_200
_CLINIC_DAY = st.integers(_NINE - 12 * 3600, _NINE + 12 * 3600)
clinic_moments = _CLINIC_DAY | st.floats(
    _NINE - 12 * 3600, _NINE + 12 * 3600, allow_nan=False, allow_infinity=False
)
appointment_times = st.lists(
    st.sampled_from([_NINE, _NINE + 1800, _NINE + 3600]) | _CLINIC_DAY, max_size=6
)
checkin_opens_before = st.sampled_from([0, 1800, 5400]) | st.integers(0, 3 * 3600)
