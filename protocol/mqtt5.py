"""The slice of MQTT 5 Denen speaks, sans-IO (OASIS MQTT 5.0, section 3): the fleet
simulator's gateways use it.

Packets are frozen dataclasses: ``bytes(packet)`` encodes one, :class:`PacketParser` is a
push parser (``feed(data)`` → packets, any chunking), :func:`parse_packet` decodes exactly
one. Covered: CONNECT (will, clean start, session expiry, receive maximum), CONNACK,
PUBLISH at QoS 0 and 1, PUBACK, SUBSCRIBE (with subscribe options), SUBACK, PINGREQ,
PINGRESP, DISCONNECT — both directions, so every packet round-trips — and the reason
codes of the acknowledgements (:class:`ReasonCode`; 0x80 and above is a failure). Not
covered (nobody here needs them): QoS 2, AUTH, UNSUBSCRIBE, topic aliases; properties
other than the few named here are decoded into :attr:`properties` and otherwise ignored.

A PUBLISH at QoS 0 or 1 with no properties (what gateways send, the bulk of the cloud's
ingest) is decoded by :meth:`PacketParser.feed` straight from its buffer, without the
general reader; anything else takes the general path. Both give the same packet.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import IntEnum

from protocol.errors import RemoteProtocolError

PROTOCOL_NAME = b"MQTT"
PROTOCOL_LEVEL = 5
MAX_REMAINING = 268_435_455  # four bytes of variable byte integer
MAX_PACKET_ID = 0xFFFF


class MqttWireError(RemoteProtocolError):
    """The peer sent bytes that are not MQTT 5 as this codec knows it."""


class PacketType(IntEnum):
    CONNECT = 1
    CONNACK = 2
    PUBLISH = 3
    PUBACK = 4
    SUBSCRIBE = 8
    SUBACK = 9
    PINGREQ = 12
    PINGRESP = 13
    DISCONNECT = 14


class Prop(IntEnum):
    """The property identifiers (section 2.2.2.2) this codec reads or writes by name."""

    SESSION_EXPIRY_INTERVAL = 0x11
    ASSIGNED_CLIENT_IDENTIFIER = 0x12
    SERVER_KEEP_ALIVE = 0x13
    REASON_STRING = 0x1F
    RECEIVE_MAXIMUM = 0x21
    TOPIC_ALIAS_MAXIMUM = 0x22
    MAXIMUM_QOS = 0x24
    RETAIN_AVAILABLE = 0x25
    USER_PROPERTY = 0x26
    MAXIMUM_PACKET_SIZE = 0x27


class ReasonCode(IntEnum):
    """The reason codes (section 2.4) Denen names; 0x80 and above is a failure."""

    SUCCESS = 0x00  # also "granted QoS 0" in a SUBACK, "normal disconnection"
    GRANTED_QOS_1 = 0x01
    GRANTED_QOS_2 = 0x02
    NO_MATCHING_SUBSCRIBERS = 0x10
    UNSPECIFIED_ERROR = 0x80
    MALFORMED_PACKET = 0x81
    PROTOCOL_ERROR = 0x82
    IMPLEMENTATION_SPECIFIC_ERROR = 0x83
    UNSUPPORTED_PROTOCOL_VERSION = 0x84
    CLIENT_IDENTIFIER_NOT_VALID = 0x85
    BAD_USER_NAME_OR_PASSWORD = 0x86
    NOT_AUTHORIZED = 0x87
    SERVER_UNAVAILABLE = 0x88
    SERVER_BUSY = 0x89
    BANNED = 0x8A
    SERVER_SHUTTING_DOWN = 0x8B
    KEEP_ALIVE_TIMEOUT = 0x8D
    SESSION_TAKEN_OVER = 0x8E
    TOPIC_FILTER_INVALID = 0x8F
    TOPIC_NAME_INVALID = 0x90
    PACKET_IDENTIFIER_IN_USE = 0x91
    RECEIVE_MAXIMUM_EXCEEDED = 0x93
    PACKET_TOO_LARGE = 0x95
    QUOTA_EXCEEDED = 0x97
    PAYLOAD_FORMAT_INVALID = 0x99
    RETAIN_NOT_SUPPORTED = 0x9A
    QOS_NOT_SUPPORTED = 0x9B
    SHARED_SUBSCRIPTIONS_NOT_SUPPORTED = 0x9E
    SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED = 0xA1
    WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED = 0xA2


def is_failure(reason_code: int) -> bool:
    """A reason code of 0x80 or above says the request failed (section 2.4)."""
    return reason_code >= 0x80


def describe_reason(reason_code: int) -> str:
    """``not authorized (0x87)``: a reason code as an operator reads it in a log."""
    try:
        name = ReasonCode(reason_code).name.lower().replace("_", " ")
    except ValueError:
        name = "unknown reason"
    return f"{name} (0x{reason_code:02x})"


# the wire type of every property identifier MQTT 5 defines
_BYTE, _U16, _U32, _VARINT, _STR, _BIN, _PAIR = range(7)
_PROPERTY_TYPES: dict[int, int] = {
    0x01: _BYTE,
    0x02: _U32,
    0x03: _STR,
    0x08: _STR,
    0x09: _BIN,
    0x0B: _VARINT,
    0x11: _U32,
    0x12: _STR,
    0x13: _U16,
    0x15: _STR,
    0x16: _BIN,
    0x17: _BYTE,
    0x18: _U32,
    0x19: _BYTE,
    0x1A: _STR,
    0x1C: _STR,
    0x1F: _STR,
    0x21: _U16,
    0x22: _U16,
    0x23: _U16,
    0x24: _BYTE,
    0x25: _BYTE,
    0x26: _PAIR,
    0x27: _U32,
    0x28: _BYTE,
    0x29: _BYTE,
    0x2A: _BYTE,
}

PropertyValue = int | str | bytes | tuple[str, str]
Properties = tuple[tuple[int, PropertyValue], ...]


# ------------------------------------------------------------------ primitives


def encode_varint(value: int) -> bytes:
    """A variable byte integer (section 1.5.5)."""
    if not 0 <= value <= MAX_REMAINING:
        raise ValueError(f"{value} does not fit a variable byte integer")
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _str(value: str) -> bytes:
    raw = value.encode()
    return struct.pack("!H", len(raw)) + raw


def _bin(value: bytes) -> bytes:
    return struct.pack("!H", len(value)) + value


def encode_properties(props: Properties) -> bytes:
    """A property list with its length in front."""
    body = bytearray()
    for ident, value in props:
        kind = _PROPERTY_TYPES.get(ident)
        if kind is None:
            raise ValueError(f"unknown property 0x{ident:02x}")
        body += encode_varint(ident)
        if kind == _BYTE and isinstance(value, int):
            body.append(value)
        elif kind == _U16 and isinstance(value, int):
            body += struct.pack("!H", value)
        elif kind == _U32 and isinstance(value, int):
            body += struct.pack("!I", value)
        elif kind == _VARINT and isinstance(value, int):
            body += encode_varint(value)
        elif kind == _STR and isinstance(value, str):
            body += _str(value)
        elif kind == _BIN and isinstance(value, bytes):
            body += _bin(value)
        elif kind == _PAIR and isinstance(value, tuple):
            body += _str(value[0]) + _str(value[1])
        else:
            raise TypeError(f"property 0x{ident:02x} cannot hold {type(value).__name__}")
    return encode_varint(len(body)) + bytes(body)


_NO_PROPERTIES = b"\x00"


def _packet(first: int, body: bytes) -> bytes:
    return bytes([first]) + encode_varint(len(body)) + body


class _Reader:
    """Reads one packet's body front to back; every short read is the peer's error."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def _take(self, n: int) -> bytes:
        end = self.pos + n
        if end > len(self.data):
            raise MqttWireError("packet ends in the middle of a field")
        chunk = self.data[self.pos : end]
        self.pos = end
        return chunk

    def byte(self) -> int:
        return self._take(1)[0]

    def u16(self) -> int:
        return int(struct.unpack("!H", self._take(2))[0])

    def u32(self) -> int:
        return int(struct.unpack("!I", self._take(4))[0])

    def varint(self) -> int:
        value = 0
        for shift in range(0, 28, 7):
            byte = self.byte()
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
        raise MqttWireError("variable byte integer longer than four bytes")

    def string(self) -> str:
        try:
            return self._take(self.u16()).decode()
        except UnicodeDecodeError:
            raise MqttWireError("a string field is not UTF-8") from None

    def binary(self) -> bytes:
        return self._take(self.u16())

    def rest(self) -> bytes:
        chunk = self.data[self.pos :]
        self.pos = len(self.data)
        return chunk

    @property
    def left(self) -> int:
        return len(self.data) - self.pos

    def properties(self) -> Properties:
        length = self.varint()
        end = self.pos + length
        if end > len(self.data):
            raise MqttWireError("property length runs past the packet")
        out: list[tuple[int, PropertyValue]] = []
        while self.pos < end:
            ident = self.varint()
            kind = _PROPERTY_TYPES.get(ident)
            value: PropertyValue
            if kind == _BYTE:
                value = self.byte()
            elif kind == _U16:
                value = self.u16()
            elif kind == _U32:
                value = self.u32()
            elif kind == _VARINT:
                value = self.varint()
            elif kind == _STR:
                value = self.string()
            elif kind == _BIN:
                value = self.binary()
            elif kind == _PAIR:
                value = (self.string(), self.string())
            else:
                raise MqttWireError(f"unknown property 0x{ident:02x}")
            out.append((ident, value))
        if self.pos != end:
            raise MqttWireError("a property runs past the property length")
        return tuple(out)


