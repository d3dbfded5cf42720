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
replies and HELLO; the agent sends it sealed frames only. It gets its key at pairing, as a
lock does (``denen provision display pair``): :class:`DisplayPairRequest` carries a fresh
random link key and the time in clear, taken only in the window the display's pairing
button opens, a second one in that window only with the code the display then shows
(:mod:`firmware_sim.pairing_window`); the display answers with an ACK sealed under the new
key. A display without a key (fresh from the box) still takes unauthenticated frames, but
no agent sends it any: it stays blank until it is paired.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from enum import IntEnum
from typing import ClassVar

from protocol.display_wire import DisplayFrame
from protocol.errors import LocalProtocolError
from protocol.lock_auth import (
    KEY_ID_LINK,
    KEY_ID_NONE,
    KEY_LEN,
    AuthError,
    CounterExhaustedError,
    SealedLink,
    encode_confirm,
    sealed_mac,
    split_confirm,
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
    "DisplayPairRequest",
    "display_frame_mac",
]

PAIR_PAYLOAD_LEN = KEY_LEN + 4


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


@dataclass(frozen=True, slots=True)
class DisplayPairRequest:
    """The display's PAIR payload: its link key, the agent's clock (UTC epoch seconds) and,
    for a second PAIR in one window, the confirm code the display shows. ``repr`` hides
    the key."""

    link_key: bytes = field(repr=False)
    time: int
    confirm: int | None = None

    def __post_init__(self) -> None:
        if len(self.link_key) != KEY_LEN:
            raise LocalProtocolError(f"a display link key is {KEY_LEN} bytes")

    def encode(self) -> bytes:
        return self.link_key + struct.pack(">I", self.time) + encode_confirm(self.confirm)

    @classmethod
    def decode(cls, payload: bytes) -> DisplayPairRequest:
        body, confirm = split_confirm(payload, PAIR_PAYLOAD_LEN, "PAIR")
        (epoch,) = struct.unpack_from(">I", body, KEY_LEN)
        return cls(body[:KEY_LEN], epoch, confirm)
