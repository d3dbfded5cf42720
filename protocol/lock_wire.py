"""The lock wire codec: binary frames between an edge agent and a keypad lock.

Sans-IO, like h11: :class:`LockFrame` turns into bytes and back; :class:`FrameParser` takes
what a serial line or BLE delivered and yields whole frames, resynchronising after garbage.

Frame layout (all integers big-endian)::

    magic   2   0xD5 0x4E
    length  2   length of body (BODY_FIXED + len(payload)), at most MAX_BODY
    body        version 1 | type 1 | seq 2 | key_id 1 | counter 4 | payload n | mac 8
    crc     2   CRC-16/CCITT-FALSE over length and body

``key_id``, ``counter`` and ``mac`` authenticate it (:mod:`protocol.lock_auth`); ``key_id`` 0
is unauthenticated (counter 0, zero MAC). A reply carries its request's ``seq``.

``REVOKE_OFFLINE`` replaces the lock's list of cancelled offline PINs
(:mod:`protocol.offline_pin`): the whole list each time, so resending it is harmless.

``UPDATE_BEGIN`` / ``UPDATE_CHUNK`` / ``UPDATE_COMMIT`` carry a signed firmware image
(:mod:`protocol.firmware_image`) in pieces, each answered by ``UPDATE_ACK``; their payloads
are in :mod:`protocol.firmware_transfer`. The lock refuses an update while its door is
unlocked or open (``DOOR_IN_USE``) and otherwise keeps working during the transfer; after
the ACK to COMMIT it runs the new version, which INFO reports.

``UNLOCK`` is the emergency remote unlock a fleet command asks for: sealed like every
request, it unlocks the bolt as an accepted PIN would (the lock relocks itself), logs a
``REMOTE_UNLOCKED`` event and answers ACK with that event's seq and boot (u32 each; a lock
from before boot ids sends the seq alone).

An event is named by its ``boot`` and ``seq``. ``seq`` counts up from 1 while the lock's
event counter runs; ``boot`` is a random non-zero u32 the lock draws whenever that counter
starts again (power-up, battery change, factory reset), so events of two runs never share a
name, even on a reset or swapped lock that knows nothing of its past. ``EVENTS`` payloads:
``count u8 | event*``; the high bit of ``count`` set (``EVENTS_WITH_BOOT``) means each event
carries its boot (32 bytes), clear means the older 28-byte layout, read as boot 0
(:data:`NO_BOOT`: a lock that cannot tell its runs apart).
"""

from __future__ import annotations

import struct
import uuid
from dataclasses import dataclass
from enum import IntEnum

from protocol.errors import FrameError, LocalProtocolError
from protocol.firmware_image import Refusal
from protocol.framing import (
    MAC_LEN,
    MAX_PAYLOAD,
    PushParser,
    check_fields,
    decode,
    encode,
    signed_part,
)
from protocol.messages import LockEventKind
from protocol.offline_pin import OfflinePinError, OfflinePinId

MAGIC = b"\xd5\x4e"
TAG_LEN = 16
NO_SLOT = 0xFF
NO_GRANT = b"\x00" * 16
ALL_SLOTS = 0xFF


class FrameType(IntEnum):
    # agent -> lock
    GET_INFO = 0x01
    SET_TIME = 0x02
    SET_SLOT = 0x03
    CLEAR_SLOT = 0x04
    GET_EVENTS = 0x05
    ACK_EVENTS = 0x06
    GET_SLOTS = 0x07
    PAIR = 0x08  # keys in clear: only inside the lock's pairing-button window
    REVOKE_OFFLINE = 0x09  # the whole list of cancelled offline PINs, replacing the last
    UPDATE_BEGIN = 0x0A  # a signed image's header and signature: starts (or restarts) a transfer
    UPDATE_CHUNK = 0x0B  # offset u32 + payload bytes
    UPDATE_COMMIT = 0x0C  # the payload's SHA-256: verify, install, reboot into it
    UNLOCK = 0x0D  # emergency remote unlock (no payload); ACK: the event's seq u32 | boot u32
    # lock -> agent
    ACK = 0x80
    INFO = 0x81
    EVENTS = 0x82
    SLOTS = 0x83
    UPDATE_ACK = 0x84  # received u32 | total u32 (protocol.firmware_transfer)
    NACK = 0x8F
    WAKE = 0x90  # unsolicited: the keypad woke the lock, or it has new events