def _prop(props: Properties, ident: Prop) -> PropertyValue | None:
    for key, value in props:
        if key == ident:
            return value
    return None


def _reason_string(props: Properties) -> str | None:
    value = _prop(props, Prop.REASON_STRING)
    return value if isinstance(value, str) else None


# ------------------------------------------------------------------ packets


@dataclass(frozen=True, slots=True)
class Will:
    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = True


@dataclass(frozen=True, slots=True)
class Connect:
    client_id: str
    keepalive: int = 60
    clean_start: bool = False
    session_expiry_s: int = 0
    receive_maximum: int | None = None
    will: Will | None = None

    def __bytes__(self) -> bytes:
        flags = 0x02 if self.clean_start else 0
        props: list[tuple[int, PropertyValue]] = []
        if self.session_expiry_s:
            props.append((Prop.SESSION_EXPIRY_INTERVAL, self.session_expiry_s))
        if self.receive_maximum is not None:
            props.append((Prop.RECEIVE_MAXIMUM, self.receive_maximum))
        payload = _str(self.client_id)
        if self.will is not None:
            flags |= 0x04 | (self.will.qos << 3) | (0x20 if self.will.retain else 0)
            payload += _NO_PROPERTIES + _str(self.will.topic) + _bin(self.will.payload)
        body = (
            _bin(PROTOCOL_NAME)
            + bytes([PROTOCOL_LEVEL, flags])
            + struct.pack("!H", self.keepalive)
            + encode_properties(tuple(props))
            + payload
        )
        return _packet(PacketType.CONNECT << 4, body)

    @classmethod
    def decode(cls, r: _Reader) -> Connect:
        if r.binary() != PROTOCOL_NAME or r.byte() != PROTOCOL_LEVEL:
            raise MqttWireError("CONNECT is not MQTT 5")
        flags = r.byte()
        keepalive = r.u16()
        props = r.properties()
        client_id = r.string()
        will = None
        if flags & 0x04:
            r.properties()
            topic = r.string()
            will = Will(topic, r.binary(), (flags >> 3) & 0x03, bool(flags & 0x20))
        expiry = _prop(props, Prop.SESSION_EXPIRY_INTERVAL)
        receive = _prop(props, Prop.RECEIVE_MAXIMUM)
        return cls(
            client_id,
            keepalive,
            bool(flags & 0x02),
            expiry if isinstance(expiry, int) else 0,
            receive if isinstance(receive, int) else None,
            will,
        )


