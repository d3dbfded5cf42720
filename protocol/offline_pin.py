"""Offline PINs: codes a lock verifies by itself, with its own secret and its own clock.

When a grant cannot reach a lock before it starts (the gateway is offline, or the lock's
next sync comes too late), the cloud issues an *offline PIN* instead of a slot PIN. The
lock needs nothing but the ``offline_secret`` it got at pairing and a set clock. The
scheme and its limits are in ``docs/offline-pins.md``; in short:

* a code is :data:`OFFLINE_PIN_LEN` (12) decimal digits, which a slot PIN never has
  (:data:`protocol.pin.PIN_MAX_LEN` is 10), so the keypad tells them apart by length;
* it names a window of whole hours, ``hours`` long (1..:data:`MAX_HOURS`), starting at an
  hour index ``start_hour`` (hours since the Unix epoch, UTC), plus a ``nonce``
  (0..:data:`NONCES` - 1) so that several codes can share one window;
* the digits hold ``start_hour mod`` :data:`START_PERIOD_H`, ``hours`` and ``nonce`` (the
  *header*) and a tag, ``HMAC-SHA256(offline_secret, full start_hour, hours, nonce)``
  reduced to :data:`TAG_SPACE` values. The lock recovers the full start hour from its own
  clock, so the code stays short yet the tag binds the absolute hour: the same digits a
  week later name another hour and fail the tag check.

Layout: ``value = tag * HEADERS + (header + tag) mod HEADERS``, printed with leading
zeros. Adding the tag to the header is not secrecy (the header is not secret); it only
spreads every digit, so that two codes for the same window share no visible digits.

Sans-IO and stdlib only. Nothing here logs; a code is only ever returned to the caller.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum

from protocol.errors import DenenError

OFFLINE_PIN_LEN = 12
HOUR_S = 3600
# The longest window the scheme can express. The issuer may cap lower (DEFAULT_MAX_HOURS).
MAX_HOURS = 72
DEFAULT_MAX_HOURS = 24
# Codes that can share one (start hour, length) window on one lock.
NONCES = 8
# The start hour travels modulo one week; the lock resolves it against its own clock.
START_PERIOD_H = 168
# A code typed up to this long before its start is "outside its window", not "wrong".
LOOKAHEAD_H = 24
# Slack either side of the window for a lock clock that drifted since its last sync.
CLOCK_GRACE_S = 300
HEADERS = START_PERIOD_H * MAX_HOURS * NONCES
TAG_SPACE: int = 10**OFFLINE_PIN_LEN // HEADERS  # 10,333,994: one guess in ~10 million
SHORT_ID_SPACE = 1 << 16
_U32_MAX = 0xFFFFFFFF
_MIN_SECRET_LEN = 16
_DOMAIN = b"denen-offline-pin-v1\x00"

# A code open now (grace included) starts within now-MAX_HOURS..now+1 hours: the lock's
# resolution range (now + LOOKAHEAD - PERIOD, now + LOOKAHEAD] must hold all of them.
assert 0 < CLOCK_GRACE_S < HOUR_S <= LOOKAHEAD_H * HOUR_S, "grace must stay under an hour"
assert MAX_HOURS < START_PERIOD_H - LOOKAHEAD_H, "a running window must resolve"
# Codes open at one moment must never share a short id (see OfflinePinId.short_id).
assert (MAX_HOURS + 2) * MAX_HOURS * NONCES <= SHORT_ID_SPACE, "short ids must not collide"


class OfflinePinError(DenenError, ValueError):
    """An offline PIN that cannot be issued as asked (window too long, bad nonce, …)."""


class OfflinePinStatus(StrEnum):
    VALID = "valid"
    OUTSIDE_WINDOW = "outside_window"  # a genuine code for this lock, not for this hour
    INVALID = "invalid"  # not a code for this lock (typo, guess, another lock's code)


@dataclass(frozen=True, slots=True, order=True)
class OfflinePinId:
    """What identifies one offline PIN on one lock: its window and its nonce.

    Not secret: it is what the digits carry besides the tag, and what the revocation
    list, events and the cloud's records name. Two codes with the same id on the same
    lock are the same code, so the issuer never reuses one (:func:`free_nonce`).
    """

    start_hour: int  # hours since 1970-01-01T00:00Z
    hours: int
    nonce: int

    def __post_init__(self) -> None:
        if not 1 <= self.hours <= MAX_HOURS:
            raise OfflinePinError(f"an offline PIN lasts 1 to {MAX_HOURS} hours")
        if not 0 <= self.nonce < NONCES:
            raise OfflinePinError(f"an offline PIN nonce is 0 to {NONCES - 1}")
        if not 0 <= self.start_hour <= _U32_MAX - self.hours:
            raise OfflinePinError("an offline PIN window must lie within u32 hours")

    @property
    def start(self) -> int:
        """First second of the window (UTC epoch seconds)."""
        return self.start_hour * HOUR_S

    @property
    def end(self) -> int:
        """First second after the window (UTC epoch seconds)."""
        return (self.start_hour + self.hours) * HOUR_S

    @property
    def expires_at(self) -> int:
        """When no lock accepts the code any more (end plus the clock grace): a
        revocation entry is useless from then on and may be dropped."""
        return self.end + CLOCK_GRACE_S

    @property
    def short_id(self) -> int:
        """A 16-bit id for lock events (``value``): the serial of the id modulo 2**16.

        Codes open at one moment (grace included) start within ``MAX_HOURS + 2``
        consecutive hours, so their serials lie within ``(MAX_HOURS + 2) * MAX_HOURS *
        NONCES`` (42,624) of each other and never share a short id.
        :func:`match_short_id` resolves it with the event's time.
        """
        serial = (self.start_hour * MAX_HOURS + self.hours - 1) * NONCES + self.nonce
        return serial % SHORT_ID_SPACE


@dataclass(frozen=True, slots=True)
class OfflinePin:
    """An issued code and its id. ``repr`` hides the code: it belongs to the citizen."""

    code: str = field(repr=False)
    id: OfflinePinId


@dataclass(frozen=True, slots=True)
class OfflinePinCheck:
    """What the lock makes of typed digits; ``id`` is ``None`` for an invalid code."""

    status: OfflinePinStatus
    id: OfflinePinId | None = None

    @property
    def valid(self) -> bool:
        return self.status is OfflinePinStatus.VALID


def is_offline_pin_format(digits: str) -> bool:
    """True for exactly :data:`OFFLINE_PIN_LEN` ASCII digits (what the keypad routes here)."""
    return len(digits) == OFFLINE_PIN_LEN and digits.isascii() and digits.isdigit()


def offline_window(
    start: float, end: float, *, max_hours: int = DEFAULT_MAX_HOURS
) -> tuple[int, int]:
    """``(start_hour, hours)`` covering ``start``..``end``: start rounded down, end up.

    Raises :class:`OfflinePinError` for an empty window or one longer than ``max_hours``
    (at most :data:`MAX_HOURS`) once rounded.
    """
    if not 1 <= max_hours <= MAX_HOURS:
        raise OfflinePinError(f"max_hours must be 1 to {MAX_HOURS}")
    if not (math.isfinite(start) and math.isfinite(end)) or start < 0:
        raise OfflinePinError("an offline PIN window needs finite, non-negative times")
    if end <= start:
        raise OfflinePinError("an offline PIN window must end after it starts")
    start_hour = math.floor(start / HOUR_S)
    hours = math.ceil(end / HOUR_S) - start_hour
    if hours > max_hours:
        raise OfflinePinError(
            f"an offline PIN covers at most {max_hours} whole hours, this one needs {hours}; "
            "issue one code per day instead"
        )
    return start_hour, hours


def issue_offline_pin(
    secret: bytes,
    start: float,
    end: float,
    *,
    nonce: int,
    max_hours: int = DEFAULT_MAX_HOURS,
) -> OfflinePin:
    """The offline PIN for the lock holding ``secret``, valid over ``start``..``end``.

    ``start`` is rounded down and ``end`` up to the hour (UTC); the code works from
    ``id.start - CLOCK_GRACE_S`` to ``id.end + CLOCK_GRACE_S`` by the lock's clock.
    ``nonce`` must not have been used for the same window on this lock before (the code
    would be the same one, revocation included): take it from :func:`free_nonce`.
    """
    _check_secret(secret)
    start_hour, hours = offline_window(start, end, max_hours=max_hours)
    pid = OfflinePinId(start_hour, hours, nonce)
    return OfflinePin(_encode(pid, _tag(secret, pid)), pid)


def verify_offline_pin(
    secret: bytes, code: str, now: float, *, grace_s: int = CLOCK_GRACE_S
) -> OfflinePinCheck:
    """Whether ``code`` opens the lock holding ``secret`` at ``now`` (the lock's clock).

    Never raises on any ``code``: anything that is not a genuine code for this lock is
    ``INVALID``. A genuine code whose window (plus ``grace_s`` either side) does not hold
    ``now`` is ``OUTSIDE_WINDOW`` — recognisable from :data:`LOOKAHEAD_H` hours before its
    start to ``START_PERIOD_H - LOOKAHEAD_H`` hours after it; beyond that it reads as
    ``INVALID``. The tag is compared in constant time.
    """
    _check_secret(secret)
    if not is_offline_pin_format(code):
        return OfflinePinCheck(OfflinePinStatus.INVALID)
    tag, masked = divmod(int(code), HEADERS)
    if tag >= TAG_SPACE:  # the few values past TAG_SPACE * HEADERS are never issued
        return OfflinePinCheck(OfflinePinStatus.INVALID)
    header = (masked - tag) % HEADERS
    rest, nonce = divmod(header, NONCES)
    start_mod, hours_index = divmod(rest, MAX_HOURS)
    # the one start hour congruent to start_mod in (now + LOOKAHEAD - PERIOD, now + LOOKAHEAD]
    top = math.floor(now / HOUR_S) + LOOKAHEAD_H
    start_hour = top - (top - start_mod) % START_PERIOD_H
    hours = hours_index + 1
    if not 0 <= start_hour <= _U32_MAX - hours:
        return OfflinePinCheck(OfflinePinStatus.INVALID)
    pid = OfflinePinId(start_hour, hours, nonce)
    expected = _tag(secret, pid)
    if not hmac.compare_digest(expected.to_bytes(4, "big"), tag.to_bytes(4, "big")):
        return OfflinePinCheck(OfflinePinStatus.INVALID)
    if pid.start - grace_s <= now < pid.end + grace_s:
        return OfflinePinCheck(OfflinePinStatus.VALID, pid)
    return OfflinePinCheck(OfflinePinStatus.OUTSIDE_WINDOW, pid)


def free_nonce(start_hour: int, hours: int, used: Iterable[OfflinePinId]) -> int:
    """The smallest nonce not in ``used`` (every code ever issued on the lock) for the
    window ``(start_hour, hours)``; :class:`OfflinePinError` when all :data:`NONCES` are
    taken — then shift the window by an hour or lengthen it by one."""
    taken = {u.nonce for u in used if (u.start_hour, u.hours) == (start_hour, hours)}
    for nonce in range(NONCES):
        if nonce not in taken:
            return nonce
    raise OfflinePinError(
        f"all {NONCES} offline PINs of this window are used on this lock: "
        "widen the window by an hour"
    )


def match_short_id(
    candidates: Iterable[OfflinePinId], short_id: int, lock_ts: int
) -> OfflinePinId | None:
    """Which of the lock's issued codes a lock event's ``value`` names.

    Among ``candidates`` with that short id, the one whose window is nearest ``lock_ts``
    (the event's time); ``None`` when none has that short id.
    """

    def distance(pid: OfflinePinId) -> int:
        return max(pid.start - lock_ts, lock_ts - pid.end, 0)

    same = [c for c in candidates if c.short_id == short_id]
    return min(same, key=lambda c: (distance(c), c), default=None)


def _check_secret(secret: bytes) -> None:
    if len(secret) < _MIN_SECRET_LEN:
        raise OfflinePinError(f"an offline secret has at least {_MIN_SECRET_LEN} bytes")


def _tag(secret: bytes, pid: OfflinePinId) -> int:
    # the full start hour is MACed even though the digits carry it modulo a week
    data = _DOMAIN + struct.pack(">IBB", pid.start_hour, pid.hours, pid.nonce)
    digest = hmac.new(secret, data, hashlib.sha256).digest()
    # 64 bits reduced modulo ~2**23.3: the bias is below 1e-12
    return int.from_bytes(digest[:8], "big") % TAG_SPACE


def _encode(pid: OfflinePinId, tag: int) -> str:
    header = ((pid.start_hour % START_PERIOD_H) * MAX_HOURS + pid.hours - 1) * NONCES + pid.nonce
    value = tag * HEADERS + (header + tag) % HEADERS
    return f"{value:0{OFFLINE_PIN_LEN}d}"