class NackCode(IntEnum):
    BAD_REQUEST = 1
    NO_SUCH_SLOT = 2
    CLOCK_NOT_SET = 3
    AUTH_FAILED = 4
    BUSY = 5
    NOT_PAIRING = 6  # PAIR outside the window: press the pairing button on the lock
    NOT_PAIRED = 7  # the lock has no link key yet: pair it first
    # more live revocations than the lock holds: it refuses every offline PIN until a
    # list that fits arrives (fail secure: it cannot tell a cancelled code from a good one)
    REVOCATIONS_FULL = 8
    # firmware updates (protocol.firmware_image): the old version keeps running after each
    BAD_IMAGE = 9  # not an image, truncated, or too large for the lock's flash
    WRONG_DEVICE = 10  # an image for a display, or for another lock model
    BAD_SIGNATURE = 11  # signed by an unknown release key, or the signature does not verify
    NOT_NEWER = 12  # a downgrade, or the version already running
    HASH_MISMATCH = 13  # the chunks received are not the payload the header names
    UPDATE_SEQUENCE = 14  # CHUNK/COMMIT without BEGIN, a gap, or COMMIT before the last byte
    DOOR_IN_USE = 15  # unlocked or open: the lock updates only when locked and closed
    # a second PAIR in one pairing window: send it again with the code the lock now shows
    CONFIRM_CODE = 16


IMAGE_NACKS: dict[Refusal, NackCode] = {
    Refusal.MALFORMED: NackCode.BAD_IMAGE,
    Refusal.TRUNCATED: NackCode.BAD_IMAGE,
    Refusal.TOO_LARGE: NackCode.BAD_IMAGE,
    Refusal.WRONG_KIND: NackCode.WRONG_DEVICE,
    Refusal.WRONG_MODEL: NackCode.WRONG_DEVICE,
    Refusal.UNKNOWN_KEY: NackCode.BAD_SIGNATURE,
    Refusal.BAD_SIGNATURE: NackCode.BAD_SIGNATURE,
    Refusal.HASH_MISMATCH: NackCode.HASH_MISMATCH,
    Refusal.NOT_NEWER: NackCode.NOT_NEWER,
}


EVENT_CODES: dict[LockEventKind, int] = {
    LockEventKind.UNLOCKED: 1,
    LockEventKind.DENIED_WRONG_PIN: 2,
    LockEventKind.DENIED_OUTSIDE_WINDOW: 3,
    LockEventKind.DENIED_LOCKED_OUT: 4,
    LockEventKind.RELOCKED: 5,
    LockEventKind.DOOR_OPENED: 6,
    LockEventKind.DOOR_CLOSED: 7,
    LockEventKind.DOOR_HELD_OPEN: 8,
    LockEventKind.LOCKOUT_STARTED: 9,
    LockEventKind.BATTERY: 10,
    LockEventKind.CLOCK_SET: 11,
    LockEventKind.JAM: 12,
    LockEventKind.DENIED_REVOKED: 13,
    LockEventKind.REMOTE_UNLOCKED: 14,
    LockEventKind.FRAMES_REFUSED: 15,
}
EVENT_KINDS: dict[int, LockEventKind] = {code: kind for kind, code in EVENT_CODES.items()}


@dataclass(frozen=True, slots=True)
class LockFrame:
    type: FrameType
    seq: int
    payload: bytes = b""
    key_id: int = 0
    counter: int = 0
    mac: bytes = bytes(MAC_LEN)

    def __post_init__(self) -> None:
        check_fields(self.seq, self.key_id, self.counter, self.mac, self.payload)

    def signed_part(self) -> bytes:
        """The bytes a MAC covers: everything in the body before the MAC."""
        return signed_part(self.type, self.seq, self.key_id, self.counter, self.payload)

    def __bytes__(self) -> bytes:
        return encode(MAGIC, self.signed_part(), self.mac)

    @classmethod
    def from_bytes(cls, data: bytes) -> LockFrame:
        """Decode exactly one frame; raise :class:`FrameError` saying what is wrong."""
        raw = decode(MAGIC, data, "lock")
        try:
            frame_type = FrameType(raw.type)
        except ValueError:
            raise FrameError(f"unknown frame type 0x{raw.type:02x}") from None
        return cls(frame_type, raw.seq, raw.payload, raw.key_id, raw.counter, raw.mac)


class FrameParser(PushParser[LockFrame]):
    """Finds lock frames in a byte stream (see :class:`protocol.framing.PushParser`)."""

    def __init__(self) -> None:
        super().__init__(MAGIC, LockFrame.from_bytes)


def grant_bytes(grant_id: str | None) -> bytes:
    """Grant ids are UUIDs; on the wire they take 16 bytes (zero for none)."""
    return NO_GRANT if grant_id is None else uuid.UUID(grant_id).bytes