@dataclass(frozen=True, slots=True)
class ConnAck:
    session_present: bool
    reason_code: int = 0
    properties: Properties = ()

    def __bytes__(self) -> bytes:
        body = bytes([int(self.session_present), self.reason_code])
        return _packet(PacketType.CONNACK << 4, body + encode_properties(self.properties))

    @classmethod
    def decode(cls, r: _Reader) -> ConnAck:
        flags = r.byte()
        reason = r.byte()
        props = r.properties() if r.left else ()
        return cls(bool(flags & 0x01), reason, props)

    @property
    def receive_maximum(self) -> int:
        """How many QoS 1 publishes the broker takes unacknowledged (absent: 65,535)."""
        value = _prop(self.properties, Prop.RECEIVE_MAXIMUM)
        return value if isinstance(value, int) else 65_535

    @property
    def server_keep_alive(self) -> int | None:
        """The keepalive the broker wants instead of the CONNECT's (absent: None)."""
        value = _prop(self.properties, Prop.SERVER_KEEP_ALIVE)
        return value if isinstance(value, int) else None

    @property
    def maximum_qos(self) -> int:
        """The highest QoS the broker accepts (absent: 2)."""
        value = _prop(self.properties, Prop.MAXIMUM_QOS)
        return value if isinstance(value, int) else 2

    @property
    def reason_string(self) -> str | None:
        return _reason_string(self.properties)


