"""Lock pairing and frame authentication, sans-IO: keys and frames in, frames or errors out.

**Keys.** Each lock gets three random 32-byte keys at pairing (``secrets.token_bytes``),
never derived from a public identifier such as a MAC address or serial number:

* ``link_key`` authenticates every frame between the agent and the lock (``key_id`` 1);
* ``pin_key`` is what the lock checks PIN tags with (:func:`protocol.pin.pin_tag`); the
  cloud needs it to compute tags, the agent does not keep it;
* ``offline_secret`` lets the lock verify offline PINs by itself
  (:mod:`protocol.offline_pin`); the lock and the cloud hold it.

**Frames.** ``mac = HMAC-SHA256(link_key, direction || bound || signed_part)[:8]`` where
``direction`` is one byte (agent→lock or lock→agent), ``signed_part`` is everything in the
frame body before the MAC, and ``bound`` (4 bytes) is the counter of the request a
lock→agent reply answers (0 for agent→lock frames and unsolicited WAKEs). Each direction
has its own ``counter``, strictly increasing: the receiver refuses a frame whose counter is
not above the last one it accepted (a replay) or whose MAC does not match (a forgery),
comparing with :func:`hmac.compare_digest`. Binding replies to their request means an old
reply can never answer a new request, even after the agent restarted and forgot what it
had received: the agent never reuses a send counter (it persists them in blocks), so a
reply to a fresh request cannot exist before the lock makes it.

A counter never wraps: at 2**32 - 1 the link is exhausted and the lock must be paired
again (:class:`CounterExhaustedError`); four billion frames are decades of syncs.

**Pairing (the trust root).** ``PAIR`` carries the three keys and the time *in clear*, so
it is accepted only in the 60 s after someone pressed the pairing button on the lock, and
it is meant for a serial cable at the door: whoever can press the button can already
reach the lock's insides. Over BLE PAIR must only ever travel on an
LE Secure Connections link (ECDH, numeric comparison or passkey), never Just Works or
legacy pairing, or a radio eavesdropper learns every key. The lock answers an accepted
PAIR with an ACK sealed with the new link key, so the technician's tool knows the keys
arrived intact.

**A second PAIR in one window** (an attacker racing the technician, or the technician
after an attacker) is refused until it is sent again carrying the 6-digit *confirm code*
the lock then shows on its display (:data:`CONFIRM_LEN` more bytes at the end of the
payload): only someone standing at the lock can read it, so nobody pairs silently in
someone else's window (:mod:`firmware_sim.pairing_window`).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import struct
from dataclasses import dataclass, field, replace
from enum import IntEnum
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from protocol.errors import FrameError, LocalProtocolError, RemoteProtocolError
from protocol.framing import MAC_LEN
from protocol.lock_wire import LockFrame

KEY_LEN = 32
KEY_ID_NONE = 0  # unauthenticated: counter 0, zero MAC
KEY_ID_LINK = 1  # the link key given at pairing
COUNTER_MAX = 0xFFFFFFFF
PAIRING_WINDOW_S = 60.0
PAIR_PAYLOAD_LEN = 3 * KEY_LEN + 4
CONFIRM_LEN = 4  # the confirm code of a second PAIR in one window, u32 at the end
CONFIRM_DIGITS = 6


class Direction(IntEnum):
    TO_LOCK = 0x01
    TO_AGENT = 0x02


class AuthError(RemoteProtocolError):
    """A frame that is not authentic: forged, replayed, or under an unknown key.

    ``reason`` is short and safe to log or to send back in a NACK: it never holds a key, a
    MAC or a counter value.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class CounterExhaustedError(LocalProtocolError):
    """This side has sent 2**32 - 1 frames under one key: pair the lock again."""


@dataclass(frozen=True, slots=True)
class LockSecrets:
    """The three keys one lock gets at pairing. Never logged: ``repr`` hides them."""

    link_key: bytes = field(repr=False)
    pin_key: bytes = field(repr=False)
    offline_secret: bytes = field(repr=False)

    def __post_init__(self) -> None:
        for name in ("link_key", "pin_key", "offline_secret"):
            if len(getattr(self, name)) != KEY_LEN:
                raise LocalProtocolError(f"{name} must be {KEY_LEN} bytes")

    @classmethod
    def generate(cls) -> LockSecrets:
        """Fresh random keys from the OS's CSPRNG."""
        return cls(*(secrets.token_bytes(KEY_LEN) for _ in range(3)))


@dataclass(frozen=True, slots=True)
class PairRequest:
    """The PAIR payload: the keys, the agent's clock (UTC epoch seconds) and, for a second
    PAIR in one window, the confirm code the lock shows."""

    keys: LockSecrets
    time: int
    confirm: int | None = None

    def encode(self) -> bytes:
        s = self.keys
        body = s.link_key + s.pin_key + s.offline_secret + struct.pack(">I", self.time)
        return body + encode_confirm(self.confirm)

    @classmethod
    def decode(cls, payload: bytes) -> PairRequest:
        body, confirm = split_confirm(payload, PAIR_PAYLOAD_LEN, "PAIR")
        keys = [body[i * KEY_LEN : (i + 1) * KEY_LEN] for i in range(3)]
        (epoch,) = struct.unpack_from(">I", body, 3 * KEY_LEN)
        return cls(LockSecrets(*keys), epoch, confirm)


