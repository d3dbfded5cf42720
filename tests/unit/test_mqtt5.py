"""The MQTT 5 codec (:mod:`protocol.mqtt5`): every packet round-trips, the push parser takes
any chunking, and malformed input is the peer's error."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol import mqtt5 as mw
from tests.strategies import mqtt_packets


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
