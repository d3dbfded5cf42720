"""The MQTT 5 codec (:mod:`protocol.mqtt5`): every packet round-trips, the push parser takes
any chunking, and malformed input is the peer's error."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol import mqtt5 as mw
from tests.strategies import mqtt_packets, mqtt_plain_publishes


@given(mqtt_packets)
def test_every_packet_round_trips(packet: mw.Packet) -> None:
    assert mw.parse_packet(bytes(packet)) == packet


@given(st.lists(mqtt_packets, max_size=8), st.data())
def test_the_parser_takes_any_chunking(packets: list[mw.Packet], data: st.DataObject) -> None:
    stream = b"".join(bytes(p) for p in packets)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    parser = mw.PacketParser()
    out: list[mw.Packet] = []
    start = 0
    for cut in [*cuts, len(stream)]:
        out += parser.feed(stream[start:cut])
        start = cut
    assert out == packets
    assert parser.buffered == 0


def test_publish_matches_the_spec_bytes() -> None:
    # MQTT 5 section 3.3: fixed header 0x33 (QoS 1, retain), topic "a/b", id 10, no props
    raw = mw.encode_publish("a/b", b"hi", qos=1, retain=True, packet_id=10)
    assert raw == b"\x33\x0a\x00\x03a/b\x00\x0a\x00hi"


def test_connect_carries_the_will_and_session_expiry() -> None:
    connect = mw.Connect(
        "site-gw", keepalive=60, session_expiry_s=3600, will=mw.Will("t/status", b"off")
    )
    raw = bytes(connect)
    assert raw[0] == 0x10
    assert b"MQTT\x05" in raw
    flags = raw[raw.index(b"MQTT\x05") + 5]
    assert flags & 0x02 == 0  # clean start off: the session survives
    assert flags & 0x04  # a will
    assert flags & 0x20  # retained
    assert (flags >> 3) & 0x03 == 1  # at QoS 1


def test_connack_tells_the_receive_maximum() -> None:
    ack = mw.parse_packet(bytes(mw.ConnAck(False, 0, ((int(mw.Prop.RECEIVE_MAXIMUM), 20),))))
    assert isinstance(ack, mw.ConnAck)
    assert ack.receive_maximum == 20
    assert mw.ConnAck(True).receive_maximum == 65_535


@pytest.mark.parametrize(
    "raw",
    [
        b"\x00\x00",  # packet type 0
        b"\x36\x05\x00\x01a\x00\x01",  # PUBLISH with QoS 3
        b"\x82\x03\x00\x01\x00",  # SUBSCRIBE without a filter
        b"\x80\x00",  # SUBSCRIBE with the wrong flags
        b"\x40\x01\x00",  # PUBACK whose packet id is cut short
        b"\x30\xff\xff\xff\xff\x01",  # remaining length of five bytes
        b"\x20\x03\x00\x00\x05",  # CONNACK whose property length runs past the packet
    ],
)
def test_malformed_input_is_the_peers_error(raw: bytes) -> None:
    with pytest.raises(mw.MqttWireError):
        mw.PacketParser().feed(raw)


def test_a_packet_larger_than_the_limit_is_refused_before_it_arrives() -> None:
    parser = mw.PacketParser(max_packet=100)
    with pytest.raises(mw.MqttWireError):
        parser.feed(b"\x30" + mw.encode_varint(101))


# ------------------------------------------------------------ the cloud's needs


def _body(raw: bytes) -> bytes:
    """What follows a packet's fixed header (type byte and remaining length)."""
    i = 1
    while raw[i] & 0x80:
        i += 1
    return raw[i + 1 :]


@given(mqtt_plain_publishes)
def test_a_plain_publish_takes_the_fast_path_and_decodes_as_the_general_one(
    packet: mw.Publish,
) -> None:
    raw = bytes(packet)
    body = bytearray(_body(raw))
    # private on purpose: the fast path must be taken, not merely agree
    fast = mw._plain_publish(raw[0], body, 0, len(body))
    if packet.topic:  # an empty topic (a topic alias) always takes the general path
        assert fast == packet
    assert mw._decode(raw[0], bytes(body)) == packet


@given(st.sampled_from([0x30, 0x31, 0x32, 0x33, 0x3A]), st.binary(max_size=40))
def test_the_fast_path_never_disagrees_with_the_general_one(first: int, body: bytes) -> None:
    fast = mw._plain_publish(first, bytearray(body), 0, len(body))
    try:
        general: mw.Packet | None = mw._decode(first, body)
    except mw.MqttWireError:
        general = None
    if fast is not None:
        assert fast == general


def test_a_publish_with_properties_keeps_them() -> None:
    packet = mw.Publish(
        "a/b", b"x", 1, packet_id=7, properties=((int(mw.Prop.REASON_STRING), "r"),)
    )
    assert mw.PacketParser().feed(bytes(packet)) == [packet]


def test_publish_at_qos_1_with_packet_id_0_is_refused() -> None:
    with pytest.raises(mw.MqttWireError):
        mw.parse_packet(b"\x32\x06\x00\x01a\x00\x00\x00")


def test_pubacks_of_a_batch_are_one_buffer_of_short_pubacks() -> None:
    assert mw.encode_pubacks([1, 0x1234]) == bytes(mw.PubAck(1)) + bytes(mw.PubAck(0x1234))
    assert mw.encode_pubacks([]) == b""


def test_a_puback_says_whether_the_broker_took_the_message() -> None:
    refused = mw.parse_packet(
        bytes(mw.PubAck(5, mw.ReasonCode.NOT_AUTHORIZED, ((int(mw.Prop.REASON_STRING), "acl"),)))
    )
    assert isinstance(refused, mw.PubAck)
    assert refused.failed
    assert refused.reason_string == "acl"
    assert not mw.PubAck(5, mw.ReasonCode.NO_MATCHING_SUBSCRIBERS).failed
    assert mw.describe_reason(0x87) == "not authorized (0x87)"
    assert mw.describe_reason(0xFE) == "unknown reason (0xfe)"


def test_subscribe_options_match_the_spec_bits() -> None:
    # section 3.8.3.1: QoS bits 0-1, No Local bit 2, Retain As Published bit 3,
    # Retain Handling bits 4-5
    sub = mw.Subscription("a/#", 1, no_local=True, retain_handling=mw.RetainHandling.SEND_IF_NEW)
    assert sub.options == 0b0001_0101
    raw = bytes(mw.Subscribe(2, (sub,)))
    assert raw == b"\x82\x09\x00\x02\x00\x00\x03a/#\x15"


@pytest.mark.parametrize("options", [0x03, 0x31, 0x41, 0x81])
def test_invalid_subscribe_options_are_the_peers_error(options: int) -> None:
    raw = b"\x82\x07\x00\x02\x00\x00\x01a" + bytes([options])
    with pytest.raises(mw.MqttWireError):
        mw.parse_packet(raw)


def test_connack_tells_the_server_keep_alive_and_maximum_qos() -> None:
    props = ((int(mw.Prop.SERVER_KEEP_ALIVE), 30), (int(mw.Prop.MAXIMUM_QOS), 0))
    ack = mw.ConnAck(False, 0, props)
    assert (ack.server_keep_alive, ack.maximum_qos) == (30, 0)
    assert (mw.ConnAck(False).server_keep_alive, mw.ConnAck(False).maximum_qos) == (None, 2)