def encode_confirm(confirm: int | None) -> bytes:
    """The confirm code's trailer of a PAIR payload (nothing when there is none)."""
    if confirm is None:
        return b""
    if not 0 <= confirm < 10**CONFIRM_DIGITS:
        raise LocalProtocolError(f"a confirm code has {CONFIRM_DIGITS} digits")
    return struct.pack(">I", confirm)


def split_confirm(payload: bytes, length: int, what: str) -> tuple[bytes, int | None]:
    """A PAIR payload of ``length`` bytes (plus, optionally, a confirm code) → both parts."""
    if len(payload) == length:
        return payload, None
    if len(payload) != length + CONFIRM_LEN:
        raise FrameError(
            f"{what} payload has {len(payload)} bytes, not {length} "
            f"(or {length + CONFIRM_LEN} with a confirm code)"
        )
    (confirm,) = struct.unpack_from(">I", payload, length)
    return payload[:length], confirm


class SealableFrame(Protocol):
    """What :class:`SealedLink` needs of a frame: a dataclass with the auth fields."""

    __dataclass_fields__: ClassVar[dict[str, Any]]

    @property
    def key_id(self) -> int: ...
    @property
    def counter(self) -> int: ...
    @property
    def mac(self) -> bytes: ...
    def signed_part(self) -> bytes: ...


F = TypeVar("F", bound=SealableFrame)


def sealed_mac(
    key: bytes, domain: bytes, direction: int, frame: SealableFrame, bound: int
) -> bytes:
    """``HMAC-SHA256(key, domain || direction || bound || signed_part)[:8]``."""
    data = domain + struct.pack(">BI", direction, bound) + frame.signed_part()
    return hmac.new(key, data, hashlib.sha256).digest()[:MAC_LEN]


def frame_mac(key: bytes, direction: Direction, frame: LockFrame, bound: int = 0) -> bytes:
    """The 8-byte MAC of a lock ``frame`` sent in ``direction``, answering ``bound``."""
    return sealed_mac(key, b"", direction, frame, bound)


@dataclass
class SealedLink(Generic[F]):
    """One side's view of an authenticated link: seals what it sends, checks what it gets.

    ``send_counter`` is the last counter used (the next frame takes ``send_counter + 1``);
    ``recv_counter`` the last one accepted. Every device protocol (locks, displays) uses
    this one construction; a subclass names its ``DOMAIN`` (so a MAC made for one kind of
    device never passes for another's, even under the same key) and its directions.
    """

    key: bytes = field(repr=False)
    sends: int
    send_counter: int = 0
    recv_counter: int = 0

    DOMAIN: ClassVar[bytes] = b""
    EXHAUSTED: ClassVar[str] = "the link counter is used up: give the device a new key"

    @property
    def receives(self) -> int:
        """The direction of the frames this side receives."""
        raise NotImplementedError

    def seal(self, frame: F, *, bound: int = 0) -> F:
        """``frame`` with key id, the next counter and its MAC; raises CounterExhaustedError."""
        if self.send_counter >= COUNTER_MAX:
            raise CounterExhaustedError(self.EXHAUSTED)
        self.send_counter += 1
        unsigned = replace(frame, key_id=KEY_ID_LINK, counter=self.send_counter)
        mac = sealed_mac(self.key, self.DOMAIN, self.sends, unsigned, bound)
        return replace(unsigned, mac=mac)

    def check(self, frame: F, *, bound: int = 0) -> F:
        """Accept ``frame`` (and remember its counter) or raise :class:`AuthError`."""
        if frame.key_id == KEY_ID_NONE:
            raise AuthError("frame is not authenticated")
        if frame.key_id != KEY_ID_LINK:
            raise AuthError(f"key {frame.key_id} is not provisioned")
        expected = sealed_mac(self.key, self.DOMAIN, self.receives, frame, bound)
        if not hmac.compare_digest(expected, frame.mac):
            raise AuthError("MAC does not match: forged, corrupted, or another key")
        # checked after the MAC so that a forger learns nothing about the counter
        if frame.counter <= self.recv_counter:
            raise AuthError("counter is not newer than the last accepted one: a replay")
        self.recv_counter = frame.counter
        return frame


@dataclass
class LinkAuth(SealedLink[LockFrame]):
    """The agent-lock link. The agent persists ``send_counter`` (in blocks) so a restart
    never reuses one; the lock persists both (flash on real hardware)."""

    sends: Direction

    EXHAUSTED: ClassVar[str] = "the link counter is used up: pair the lock again"

    @property
    def receives(self) -> Direction:
        return Direction.TO_AGENT if self.sends is Direction.TO_LOCK else Direction.TO_LOCK
