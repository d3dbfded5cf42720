"""The call-number display wire codec: binary frames between an edge agent and a display.

Sans-IO, like :mod:`protocol.lock_wire` and in the same frame family, with its own magic so
that a display and a lock plugged into the wrong port refuse each other's frames::

    magic   2   0xD5 0x44
    length  2   length of body (BODY_FIXED + len(payload)), at most MAX_BODY
    body        version 1 | type 1 | seq 2 | key_id 1 | counter 4 | payload n | mac 8
    crc     2   CRC-16/CCITT-FALSE over length and body

``key_id``, ``counter`` and ``mac`` authenticate a frame (:mod:`protocol.display_auth`);
``key_id`` 0 is unauthenticated (counter 0, zero MAC). A reply carries its request's ``seq``.

What a display shows is a *document*: :class:`DisplayState` (``SHOW_STATE``) restores a
power-cycled display in one frame; ``SET_CALLS``, ``SET_ANNOUNCEMENT``, ``SET_BRIGHTNESS``
and ``SET_STANDBY`` change one part of it. Every one is idempotent: sending it twice shows
the same thing and chimes once, because a call carries a ``call_seq`` that the caller
bumps on each call *and* recall; the display chimes when a room's (number, call_seq)
changes. A display that booted (or lost its state) says ``HELLO`` until it gets a
``SHOW_STATE`` and refuses partial updates with ``NACK NEED_STATE`` meanwhile.

**Numbers only.** A call is a room label and a ticket label of the form ``A-023`` (up to
three capital letters, an optional dash, up to five digits): the protocol has no field a
patient's name fits in, and a decoder refuses a ticket label that is not of that form.
The announcement line is free text (UTF-8, Japanese included) for the city and the clinic,
never for patient data.

**Firmware updates.** ``UPDATE_BEGIN`` / ``UPDATE_CHUNK`` / ``UPDATE_COMMIT`` carry a signed
image (:mod:`protocol.firmware_image`, payloads in :mod:`protocol.firmware_transfer`), each
answered by ``UPDATE_ACK``. After the ACK to COMMIT the display reboots into the new
version and says ``HELLO`` (reason ``FIRMWARE_UPDATE``), so the agent sends its state again.
It refuses to reboot while an urgent announcement is on screen (``BUSY``).

**Pairing.** ``PAIR`` gives the display its link key (:class:`protocol.display_auth.
DisplayPairRequest`), in clear, inside the window its pairing button opens, as a lock's.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import TypeVar

from protocol.errors import FrameError, LocalProtocolError
from protocol.firmware_image import Refusal
from protocol.framing import (
    MAC_LEN,
    PushParser,
    check_fields,
    decode,
    encode,
    signed_part,
)

MAGIC = b"\xd5\x44"

MAX_ROOMS = 16  # rooms one display calls for
MAX_NEXT = 8  # "next" numbers one display lists
ROOM_MAX_BYTES = 16  # "3", "診察室12": UTF-8 bytes
ANNOUNCEMENT_MAX_BYTES = 240  # 80 Japanese characters
TEXT_MAX_BYTES = 200  # NACK messages, model and firmware names
MINUTES_PER_DAY = 24 * 60
BRIGHTNESS_MAX = 100
TICKET_RE = re.compile(r"(?:[A-Z]{1,3}-?)?[0-9]{1,5}")


class DisplayFrameType(IntEnum):
    # agent -> display
    GET_STATUS = 0x01
    SET_TIME = 0x02
    SHOW_STATE = 0x03  # the whole document: restores a power-cycled display in one frame
    SET_CALLS = 0x04
    SET_ANNOUNCEMENT = 0x05
    SET_BRIGHTNESS = 0x06
    SET_STANDBY = 0x07
    UPDATE_BEGIN = 0x08  # a signed image's header and signature: starts (or restarts) a transfer
    UPDATE_CHUNK = 0x09  # offset u32 + payload bytes
    UPDATE_COMMIT = 0x0A  # the payload's SHA-256: verify, install, reboot into it
    PAIR = 0x0B  # link key in clear: only inside the display's pairing-button window
    # display -> agent
    ACK = 0x80  # payload: the state_version the display now holds
    STATUS = 0x81
    UPDATE_ACK = 0x82  # received u32 | total u32 (protocol.firmware_transfer)
    NACK = 0x8F
    HELLO = 0x90  # unsolicited: "I booted with no state", repeated until SHOW_STATE arrives


REQUEST_TYPES = frozenset(t for t in DisplayFrameType if t < 0x80)


class DisplayNackCode(IntEnum):
    BAD_REQUEST = 1
    NOT_A_REQUEST = 2
    NEED_STATE = 3  # a partial update before any SHOW_STATE: send the whole state
    AUTH_FAILED = 4
    # firmware updates (protocol.firmware_image): the old version keeps running after each
    BAD_IMAGE = 5  # not an image, truncated, or too large
    WRONG_DEVICE = 6  # an image for a lock, or for another display model
    BAD_SIGNATURE = 7  # signed by an unknown release key, or the signature does not verify
    NOT_NEWER = 8  # a downgrade, or the version already running
    HASH_MISMATCH = 9  # the chunks received are not the payload the header names
    UPDATE_SEQUENCE = 10  # CHUNK/COMMIT without BEGIN, a gap, or COMMIT before the last byte
    BUSY = 11  # an urgent announcement is on screen: no reboot now
    NOT_PAIRING = 12  # PAIR outside the window: press the pairing button on the display
    # a second PAIR in one pairing window: send it again with the code the display shows
    CONFIRM_CODE = 13


IMAGE_NACKS: dict[Refusal, DisplayNackCode] = {
    Refusal.MALFORMED: DisplayNackCode.BAD_IMAGE,
    Refusal.TRUNCATED: DisplayNackCode.BAD_IMAGE,
    Refusal.TOO_LARGE: DisplayNackCode.BAD_IMAGE,
    Refusal.WRONG_KIND: DisplayNackCode.WRONG_DEVICE,
    Refusal.WRONG_MODEL: DisplayNackCode.WRONG_DEVICE,
    Refusal.UNKNOWN_KEY: DisplayNackCode.BAD_SIGNATURE,
    Refusal.BAD_SIGNATURE: DisplayNackCode.BAD_SIGNATURE,
    Refusal.HASH_MISMATCH: DisplayNackCode.HASH_MISMATCH,
    Refusal.NOT_NEWER: DisplayNackCode.NOT_NEWER,
}


class AnnouncementLevel(IntEnum):
    INFO = 0
    URGENT = 1  # disaster information: shown even in standby


class BootReason(IntEnum):
    POWER_ON = 0
    POWER_CYCLE = 1
    WATCHDOG = 2
    FIRMWARE_UPDATE = 3  # rebooted into a new firmware version


@dataclass(frozen=True, slots=True)
class DisplayFrame:
    type: DisplayFrameType
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
    def from_bytes(cls, data: bytes) -> DisplayFrame:
        """Decode exactly one frame; raise :class:`FrameError` saying what is wrong."""
        raw = decode(MAGIC, data, "display")
        try:
            frame_type = DisplayFrameType(raw.type)
        except ValueError:
            raise FrameError(f"unknown display frame type 0x{raw.type:02x}") from None
        return cls(frame_type, raw.seq, raw.payload, raw.key_id, raw.counter, raw.mac)


class DisplayFrameParser(PushParser[DisplayFrame]):
    """Finds display frames in a byte stream (see :class:`protocol.framing.PushParser`)."""

    def __init__(self) -> None:
        super().__init__(MAGIC, DisplayFrame.from_bytes)


# ------------------------------------------------------------------ payload helpers


class _Writer:
    def __init__(self) -> None:
        self.out = bytearray()

    def pack(self, fmt: str, *values: int) -> _Writer:
        self.out += struct.pack(fmt, *values)
        return self

    def text(self, value: str) -> _Writer:
        raw = value.encode()
        self.out += struct.pack(">B", len(raw)) + raw
        return self


class _Reader:
    """A cursor over a payload; every read raises :class:`FrameError` when it runs out."""

    def __init__(self, payload: bytes, what: str) -> None:
        self.payload = payload
        self.what = what
        self.off = 0

    def unpack(self, fmt: str) -> tuple[int, ...]:
        size = struct.calcsize(fmt)
        if self.off + size > len(self.payload):
            raise FrameError(f"{self.what} payload ends early ({len(self.payload)} bytes)")
        values = struct.unpack_from(fmt, self.payload, self.off)
        self.off += size
        return values

    def u8(self) -> int:
        return self.unpack(">B")[0]

    def u32(self) -> int:
        return self.unpack(">I")[0]

    def text(self, limit: int) -> str:
        n = self.u8()
        if n > limit:
            raise FrameError(f"{self.what}: text of {n} bytes > {limit}")
        end = self.off + n
        if end > len(self.payload):
            raise FrameError(f"{self.what}: text field runs past the payload")
        raw = self.payload[self.off : end]
        self.off = end
        try:
            return raw.decode()
        except UnicodeDecodeError:
            raise FrameError(f"{self.what}: text field is not UTF-8") from None

    def done(self) -> None:
        if self.off != len(self.payload):
            extra = len(self.payload) - self.off
            raise FrameError(f"{self.what} payload has {extra} bytes too many")


T = TypeVar("T")


def _decoding(what: str, build: Callable[[], T]) -> T:
    """Run a decoder; a value the dataclasses refuse is the peer's fault, not ours."""
    try:
        return build()
    except LocalProtocolError as exc:
        raise FrameError(f"{what}: {exc}") from None