def grant_str(raw: bytes) -> str | None:
    return None if raw == NO_GRANT else str(uuid.UUID(bytes=raw))


def _text(value: str, limit: int = 32) -> bytes:
    # cut on a character boundary so the peer always receives valid UTF-8
    raw = value.encode()[:limit].decode(errors="ignore").encode()
    return struct.pack(">B", len(raw)) + raw


def _read_text(payload: bytes, offset: int) -> tuple[str, int]:
    if offset >= len(payload):
        raise FrameError("payload ends inside a text field")
    n = payload[offset]
    end = offset + 1 + n
    if end > len(payload):
        raise FrameError("text field runs past the payload")
    try:
        return payload[offset + 1 : end].decode(), end
    except UnicodeDecodeError:
        raise FrameError("text field is not UTF-8") from None


def _unpack(fmt: str, payload: bytes, what: str) -> tuple[int, ...]:
    try:
        return struct.unpack(fmt, payload)
    except struct.error:
        raise FrameError(f"{what} payload has {len(payload)} bytes") from None


@dataclass(frozen=True, slots=True)
class LockInfo:
    model: str
    firmware: str
    slot_count: int
    clock: int
    event_head: int  # the seq of the newest event the lock holds (0 when none yet)
    locked_out: bool
    battery_pct: int
    door_open: bool
    paired: bool = False  # a trailing byte; an INFO without it comes from an unpaired lock

    def encode(self) -> bytes:
        return (
            _text(self.model)
            + _text(self.firmware)
            + struct.pack(
                ">BIIBBBB",
                self.slot_count,
                self.clock,
                self.event_head,
                self.locked_out,
                self.battery_pct,
                self.door_open,
                self.paired,
            )
        )

    @classmethod
    def decode(cls, payload: bytes) -> LockInfo:
        model, off = _read_text(payload, 0)
        firmware, off = _read_text(payload, off)
        fmt = ">BIIBBBB" if len(payload) - off == 13 else ">BIIBBB"  # older: no paired byte
        fields = _unpack(fmt, payload[off:], "INFO")
        slots, clock, head, out, batt, door, paired = (*fields, 0)[:7]
        return cls(model, firmware, slots, clock, head, bool(out), batt, bool(door), bool(paired))


@dataclass(frozen=True, slots=True)
class SlotEntry:
    slot: int
    start: int
    end: int
    grant_id: str | None
    tag: bytes = bytes(TAG_LEN)  # never sent back by the lock (GET_SLOTS omits it)

    def encode_set(self) -> bytes:
        return (
            struct.pack(">BII", self.slot, self.start, self.end)
            + grant_bytes(self.grant_id)
            + self.tag
        )

    @classmethod
    def decode_set(cls, payload: bytes) -> SlotEntry:
        if len(payload) != 9 + 16 + TAG_LEN:
            raise FrameError(f"SET_SLOT payload has {len(payload)} bytes, not {9 + 16 + TAG_LEN}")
        slot, start, end = struct.unpack_from(">BII", payload)
        return cls(slot, start, end, grant_str(payload[9:25]), payload[25:41])


SLOT_REPORT_LEN = 9 + 16


def encode_slots(entries: list[SlotEntry]) -> bytes:
    out = struct.pack(">B", len(entries))
    for e in entries:
        out += struct.pack(">BII", e.slot, e.start, e.end) + grant_bytes(e.grant_id)
    return out


def decode_slots(payload: bytes) -> list[SlotEntry]:
    if not payload:
        raise FrameError("SLOTS payload is empty")
    count = payload[0]
    if len(payload) != 1 + count * SLOT_REPORT_LEN:
        raise FrameError(f"SLOTS payload has {len(payload)} bytes for {count} slots")
    out = []
    for i in range(count):
        off = 1 + i * SLOT_REPORT_LEN
        slot, start, end = struct.unpack_from(">BII", payload, off)
        out.append(SlotEntry(slot, start, end, grant_str(payload[off + 9 : off + 25])))
    return out


NO_BOOT = 0  # the boot of an event from a lock that has no boot ids (older firmware)


@dataclass(frozen=True, slots=True)
class WireEvent:
    seq: int
    ts: int
    kind: LockEventKind
    slot: int | None = None
    grant_id: str | None = None
    value: int = 0
    boot: int = NO_BOOT  # the run of the lock's event counter this event was numbered in

    def encode(self) -> bytes:
        return struct.pack(
            ">IIIBBH",
            self.boot,
            self.seq,
            self.ts,
            EVENT_CODES[self.kind],
            NO_SLOT if self.slot is None else self.slot,
            self.value,
        ) + grant_bytes(self.grant_id)


