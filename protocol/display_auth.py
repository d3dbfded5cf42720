"""Display frame authentication, sans-IO: the lock's scheme, under its own domain.

A display is not a security device, but whoever can write to its serial line could call a
patient to the wrong room or show a fake evacuation notice. So display frames leave the
same room as lock frames (``key_id``, ``counter``, 8-byte ``mac``) and use the same
construction (:mod:`protocol.lock_auth`)::

    mac = HMAC-SHA256(link_key, DOMAIN || direction || bound || signed_part)[:8]

with a domain label so a MAC made for a lock can never pass for a display's, even under
the same key. Counters are strictly increasing per direction (replays are refused);
``bound`` binds a reply to its request's counter.

A display with a key (*provisioned*) takes state only in sealed frames, answers
``GET_STATUS`` in clear (so a technician can see what is on the line), and seals its
replies and HELLO. A display without a key takes unauthenticated frames: the simulator's
default until the display gets a pairing flow like the lock's.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from dataclasses import dataclass, field, replace
from enum import IntEnum

from protocol.display_wire import DisplayFrame
from protocol.framing import MAC_LEN
from protocol.lock_auth import (
    COUNTER_MAX,
    KEY_ID_LINK,
    KEY_ID_NONE,
    KEY_LEN,
    AuthError,
    CounterExhaustedError,
)

DOMAIN = b"denen-display-v1"

__all__ = [
    "DOMAIN",
    "KEY_ID_LINK",
    "KEY_ID_NONE",
    "KEY_LEN",
    "AuthError",
    "CounterExhaustedError",
    "DisplayDirection",
    "DisplayLinkAuth",
    "display_frame_mac",
]


class DisplayDirection(IntEnum):
    TO_DISPLAY = 0x11
    TO_AGENT = 0x12


def display_frame_mac(
    key: bytes, direction: DisplayDirection, frame: DisplayFrame, bound: int = 0
) -> bytes:
    """The 8-byte MAC of ``frame`` sent in ``direction``, answering request ``bound``."""
    data = DOMAIN + struct.pack(">BI", direction, bound) + frame.signed_part()
    return hmac.new(key, data, hashlib.sha256).digest()[:MAC_LEN]


@dataclass
class DisplayLinkAuth:
    """One side of an authenticated display link: seals what it sends, checks what it gets."""

    key: bytes = field(repr=False)
    sends: DisplayDirection
    send_counter: int = 0
    recv_counter: int = 0

    def __post_init__(self) -> None:
        if len(self.key) != KEY_LEN:
            raise ValueError(f"a display link key is {KEY_LEN} bytes")

    @property
    def receives(self) -> DisplayDirection:
        if self.sends is DisplayDirection.TO_DISPLAY:
            return DisplayDirection.TO_AGENT
        return DisplayDirection.TO_DISPLAY

    def seal(self, frame: DisplayFrame, *, bound: int = 0) -> DisplayFrame:
        """``frame`` with key id, the next counter and its MAC."""
        if self.send_counter >= COUNTER_MAX:
            raise CounterExhaustedError("the display link counter is used up: give a new key")
        self.send_counter += 1
        unsigned = replace(frame, key_id=KEY_ID_LINK, counter=self.send_counter)
        return replace(unsigned, mac=display_frame_mac(self.key, self.sends, unsigned, bound))

    def check(self, frame: DisplayFrame, *, bound: int = 0) -> DisplayFrame:
        """Accept ``frame`` (and remember its counter) or raise :class:`AuthError`."""
        if frame.key_id == KEY_ID_NONE:
            raise AuthError("frame is not authenticated")
        if frame.key_id != KEY_ID_LINK:
            raise AuthError(f"key {frame.key_id} is not provisioned")
        expected = display_frame_mac(self.key, self.receives, frame, bound)
        if not hmac.compare_digest(expected, frame.mac):
            raise AuthError("MAC does not match: forged, corrupted, or another key")
        if frame.counter <= self.recv_counter:
            raise AuthError("counter is not newer than the last accepted one: a replay")
        self.recv_counter = frame.counter
        return frame