def _check_text(value: str, limit: int, what: str) -> None:
    if len(value.encode()) > limit:
        raise LocalProtocolError(f"{what} is longer than {limit} UTF-8 bytes")
    if not value.isprintable():
        raise LocalProtocolError(f"{what} holds control characters")


def check_ticket(label: str) -> None:
    """Raise LocalProtocolError unless ``label`` is a ticket number like ``A-023``."""
    if not TICKET_RE.fullmatch(label):
        raise LocalProtocolError(
            f"ticket label {label!r} is not a number like A-023 (names have no place here)"
        )


# ------------------------------------------------------------------------- payloads


@dataclass(frozen=True, slots=True)
class RoomCall:
    """Room ``room`` calls ticket ``number``; ``call_seq`` goes up on every call and recall."""

    room: str
    number: str
    call_seq: int = 0

    def __post_init__(self) -> None:
        if not self.room:
            raise LocalProtocolError("a room label cannot be empty")
        _check_text(self.room, ROOM_MAX_BYTES, "room label")
        check_ticket(self.number)
        if not 0 <= self.call_seq <= 0xFFFF:
            raise LocalProtocolError(f"call_seq {self.call_seq} does not fit in 16 bits")

    def _write(self, w: _Writer) -> None:
        w.text(self.room).text(self.number).pack(">H", self.call_seq)

    @classmethod
    def _read(cls, r: _Reader) -> RoomCall:
        room = r.text(ROOM_MAX_BYTES)
        number = r.text(9)
        (call_seq,) = r.unpack(">H")
        return cls(room, number, call_seq)


