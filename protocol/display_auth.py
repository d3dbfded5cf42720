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

from dataclasses import dataclass
from enum import IntEnum
from typing import ClassVar

from protocol.display_wire import DisplayFrame
from protocol.lock_auth import (
    KEY_ID_LINK,
    KEY_ID_NONE,
    KEY_LEN,
    AuthError,
    CounterExhaustedError,
    SealedLink,
    sealed_mac,
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
    return sealed_mac(key, DOMAIN, direction, frame, bound)


@dataclass
class DisplayLinkAuth(SealedLink[DisplayFrame]):
    """One side of an authenticated display link (:class:`protocol.lock_auth.SealedLink`)."""

    sends: DisplayDirection

    DOMAIN: ClassVar[bytes] = DOMAIN
    EXHAUSTED: ClassVar[str] = "the display link counter is used up: give a new key"

    def __post_init__(self) -> None:
        if len(self.key) != KEY_LEN:
            raise ValueError(f"a display link key is {KEY_LEN} bytes")

    @property
    def receives(self) -> DisplayDirection:
        if self.sends is DisplayDirection.TO_DISPLAY:
            return DisplayDirection.TO_AGENT
        return DisplayDirection.TO_DISPLAY
