"""The binary frame family shared by every serial/BLE device protocol (locks, displays).

Sans-IO. A frame is::

    magic   2   one pair per device protocol, so a device on the wrong port ignores us
    length  2   length of body (BODY_FIXED + len(payload)), at most MAX_BODY
    body        version 1 | type 1 | seq 2 | key_id 1 | counter 4 | payload n | mac 8
    crc     2   CRC-16/CCITT-FALSE over length and body

Each protocol (``protocol.lock_wire``, ``protocol.display_wire``) keeps its own frame
class, with its own type enum, and delegates the bytes to :func:`encode` / :func:`decode`;
:class:`PushParser` finds whole frames in a byte stream, resynchronising after garbage.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from protocol.errors import FrameError, LocalProtocolError

WIRE_VERSION = 1
MAC_LEN = 8
BODY_FIXED = 1 + 1 + 2 + 1 + 4 + MAC_LEN
MAX_PAYLOAD = 1024
MAX_BODY = BODY_FIXED + MAX_PAYLOAD
HEADER_LEN = 2 + 2
CRC_LEN = 2


def crc16(data: bytes, crc: int = 0xFFFF) -> int:
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF), the common UART choice."""
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
            crc &= 0xFFFF
    return crc


@dataclass(frozen=True, slots=True)
class RawFrame:
    """A decoded frame before its protocol gives ``type`` a meaning."""

    type: int
    seq: int
    key_id: int
    counter: int
    payload: bytes
    mac: bytes


def check_fields(seq: int, key_id: int, counter: int, mac: bytes, payload: bytes) -> None:
    """Raise :class:`LocalProtocolError` for a frame we must not build."""
    if not 0 <= seq <= 0xFFFF:
        raise LocalProtocolError(f"seq {seq} does not fit in 16 bits")
    if not 0 <= key_id <= 0xFF:
        raise LocalProtocolError(f"key_id {key_id} does not fit in 8 bits")
    if not 0 <= counter <= 0xFFFFFFFF:
        raise LocalProtocolError(f"counter {counter} does not fit in 32 bits")
    if len(mac) != MAC_LEN:
        raise LocalProtocolError(f"mac must be {MAC_LEN} bytes")
    if len(payload) > MAX_PAYLOAD:
        raise LocalProtocolError(f"payload of {len(payload)} bytes > {MAX_PAYLOAD}")


def signed_part(ftype: int, seq: int, key_id: int, counter: int, payload: bytes) -> bytes:
    """The bytes a MAC covers: everything in the body before the MAC."""
    return struct.pack(">BBHBI", WIRE_VERSION, ftype, seq, key_id, counter) + payload


def encode(magic: bytes, signed: bytes, mac: bytes) -> bytes:
    """A whole frame from its signed part and MAC."""
    body = signed + mac
    length = struct.pack(">H", len(body))
    return magic + length + body + struct.pack(">H", crc16(length + body))


def decode(magic: bytes, data: bytes, what: str) -> RawFrame:
    """Decode exactly one frame; raise :class:`FrameError` saying what is wrong."""
    if len(data) < HEADER_LEN + BODY_FIXED + CRC_LEN:
        raise FrameError(f"frame of {len(data)} bytes is shorter than the minimum")
    if data[:2] != magic:
        raise FrameError(f"frame does not start with the {what} magic bytes")
    (length,) = struct.unpack_from(">H", data, 2)
    if length < BODY_FIXED or length > MAX_BODY:
        raise FrameError(f"body length {length} out of range {BODY_FIXED}..{MAX_BODY}")
    if len(data) != HEADER_LEN + length + CRC_LEN:
        raise FrameError(f"frame is {len(data)} bytes, its header says {length + 6}")
    body = data[HEADER_LEN : HEADER_LEN + length]
    (crc,) = struct.unpack_from(">H", data, HEADER_LEN + length)
    if crc != crc16(data[2 : HEADER_LEN + length]):
        raise FrameError("CRC mismatch")
    version, ftype, seq, key_id, counter = struct.unpack_from(">BBHBI", body, 0)
    if version != WIRE_VERSION:
        raise FrameError(f"wire version {version} is not {WIRE_VERSION}")
    return RawFrame(ftype, seq, key_id, counter, bytes(body[9:-MAC_LEN]), bytes(body[-MAC_LEN:]))


F = TypeVar("F")


@dataclass
class PushParser(Generic[F]):
    """Push parser: ``feed(data)`` returns the whole frames found so far.

    After garbage, a truncated frame or a bad CRC it skips to the next magic and goes on;
    ``dropped_bytes`` and ``bad_frames`` count what was thrown away.
    """

    magic: bytes
    from_bytes: Callable[[bytes], F]
    dropped_bytes: int = 0
    bad_frames: int = 0
    _buf: bytearray = field(default_factory=bytearray)

    def feed(self, data: bytes) -> list[F]:
        self._buf += data
        frames: list[F] = []
        magic = self.magic
        while True:
            start = self._buf.find(magic)
            if start < 0:
                # keep a trailing first magic byte: the second may be in the next chunk
                keep = 1 if self._buf[-1:] == magic[:1] else 0
                self._drop(len(self._buf) - keep)
                return frames
            if start:
                self._drop(start)
            if len(self._buf) < HEADER_LEN:
                return frames
            (length,) = struct.unpack_from(">H", self._buf, 2)
            if length < BODY_FIXED or length > MAX_BODY:
                self.bad_frames += 1
                self._drop(1)
                continue
            total = HEADER_LEN + length + CRC_LEN
            if len(self._buf) < total:
                return frames
            try:
                frames.append(self.from_bytes(bytes(self._buf[:total])))
            except FrameError:
                self.bad_frames += 1
                self._drop(1)  # resync from the next magic inside this span
                continue
            del self._buf[:total]

    def _drop(self, n: int) -> None:
        if n > 0:
            del self._buf[:n]
            self.dropped_bytes += n

    @property
    def buffered(self) -> int:
        return len(self._buf)