@dataclass(frozen=True, slots=True)
class Calls:
    """What each room calls now, and the next few numbers (``SET_CALLS``)."""

    rooms: tuple[RoomCall, ...] = ()
    next_numbers: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if len(self.rooms) > MAX_ROOMS:
            raise LocalProtocolError(f"at most {MAX_ROOMS} rooms fit a display")
        if len({c.room for c in self.rooms}) != len(self.rooms):
            raise LocalProtocolError("a room is listed twice")
        if len(self.next_numbers) > MAX_NEXT:
            raise LocalProtocolError(f"at most {MAX_NEXT} next numbers fit a display")
        for number in self.next_numbers:
            check_ticket(number)

    def _write(self, w: _Writer) -> None:
        w.pack(">B", len(self.rooms))
        for call in self.rooms:
            call._write(w)
        w.pack(">B", len(self.next_numbers))
        for number in self.next_numbers:
            w.text(number)

    @classmethod
    def _read(cls, r: _Reader) -> Calls:
        count = r.u8()
        if count > MAX_ROOMS:
            raise FrameError(f"{r.what}: {count} rooms > {MAX_ROOMS}")
        rooms = tuple(RoomCall._read(r) for _ in range(count))
        count = r.u8()
        if count > MAX_NEXT:
            raise FrameError(f"{r.what}: {count} next numbers > {MAX_NEXT}")
        return cls(rooms, tuple(r.text(9) for _ in range(count)))

    def encode(self) -> bytes:
        w = _Writer()
        self._write(w)
        return bytes(w.out)

    @classmethod
    def decode(cls, payload: bytes) -> Calls:
        def build() -> Calls:
            r = _Reader(payload, "SET_CALLS")
            calls = cls._read(r)
            r.done()
            return calls

        return _decoding("SET_CALLS", build)


