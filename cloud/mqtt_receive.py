"""The cloud's receiving side of paho, made fit for a city's fleet.

paho-mqtt reads a packet with three or four ``recv`` calls (the command byte, each byte
of the length, the body), handles one packet per readable event of the socket, and
decodes every MQTT 5 PUBLISH through a :class:`paho.mqtt.properties.Properties` object
that builds two tables of some thirty entries each time. With 5,000 gateways that is
most of the cloud's time: ``bench/fleet.py`` saw the event loop's thread busy reading
while the database waited for work.

:func:`read_fast` changes one paho client (not the library) in three places:

- its socket reads go through a buffer filled 64 KiB at a time;
- ``loop_read`` goes on while that buffer holds data (a readable event now handles
  every packet that arrived, not one);
- a PUBLISH with no properties (QoS 0 or 1: what gateways send) is decoded here, in
  a few microseconds, and handed straight to ``on_delivery``; anything else (properties,
  a topic alias, QoS 2, a malformed packet) takes paho's own path, unchanged.

:func:`acknowledge` sends a batch's PUBACKs as one write, where paho's ``ack`` logs,
queues and writes each on its own.

Like :class:`cloud.mqtt_bridge.AckAfterCommitClient` this leans on paho internals
(``_sock_recv``, ``_handle_publish``, ``_in_packet``, ``_packet_queue``);
``tests/unit/test_mqtt_receive.py``
pins them against the installed paho, and the bridge's integration tests run through it.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable

from paho.mqtt.client import Client as PahoClient
from paho.mqtt.enums import MQTTErrorCode

READ_CHUNK = 65_536
PUBACK = 0x40
_PUBACK = struct.Struct("!BBH")  # PUBACK, remaining length 2, packet id: reason "success"

Delivery = tuple[int, int, str | None, bytes | bytearray]
"""One received message: ``(mid, qos, topic, payload)``; topic None when not UTF-8.

A plain tuple, not paho's ``MQTTMessage``: thousands wait for their commit, and each paho
message holds some sixty dicts and lists (its MQTT 5 properties) that the garbage collector
would walk again and again."""


def plain_publish(header: int, body: bytes | bytearray) -> Delivery | None:
    """Decode an MQTT 5 PUBLISH (``header``: its first byte, ``body``: what follows the
    remaining length) that has QoS 0 or 1, a topic name and no properties; None for any
    other, which paho then decodes itself."""
    qos = (header >> 1) & 0x03
    size = len(body)
    if qos > 1 or size < 2:
        return None
    topic_end = 2 + ((body[0] << 8) | body[1])
    if topic_end == 2:
        return None  # no topic name: a topic alias
    end, mid = topic_end, 0
    if qos:
        if size < end + 2:
            return None
        mid = (body[end] << 8) | body[end + 1]
        end += 2
    if size <= end or body[end] != 0:
        return None  # properties follow (or the packet is short)
    try:
        topic: str | None = body[2:topic_end].decode("utf-8")
    except UnicodeDecodeError:
        topic = None
    return mid, qos, topic, bytes(body[end + 1 :])


def read_fast(client: PahoClient, on_delivery: Callable[[Delivery], None]) -> None:
    """Make ``client`` read buffered, many packets per readable event, and hand plain
    PUBLISHes to ``on_delivery`` (before any ``on_message``); see the module docstring."""
    if not client._manual_ack:
        raise ValueError("read_fast hands QoS 1 deliveries over unacknowledged: manual_ack_set")
    buffer = bytearray()
    sock_recv = client._sock_recv
    loop_read = client.loop_read
    handle_publish = client._handle_publish

    def buffered_recv(bufsize: int) -> bytes:
        if not buffer:
            data = sock_recv(READ_CHUNK)  # BlockingIOError when nothing is there
            if not data:
                return data  # the broker closed the connection
            buffer.extend(data)
        chunk = bytes(buffer[:bufsize])
        del buffer[:bufsize]
        return chunk

    def read_all(max_packets: int = 1) -> MQTTErrorCode:
        rc = loop_read(max_packets)
        while buffer and rc == MQTTErrorCode.MQTT_ERR_SUCCESS and client._sock is not None:
            rc = loop_read(max_packets)
        return rc

    def fast_publish() -> MQTTErrorCode:
        packet = client._in_packet
        delivery = plain_publish(packet["command"], packet["packet"])
        if delivery is None:
            return handle_publish()
        on_delivery(delivery)  # acknowledged later, by the caller (manual ack)
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    # instance attributes: this client only, looked up by paho and aiomqtt at each call
    client._sock_recv = buffered_recv  # type: ignore[method-assign]
    client.loop_read = read_all  # type: ignore[method-assign]
    client._handle_publish = fast_publish  # type: ignore[method-assign]


def acknowledge(client: PahoClient, deliveries: Iterable[Delivery]) -> None:
    """PUBACK every QoS 1 delivery of ``deliveries`` (a batch whose transaction
    committed), queued as one packet: one write for the batch, not one per message."""
    acks = b"".join(_PUBACK.pack(PUBACK, 2, mid) for mid, qos, _t, _p in deliveries if qos == 1)
    if acks:
        client._packet_queue(PUBACK, acks, 0, 0)