@dataclass(frozen=True, slots=True)
class Publish:
    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False
    packet_id: int = 0  # 0 at QoS 0
    dup: bool = False
    properties: Properties = field(default=())

    def __bytes__(self) -> bytes:
        return encode_publish(
            self.topic,
            self.payload,
            qos=self.qos,
            retain=self.retain,
            packet_id=self.packet_id,
            dup=self.dup,
            properties=self.properties,
        )

    @classmethod
    def decode(cls, flags: int, r: _Reader) -> Publish:
        qos = (flags >> 1) & 0x03
        if qos == 3:
            raise MqttWireError("PUBLISH with QoS 3")
        topic = r.string()
        packet_id = r.u16() if qos else 0
        if qos and not packet_id:
            raise MqttWireError("PUBLISH at QoS 1 with packet id 0")
        props = r.properties()
        return cls(topic, r.rest(), qos, bool(flags & 0x01), packet_id, bool(flags & 0x08), props)


def encode_publish(
    topic: str,
    payload: bytes,
    *,
    qos: int = 0,
    retain: bool = False,
    packet_id: int = 0,
    dup: bool = False,
    properties: Properties = (),
) -> bytes:
    """A PUBLISH, without building a :class:`Publish` (the simulator's hot path)."""
    first = (PacketType.PUBLISH << 4) | (qos << 1) | (0x08 if dup else 0) | int(retain)
    head = _str(topic)
    if qos:
        head += struct.pack("!H", packet_id)
    props = encode_properties(properties) if properties else _NO_PROPERTIES
    return _packet(first, head + props + payload)


_SHORT_PUBACK = struct.Struct("!BBH")  # PUBACK, remaining length 2, packet id: success


@dataclass(frozen=True, slots=True)
class PubAck:
    packet_id: int
    reason_code: int = 0
    properties: Properties = ()

    def __bytes__(self) -> bytes:
        if self.reason_code == 0 and not self.properties:  # the short form (section 3.4.2.1)
            return _SHORT_PUBACK.pack(PacketType.PUBACK << 4, 2, self.packet_id)
        body = struct.pack("!HB", self.packet_id, self.reason_code)
        if self.properties:
            body += encode_properties(self.properties)
        return _packet(PacketType.PUBACK << 4, body)

    @classmethod
    def decode(cls, r: _Reader) -> PubAck:
        packet_id = r.u16()
        reason = r.byte() if r.left else 0
        props = r.properties() if r.left else ()
        return cls(packet_id, reason, props)

    @property
    def failed(self) -> bool:
        """The broker did not take the message (0x10, no subscribers, is a success)."""
        return is_failure(self.reason_code)

    @property
    def reason_string(self) -> str | None:
        return _reason_string(self.properties)


def encode_pubacks(packet_ids: Iterable[int]) -> bytes:
    """The short-form PUBACK (success) of each of ``packet_ids``, back to back: one write
    acknowledges a whole batch of deliveries."""
    pack = _SHORT_PUBACK.pack
    first = PacketType.PUBACK << 4
    return b"".join([pack(first, 2, packet_id) for packet_id in packet_ids])


class RetainHandling(IntEnum):
    """When the broker sends retained messages for a new subscription (section 3.8.3.1)."""

    SEND = 0  # at every subscribe
    SEND_IF_NEW = 1  # only if the subscription did not exist yet
    DO_NOT_SEND = 2