LEGACY_EVENT_LEN = 12 + 16  # before boot ids: seq | ts | code | slot | value | grant
EVENT_LEN = 4 + LEGACY_EVENT_LEN
EVENTS_WITH_BOOT = 0x80  # flag in the count byte: every event starts with its boot u32
MAX_EVENTS_PER_FRAME = (MAX_PAYLOAD - 1) // EVENT_LEN


def encode_events(events: list[WireEvent]) -> bytes:
    if len(events) > MAX_EVENTS_PER_FRAME:
        raise LocalProtocolError(f"at most {MAX_EVENTS_PER_FRAME} events fit in one frame")
    return struct.pack(">B", EVENTS_WITH_BOOT | len(events)) + b"".join(e.encode() for e in events)


def decode_events(payload: bytes) -> list[WireEvent]:
    """The events of an EVENTS payload, in either layout (the older one as boot 0)."""
    if not payload:
        raise FrameError("EVENTS payload is empty")
    with_boot = bool(payload[0] & EVENTS_WITH_BOOT)
    count = payload[0] & ~EVENTS_WITH_BOOT
    size = EVENT_LEN if with_boot else LEGACY_EVENT_LEN
    if len(payload) != 1 + count * size:
        raise FrameError(f"EVENTS payload has {len(payload)} bytes for {count} events")
    out = []
    for i in range(count):
        off = 1 + i * size
        boot = NO_BOOT
        if with_boot:
            (boot,) = struct.unpack_from(">I", payload, off)
            off += 4
        seq, ts, code, slot, value = struct.unpack_from(">IIBBH", payload, off)
        kind = EVENT_KINDS.get(code)
        if kind is None:
            raise FrameError(f"unknown event code {code}")
        grant = grant_str(payload[off + 12 : off + 28])
        slot_or_none = None if slot == NO_SLOT else slot
        out.append(WireEvent(seq, ts, kind, slot_or_none, grant, value, boot))
    return out


REVOCATION_LEN = 6  # start_hour u32 | hours u8 | nonce u8
MAX_REVOCATIONS_PER_FRAME = (MAX_PAYLOAD - 1) // REVOCATION_LEN


def encode_revocations(revoked: list[OfflinePinId]) -> bytes:
    """REVOKE_OFFLINE payload: count u8, then each code's id (its expiry follows from it)."""
    if len(revoked) > MAX_REVOCATIONS_PER_FRAME:
        raise LocalProtocolError(f"at most {MAX_REVOCATIONS_PER_FRAME} revocations fit a frame")
    return struct.pack(">B", len(revoked)) + b"".join(
        struct.pack(">IBB", r.start_hour, r.hours, r.nonce) for r in revoked
    )


def decode_revocations(payload: bytes) -> list[OfflinePinId]:
    if not payload:
        raise FrameError("REVOKE_OFFLINE payload is empty")
    count = payload[0]
    if len(payload) != 1 + count * REVOCATION_LEN:
        raise FrameError(f"REVOKE_OFFLINE payload has {len(payload)} bytes for {count} codes")
    out = []
    for i in range(count):
        fields = struct.unpack_from(">IBB", payload, 1 + i * REVOCATION_LEN)
        try:
            out.append(OfflinePinId(*fields))
        except OfflinePinError as exc:
            raise FrameError(f"revocation {i}: {exc}") from None
    return out


def encode_u32(value: int) -> bytes:
    return struct.pack(">I", value)


def decode_u32(payload: bytes, what: str) -> int:
    return int(_unpack(">I", payload, what)[0])


def encode_nack(code: NackCode, message: str) -> bytes:
    return struct.pack(">B", code) + _text(message, 200)


def encode_unlock_ack(seq: int, boot: int) -> bytes:
    """The ACK to UNLOCK: the ``REMOTE_UNLOCKED`` event's seq and boot."""
    return struct.pack(">II", seq, boot)


def decode_unlock_ack(payload: bytes) -> tuple[int, int]:
    """``(seq, boot)`` of an ACK to UNLOCK; a lock from before boot ids sends the seq only."""
    if len(payload) == 4:
        return decode_u32(payload, "UNLOCK ACK"), NO_BOOT
    seq, boot = _unpack(">II", payload, "UNLOCK ACK")
    return seq, boot


def decode_nack(payload: bytes) -> tuple[int, str]:
    if not payload:
        raise FrameError("NACK payload is empty")
    message, _ = _read_text(payload, 1)
    return payload[0], message