@dataclass(frozen=True, slots=True)
class Announcement:
    """The announcement line; empty ``text`` clears it. ``expires_at`` 0: until replaced."""

    text: str = ""
    level: AnnouncementLevel = AnnouncementLevel.INFO
    expires_at: int = 0  # UTC epoch seconds, as the display's clock counts

    def __post_init__(self) -> None:
        _check_text(self.text, ANNOUNCEMENT_MAX_BYTES, "announcement")
        if not 0 <= self.expires_at <= 0xFFFFFFFF:
            raise LocalProtocolError(f"expires_at {self.expires_at} does not fit in 32 bits")

    def _write(self, w: _Writer) -> None:
        w.pack(">BI", self.level, self.expires_at).text(self.text)

    @classmethod
    def _read(cls, r: _Reader) -> Announcement:
        level, expires_at = r.unpack(">BI")
        try:
            kind = AnnouncementLevel(level)
        except ValueError:
            raise FrameError(f"{r.what}: unknown announcement level {level}") from None
        return cls(r.text(ANNOUNCEMENT_MAX_BYTES), kind, expires_at)

    def encode(self) -> bytes:
        w = _Writer()
        self._write(w)
        return bytes(w.out)

    @classmethod
    def decode(cls, payload: bytes) -> Announcement:
        def build() -> Announcement:
            r = _Reader(payload, "SET_ANNOUNCEMENT")
            announcement = cls._read(r)
            r.done()
            return announcement

        return _decoding("SET_ANNOUNCEMENT", build)


