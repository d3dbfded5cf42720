"""The cloud's fast receiving path agrees with paho, packet for packet, and leaves to paho
whatever it does not decode itself."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st
from paho.mqtt import _packet
from paho.mqtt.client import Client as PahoClient
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from cloud.mqtt_receive import Delivery, acknowledge, plain_publish, read_fast
from protocol.mqtt5 import encode_publish


def split(packet: bytes) -> tuple[int, bytes]:
    """A packet's first byte and its body (after the remaining length)."""
    at = 1
    while packet[at] & 0x80:
        at += 1
    return packet[0], packet[at + 1 :]


def paho_decoded(header: int, body: bytes) -> Delivery:
    got = _packet.decode_publish(header, body, MQTTProtocolVersion.MQTTv5)
    assert got.properties is not None
    assert got.properties.isEmpty()
    return got.mid, got.qos, got.topic.decode(), bytes(got.payload)


@given(
    topic=st.text(st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1),
    payload=st.binary(max_size=300),
    qos=st.sampled_from([0, 1]),
    mid=st.integers(1, 65_535),
)
def test_a_plain_publish_decodes_as_paho_decodes_it(
    topic: str, payload: bytes, qos: int, mid: int
) -> None:
    header, body = split(encode_publish(topic, payload, qos=qos, packet_id=mid if qos else 0))
    assert plain_publish(header, body) == paho_decoded(header, body)


def with_properties(topic: str, payload: bytes) -> bytes:
    props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]  # paho: untyped
    props.CorrelationData = b"tx-1"
    encoded = props.pack()  # type: ignore[no-untyped-call]
    name = topic.encode()
    body = len(name).to_bytes(2, "big") + name + (7).to_bytes(2, "big") + encoded + payload
    return bytes([0x32, len(body)]) + body


def test_what_it_does_not_decode_is_left_to_paho() -> None:
    props = split(with_properties("denen/v1/a/gw/res/sync", b"{}"))
    assert plain_publish(*props) is None  # properties: paho's own path
    alias = split(encode_publish("", b"{}", qos=1, packet_id=3))
    assert plain_publish(*alias) is None  # a topic alias
    qos2 = split(encode_publish("t", b"{}", qos=1, packet_id=3))
    assert plain_publish(qos2[0] | 0x06, qos2[1]) is None  # QoS 2 (and the invalid 3)
    whole = split(encode_publish("denen/v1/a/gw/events", b"{}", qos=1, packet_id=9))
    for cut in range(len(whole[1]) - 2):  # short packets: paho says what is wrong
        assert plain_publish(whole[0], whole[1][:cut]) is None


def test_a_topic_that_is_not_utf8_is_handed_over_as_none() -> None:
    header, body = split(encode_publish("x", b"{}", qos=1, packet_id=5))
    body = b"\x00\x01\xff" + body[3:]
    assert plain_publish(header, body) == (5, 1, None, b"{}")


@pytest.fixture
def wired() -> Iterator[tuple[PahoClient, socket.socket, list[Delivery], list[str]]]:
    """A paho client (MQTT 5, manual ack) whose socket is one end of a real socket pair,
    as after CONNACK; the test writes the broker's side."""
    ours, broker = socket.socketpair()
    ours.setblocking(False)
    client = PahoClient(CallbackAPIVersion.VERSION2, protocol=MQTTProtocolVersion.MQTTv5)
    client.manual_ack_set(True)
    slow: list[str] = []
    client.on_message = lambda _c, _u, message: slow.append(message.topic)
    deliveries: list[Delivery] = []
    read_fast(client, deliveries.append)
    client._sock = ours
    try:
        yield client, broker, deliveries, slow
    finally:
        ours.close()
        broker.close()


def test_one_readable_event_handles_every_packet_that_arrived(
    wired: tuple[PahoClient, socket.socket, list[Delivery], list[str]],
) -> None:
    client, broker, deliveries, slow = wired
    stream = b"".join(
        encode_publish(f"denen/v1/s{i}/gw-1/events", b'{"n":%d}' % i, qos=1, packet_id=i + 1)
        for i in range(500)
    ) + with_properties("denen/v1/s0/gw-1/res/sync", b"{}")
    tail = encode_publish("denen/v1/s9/gw-1/events", b"last", qos=1, packet_id=999)
    broker.sendall(stream + tail[:5])  # the last packet arrives in two parts
    assert client.loop_read() == MQTTErrorCode.MQTT_ERR_SUCCESS
    assert len(deliveries) == 500
    assert deliveries[0] == (1, 1, "denen/v1/s0/gw-1/events", b'{"n":0}')
    assert deliveries[-1][:3] == (500, 1, "denen/v1/s499/gw-1/events")
    assert slow == ["denen/v1/s0/gw-1/res/sync"]  # with properties: through paho
    broker.sendall(tail[5:])
    assert client.loop_read() == MQTTErrorCode.MQTT_ERR_SUCCESS
    assert deliveries[-1] == (999, 1, "denen/v1/s9/gw-1/events", b"last")
    assert client.want_write() is False  # nothing acknowledged behind the caller's back


def test_a_closed_connection_is_noticed(
    wired: tuple[PahoClient, socket.socket, list[Delivery], list[str]],
) -> None:
    client, broker, _deliveries, _slow = wired
    broker.close()
    assert client.loop_read() == MQTTErrorCode.MQTT_ERR_CONN_LOST


def test_it_refuses_a_client_that_would_acknowledge_on_arrival() -> None:
    client = PahoClient(CallbackAPIVersion.VERSION2, protocol=MQTTProtocolVersion.MQTTv5)
    with pytest.raises(ValueError, match="manual_ack"):
        read_fast(client, lambda _d: None)


def test_a_committed_batch_is_acknowledged_in_one_write(
    wired: tuple[PahoClient, socket.socket, list[Delivery], list[str]],
) -> None:
    client, broker, _deliveries, _slow = wired
    batch: list[Delivery] = [(7, 1, "a", b""), (0, 0, "b", b""), (65_535, 1, None, b"")]
    acknowledge(client, batch)
    broker.settimeout(5)
    # two PUBACKs (remaining length 2: reason "success"), none for the QoS 0 message
    assert broker.recv(100) == bytes([0x40, 2, 0, 7, 0x40, 2, 0xFF, 0xFF])
    acknowledge(client, [(0, 0, "b", b"")])
    assert client.want_write() is False  # nothing queued for QoS 0 alone