@dataclass(frozen=True, slots=True)
class Subscription:
    """One topic filter of a SUBSCRIBE with its subscribe options (section 3.8.3.1)."""

    topic_filter: str
    qos: int = 1
    no_local: bool = False  # not our own publishes back (not allowed on a shared one)
    retain_as_published: bool = False
    retain_handling: RetainHandling = RetainHandling.SEND

    @property
    def options(self) -> int:
        """The subscribe options byte."""
        return (
            self.qos
            | (0x04 if self.no_local else 0)
            | (0x08 if self.retain_as_published else 0)
            | (self.retain_handling << 4)
        )

    @classmethod
    def from_options(cls, topic_filter: str, options: int) -> Subscription:
        qos, handling = options & 0x03, (options >> 4) & 0x03
        if qos == 3 or handling == 3 or options & 0xC0:
            raise MqttWireError(f"subscribe options {options:#04x} are not valid")
        return cls(
            topic_filter, qos, bool(options & 0x04), bool(options & 0x08), RetainHandling(handling)
        )


@dataclass(frozen=True, slots=True)
class Subscribe:
    packet_id: int
    filters: tuple[Subscription, ...]

    def __bytes__(self) -> bytes:
        body = struct.pack("!H", self.packet_id) + _NO_PROPERTIES
        for sub in self.filters:
            body += _str(sub.topic_filter) + bytes([sub.options])
        return _packet((PacketType.SUBSCRIBE << 4) | 0x02, body)

    @classmethod
    def decode(cls, r: _Reader) -> Subscribe:
        packet_id = r.u16()
        r.properties()
        filters = []
        while r.left:
            topic_filter = r.string()
            filters.append(Subscription.from_options(topic_filter, r.byte()))
        if not filters:
            raise MqttWireError("SUBSCRIBE without a topic filter")
        return cls(packet_id, tuple(filters))


@dataclass(frozen=True, slots=True)
class SubAck:
    """One reason code per filter of the SUBSCRIBE, in order: the granted QoS (0-2), or a
    failure (0x80 and above: the subscription was refused)."""

    packet_id: int
    reason_codes: tuple[int, ...]
    properties: Properties = ()

    def __bytes__(self) -> bytes:
        body = (
            struct.pack("!H", self.packet_id)
            + encode_properties(self.properties)
            + bytes(self.reason_codes)
        )
        return _packet(PacketType.SUBACK << 4, body)

    @classmethod
    def decode(cls, r: _Reader) -> SubAck:
        packet_id = r.u16()
        props = r.properties()
        return cls(packet_id, tuple(r.rest()), props)

    @property
    def reason_string(self) -> str | None:
        return _reason_string(self.properties)


@dataclass(frozen=True, slots=True)
class PingReq:
    def __bytes__(self) -> bytes:
        return PINGREQ


@dataclass(frozen=True, slots=True)
class PingResp:
    def __bytes__(self) -> bytes:
        return bytes([PacketType.PINGRESP << 4, 0])


@dataclass(frozen=True, slots=True)
class Disconnect:
    reason_code: int = 0
    properties: Properties = ()

    def __bytes__(self) -> bytes:
        if self.reason_code == 0 and not self.properties:
            return bytes([PacketType.DISCONNECT << 4, 0])
        body = bytes([self.reason_code]) + encode_properties(self.properties)
        return _packet(PacketType.DISCONNECT << 4, body)

    @classmethod
    def decode(cls, r: _Reader) -> Disconnect:
        reason = r.byte() if r.left else 0
        props = r.properties() if r.left else ()
        return cls(reason, props)

    @property
    def reason_string(self) -> str | None:
        return _reason_string(self.properties)


PINGREQ = bytes([PacketType.PINGREQ << 4, 0])

Packet = Connect | ConnAck | Publish | PubAck | Subscribe | SubAck | PingReq | PingResp | Disconnect

# the fixed-header flags MQTT 5 requires for each type (PUBLISH carries its own)
_REQUIRED_FLAGS = {
    PacketType.CONNECT: 0,
    PacketType.CONNACK: 0,
    PacketType.PUBACK: 0,
    PacketType.SUBSCRIBE: 0x02,
    PacketType.SUBACK: 0,
    PacketType.PINGREQ: 0,
    PacketType.PINGRESP: 0,
    PacketType.DISCONNECT: 0,
}


