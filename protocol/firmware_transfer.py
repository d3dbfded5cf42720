"""The payloads of a firmware update transfer, shared by the lock and display protocols.

Sans-IO. An update is three requests over a device's authenticated link (the frame types
are in :mod:`protocol.lock_wire` and :mod:`protocol.display_wire`), each answered by
``UPDATE_ACK`` or a NACK::

    UPDATE_BEGIN   image head: header || signature (protocol.firmware_image), at most 153 B
    UPDATE_CHUNK   offset u32 | 1..MAX_CHUNK payload bytes
    UPDATE_COMMIT  the payload's SHA-256 (32 B, as in the header): which image to install
    UPDATE_ACK     received u32 | total u32: payload bytes the device holds, of how many

Every request is safe to repeat, as the agent's channels retry on silence: BEGIN restarts
the transfer; a CHUNK that repeats bytes the device already holds is acknowledged again
(if they are the same bytes); a COMMIT of the image the device already runs is
acknowledged again. After the ACK to COMMIT the device reboots into the new version.
"""

from __future__ import annotations

import struct

from protocol.errors import FrameError, LocalProtocolError
from protocol.firmware_image import SHA256_LEN
from protocol.framing import MAX_PAYLOAD

OFFSET_LEN = 4
MAX_CHUNK = MAX_PAYLOAD - OFFSET_LEN  # 1020: one chunk fills one frame


def encode_chunk(offset: int, data: bytes) -> bytes:
    if not 0 <= offset <= 0xFFFFFFFF:
        raise LocalProtocolError(f"offset {offset} does not fit in 32 bits")
    if not 1 <= len(data) <= MAX_CHUNK:
        raise LocalProtocolError(f"a chunk holds 1..{MAX_CHUNK} bytes, not {len(data)}")
    return struct.pack(">I", offset) + data


def decode_chunk(payload: bytes) -> tuple[int, bytes]:
    """``(offset, data)``; FrameError when the payload holds no data."""
    if len(payload) <= OFFSET_LEN:
        raise FrameError(f"UPDATE_CHUNK payload has {len(payload)} bytes: no data")
    (offset,) = struct.unpack_from(">I", payload)
    return offset, bytes(payload[OFFSET_LEN:])


def encode_commit(sha256: bytes) -> bytes:
    if len(sha256) != SHA256_LEN:
        raise LocalProtocolError(f"UPDATE_COMMIT carries a {SHA256_LEN}-byte SHA-256")
    return bytes(sha256)


def decode_commit(payload: bytes) -> bytes:
    if len(payload) != SHA256_LEN:
        raise FrameError(f"UPDATE_COMMIT payload has {len(payload)} bytes, not {SHA256_LEN}")
    return bytes(payload)


def encode_progress(received: int, total: int) -> bytes:
    if not 0 <= received <= total <= 0xFFFFFFFF:
        raise LocalProtocolError(f"progress {received}/{total} is not 0 <= received <= total")
    return struct.pack(">II", received, total)


def decode_progress(payload: bytes) -> tuple[int, int]:
    """``(received, total)`` from ``UPDATE_ACK``."""
    if len(payload) != 8:
        raise FrameError(f"UPDATE_ACK payload has {len(payload)} bytes, not 8")
    received, total = struct.unpack(">II", payload)
    if received > total:
        raise FrameError(f"UPDATE_ACK says {received} of {total} bytes")
    return int(received), int(total)