@dataclass(frozen=True, slots=True)
class StandbySchedule:
    """Daily on and off times in the facility's local time (minutes after midnight).

    ``on_minute == off_minute`` means always on. The schedule may wrap midnight (on 22:00,
    off 06:00). ``utc_offset_min`` turns the display's UTC clock into local time (+540 for
    Asia/Tokyo, which has no daylight saving).
    """

    on_minute: int = 0
    off_minute: int = 0
    utc_offset_min: int = 540

    def __post_init__(self) -> None:
        for name in ("on_minute", "off_minute"):
            if not 0 <= getattr(self, name) < MINUTES_PER_DAY:
                raise LocalProtocolError(f"{name} must be 0..{MINUTES_PER_DAY - 1}")
        if not -720 <= self.utc_offset_min <= 840:
            raise LocalProtocolError("utc_offset_min must be -720..840")

    def is_on(self, epoch: int) -> bool:
        """Whether the screen is on (not in standby) at UTC ``epoch``."""
        if self.on_minute == self.off_minute:
            return True
        minute = ((epoch // 60) + self.utc_offset_min) % MINUTES_PER_DAY
        if self.on_minute < self.off_minute:
            return self.on_minute <= minute < self.off_minute
        return minute >= self.on_minute or minute < self.off_minute

    def _write(self, w: _Writer) -> None:
        w.pack(">HHh", self.on_minute, self.off_minute, self.utc_offset_min)

    @classmethod
    def _read(cls, r: _Reader) -> StandbySchedule:
        return cls(*r.unpack(">HHh"))

    def encode(self) -> bytes:
        w = _Writer()
        self._write(w)
        return bytes(w.out)

    @classmethod
    def decode(cls, payload: bytes) -> StandbySchedule:
        def build() -> StandbySchedule:
            r = _Reader(payload, "SET_STANDBY")
            schedule = cls._read(r)
            r.done()
            return schedule

        return _decoding("SET_STANDBY", build)


@dataclass(frozen=True, slots=True)
class DisplayState:
    """Everything a display shows (``SHOW_STATE``): one frame restores a power-cycled one.

    ``time`` is the agent's clock (UTC epoch seconds) or 0 when the agent has no trusted
    time, in which case the display keeps its own clock.
    """

    version: int
    calls: Calls = Calls()
    announcement: Announcement = Announcement()
    brightness: int = BRIGHTNESS_MAX
    chime_volume: int = 50  # 0 mutes the chime
    standby: StandbySchedule = StandbySchedule()
    time: int = 0

    def __post_init__(self) -> None:
        for name in ("version", "time"):
            if not 0 <= getattr(self, name) <= 0xFFFFFFFF:
                raise LocalProtocolError(f"{name} does not fit in 32 bits")
        for name in ("brightness", "chime_volume"):
            if not 0 <= getattr(self, name) <= 100:
                raise LocalProtocolError(f"{name} must be 0..100")

    def encode(self) -> bytes:
        w = _Writer().pack(">IIBB", self.version, self.time, self.brightness, self.chime_volume)
        self.standby._write(w)
        self.calls._write(w)
        self.announcement._write(w)
        return bytes(w.out)

    @classmethod
    def decode(cls, payload: bytes) -> DisplayState:
        def build() -> DisplayState:
            r = _Reader(payload, "SHOW_STATE")
            version, time, brightness, volume = r.unpack(">IIBB")
            standby = StandbySchedule._read(r)
            calls = Calls._read(r)
            announcement = Announcement._read(r)
            r.done()
            return cls(version, calls, announcement, brightness, volume, standby, time)

        return _decoding("SHOW_STATE", build)


@dataclass(frozen=True, slots=True)
class DisplayStatus:
    """What ``GET_STATUS`` answers."""

    model: str
    firmware: str
    state_version: int
    clock: int  # the display's UTC epoch seconds, 0 when it has no time
    boot_count: int
    brightness: int
    has_state: bool
    standby: bool
    provisioned: bool
    bad_frames: int

    def __post_init__(self) -> None:
        _check_text(self.model, TEXT_MAX_BYTES, "model")
        _check_text(self.firmware, TEXT_MAX_BYTES, "firmware")
        for name in ("state_version", "clock", "boot_count", "bad_frames"):
            if not 0 <= getattr(self, name) <= 0xFFFFFFFF:
                raise LocalProtocolError(f"{name} does not fit in 32 bits")
        if not 0 <= self.brightness <= BRIGHTNESS_MAX:
            raise LocalProtocolError("brightness must be 0..100")

    def encode(self) -> bytes:
        flags = self.has_state | self.standby << 1 | self.provisioned << 2
        return bytes(
            _Writer()
            .pack(
                ">IIIBBI",
                self.state_version,
                self.clock,
                self.boot_count,
                self.brightness,
                flags,
                self.bad_frames,
            )
            .text(self.model)
            .text(self.firmware)
            .out
        )

    @classmethod
    def decode(cls, payload: bytes) -> DisplayStatus:
        def build() -> DisplayStatus:
            r = _Reader(payload, "STATUS")
            version, clock, boots, brightness, flags, bad = r.unpack(">IIIBBI")
            model, firmware = r.text(TEXT_MAX_BYTES), r.text(TEXT_MAX_BYTES)
            r.done()
            return cls(
                model,
                firmware,
                version,
                clock,
                boots,
                brightness,
                bool(flags & 1),
                bool(flags & 2),
                bool(flags & 4),
                bad,
            )

        return _decoding("STATUS", build)


@dataclass(frozen=True, slots=True)
class Hello:
    """The unsolicited frame of a display with no state: the agent answers with SHOW_STATE."""

    model: str
    firmware: str
    boot_count: int
    reason: BootReason = BootReason.POWER_ON

    def __post_init__(self) -> None:
        _check_text(self.model, TEXT_MAX_BYTES, "model")
        _check_text(self.firmware, TEXT_MAX_BYTES, "firmware")
        if not 0 <= self.boot_count <= 0xFFFFFFFF:
            raise LocalProtocolError("boot_count does not fit in 32 bits")

    def encode(self) -> bytes:
        w = _Writer().pack(">IB", self.boot_count, self.reason).text(self.model)
        return bytes(w.text(self.firmware).out)

    @classmethod
    def decode(cls, payload: bytes) -> Hello:
        def build() -> Hello:
            r = _Reader(payload, "HELLO")
            boots, reason = r.unpack(">IB")
            try:
                boot_reason = BootReason(reason)
            except ValueError:
                raise FrameError(f"HELLO: unknown boot reason {reason}") from None
            model, firmware = r.text(TEXT_MAX_BYTES), r.text(TEXT_MAX_BYTES)
            r.done()
            return cls(model, firmware, boots, boot_reason)

        return _decoding("HELLO", build)


def encode_brightness(value: int) -> bytes:
    if not 0 <= value <= BRIGHTNESS_MAX:
        raise LocalProtocolError("brightness must be 0..100")
    return struct.pack(">B", value)


def decode_brightness(payload: bytes) -> int:
    if len(payload) != 1:
        raise FrameError(f"SET_BRIGHTNESS payload has {len(payload)} bytes, not 1")
    if payload[0] > BRIGHTNESS_MAX:
        raise FrameError(f"brightness {payload[0]} > {BRIGHTNESS_MAX}")
    return payload[0]


def encode_u32(value: int) -> bytes:
    if not 0 <= value <= 0xFFFFFFFF:
        raise LocalProtocolError(f"{value} does not fit in 32 bits")
    return struct.pack(">I", value)


def decode_u32(payload: bytes, what: str) -> int:
    if len(payload) != 4:
        raise FrameError(f"{what} payload has {len(payload)} bytes, not 4")
    return int(struct.unpack(">I", payload)[0])


def encode_nack(code: DisplayNackCode, message: str) -> bytes:
    # cut on a character boundary so the peer always receives valid UTF-8
    raw = message.encode()[:TEXT_MAX_BYTES].decode(errors="ignore").encode()
    return struct.pack(">BB", code, len(raw)) + raw


def decode_nack(payload: bytes) -> tuple[int, str]:
    """``(code, message)``; the code is an int, since a newer display may send new codes."""
    r = _Reader(payload, "NACK")
    code = r.u8()
    message = r.text(TEXT_MAX_BYTES)
    r.done()
    return code, message