def _decode(first: int, body: bytes) -> Packet:
    try:
        kind = PacketType(first >> 4)
    except ValueError:
        raise MqttWireError(f"unsupported packet type {first >> 4}") from None
    flags = first & 0x0F
    r = _Reader(body)
    packet: Packet
    if kind is PacketType.PUBLISH:
        packet = Publish.decode(flags, r)
    else:
        if flags != _REQUIRED_FLAGS[kind]:
            raise MqttWireError(f"{kind.name} with fixed-header flags {flags:#x}")
        if kind is PacketType.CONNECT:
            packet = Connect.decode(r)
        elif kind is PacketType.CONNACK:
            packet = ConnAck.decode(r)
        elif kind is PacketType.PUBACK:
            packet = PubAck.decode(r)
        elif kind is PacketType.SUBSCRIBE:
            packet = Subscribe.decode(r)
        elif kind is PacketType.SUBACK:
            packet = SubAck.decode(r)
        elif kind is PacketType.PINGREQ:
            packet = PingReq()
        elif kind is PacketType.PINGRESP:
            packet = PingResp()
        else:
            packet = Disconnect.decode(r)
    if r.left:
        raise MqttWireError(f"{kind.name} has {r.left} bytes after its last field")
    return packet


def _plain_publish(first: int, buf: bytearray, start: int, end: int) -> Publish | None:
    """The PUBLISH in ``buf[start:end]`` if it is a plain one (QoS 0 or 1, a topic name, no
    properties, a valid packet id); None for anything else, which :func:`_decode` then
    decodes or refuses with the reason. Same result as the general path, a few times faster."""
    if end - start < 3:
        return None
    topic_end = start + 2 + ((buf[start] << 8) | buf[start + 1])
    if topic_end == start + 2:
        return None  # an empty topic (a topic alias): the general path says why
    qos = (first >> 1) & 0x01
    props_at = topic_end + 2 if qos else topic_end
    if props_at >= end or buf[props_at]:
        return None  # short, or properties follow
    packet_id = (buf[topic_end] << 8) | buf[topic_end + 1] if qos else 0
    if qos and not packet_id:
        return None
    try:
        topic = buf[start + 2 : topic_end].decode()
    except UnicodeDecodeError:
        return None
    return Publish(
        topic,
        bytes(buf[props_at + 1 : end]),
        qos,
        bool(first & 0x01),
        packet_id,
        bool(first & 0x08),
    )


def parse_packet(data: bytes) -> Packet:
    """Decode exactly one packet; :class:`MqttWireError` for anything else."""
    parser = PacketParser()
    packets = parser.feed(data)
    if len(packets) != 1 or parser.buffered:
        raise MqttWireError(f"expected one whole packet, got {len(packets)} (+{parser.buffered} B)")
    return packets[0]


class PacketParser:
    """Push parser: ``feed(data)`` returns every packet completed by ``data``."""

    __slots__ = ("_buf", "max_packet")

    def __init__(self, max_packet: int = 1 << 20) -> None:
        self._buf = bytearray()
        self.max_packet = max_packet

    @property
    def buffered(self) -> int:
        """Bytes held back, waiting for the rest of a packet."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[Packet]:
        buf = self._buf
        buf += data
        out: list[Packet] = []
        pos = 0
        end = len(buf)
        while end - pos >= 2:
            # the remaining length: one to four bytes after the first
            length = 0
            shift = 0
            i = pos + 1
            complete = False
            while i < end:
                byte = buf[i]
                i += 1
                length |= (byte & 0x7F) << shift
                if not byte & 0x80:
                    complete = True
                    break
                shift += 7
                if shift > 21:
                    raise MqttWireError("remaining length longer than four bytes")
            if not complete:
                break  # wait for the rest of the length
            if length > self.max_packet:
                raise MqttWireError(f"a {length}-byte packet is larger than {self.max_packet}")
            if end - i < length:
                break  # wait for the rest of the packet
            first = buf[pos]
            pos = i + length
            if first & 0xF4 == 0x30:  # PUBLISH at QoS 0 or 1
                packet = _plain_publish(first, buf, i, pos)
                if packet is not None:
                    out.append(packet)
                    continue
            out.append(_decode(first, bytes(buf[i:pos])))
        if pos:
            del buf[:pos]
        return out
