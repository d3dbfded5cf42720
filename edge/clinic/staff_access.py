"""Who may use the staff side of the clinic agent's pages: a name and that person's PIN,
checked here.

Works with the internet down, so nothing here asks the cloud.

- **Staff** are named (:data:`STAFF_NAME_RE`: a name or a staff number in lower-case
  letters, digits, ``-`` and ``_``), each with their own PIN, so one person's PIN opens
  only their own name and the agent can say who did what. The site config keeps only
  each PIN's hash under ``[clinic.staff]`` (``denen-agent clinic set-staff-pin NAME``).
  An older site file's one shared ``staff_pin_hash`` counts as the staff member
  :data:`SHARED_NAME` until a PIN of that name replaces it.
- **The PIN** is 6 to 12 digits (a million PINs at least, so the waits below make guessing
  hopeless). Its hash is scrypt, ``$scrypt$ln=14,r=8,p=1$<salt>$<hash>`` (salt and hash
  base64 without padding). A name nobody has is checked against a dummy hash, so the time
  an answer takes does not tell which names exist.
- **Wrong PINs** are counted per client address (:data:`PIN_RULES`,
  :mod:`protocol.guess_limits`), whatever name they were typed with: after
  :data:`MAX_WRONG` in a row that address waits :data:`FIRST_WAIT_S`, doubling with each
  further wrong PIN up to :data:`MAX_WAIT_S`; while it waits its PINs are refused unseen.
  Other addresses, the reception desk among them, are never held up by someone else's
  guessing (a global lockout let anyone on the clinic Wi-Fi lock the desk out). The table
  of addresses is bounded and lives in memory: a restart of the agent forgets it.
- **The session** is a cookie ``<name>.<expires>.<nonce>.<mac>``: HMAC-SHA256 under a key
  made from a random secret in the agent's state dir, the name and that person's PIN hash
  (so a new PIN, or removing the person, logs them out and nobody else). It ends after
  :data:`SESSION_S` or at the end of the Tokyo day, whichever comes first. Logging out
  forgets the cookie's nonce until it would have expired anyway.

Nothing here logs, and nothing here keeps a PIN: only its hash and, after the first right
PIN, an HMAC of it under the session secret (so a script sending the PIN with each request
does not pay for scrypt each time).
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import os
import re
import secrets
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from enum import StrEnum
from pathlib import Path

from edge.errors import EdgeError
from protocol.clock import Clock
from protocol.guess_limits import GuessRules, GuessTable
from protocol.queue_rules import TOKYO, tokyo_day

PIN_RE = re.compile(r"[0-9]{6,12}")
STAFF_NAME_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
SHARED_NAME = "reception"  # who an old site file's one shared staff_pin_hash belongs to
MAX_WRONG = 5  # wrong PINs in a row from one address before it waits
FIRST_WAIT_S = 30.0
MAX_WAIT_S = 15 * 60.0
PIN_RULES = GuessRules(
    free=MAX_WRONG, first_wait_s=FIRST_WAIT_S, max_wait_s=MAX_WAIT_S, max_keys=1024
)
SESSION_S = 12 * 3600.0
KEY_FILE = "clinic-staff-session.key"
KEY_BYTES = 32

# scrypt with n = 2**14, r = 8: about 16 MiB and a few tens of milliseconds per check on a Pi 4
SCRYPT_LN, SCRYPT_R, SCRYPT_P = 14, 8, 1
SALT_BYTES = 16
HASH_BYTES = 32
_HASH_RE = re.compile(
    r"\$scrypt\$ln=(?P<ln>\d+),r=(?P<r>\d+),p=(?P<p>\d+)\$(?P<salt>[A-Za-z0-9+/]+)\$(?P<hash>[A-Za-z0-9+/]+)"
)
_LIMITS = {"ln": (10, 20), "r": (1, 16), "p": (1, 4)}


class StaffAccessError(EdgeError, ValueError):
    """A PIN or a PIN hash that cannot be used; the message says what is wrong."""


def check_pin_format(pin: str) -> str:
    """``pin`` when it is 6 to 12 digits; raise :class:`StaffAccessError` otherwise."""
    if PIN_RE.fullmatch(pin) is None:
        raise StaffAccessError("a staff PIN is 6 to 12 digits (0-9), nothing else")
    return pin


def staff_name(text: str) -> str:
    """The staff name ``text`` stands for (full-width letters and capitals folded); raise
    :class:`StaffAccessError` when it cannot be one."""
    name = unicodedata.normalize("NFKC", text).strip().lower()
    if STAFF_NAME_RE.fullmatch(name) is None:
        raise StaffAccessError(
            "a staff name is 1 to 32 letters a-z, digits, - or _ (a name or a staff "
            "number, e.g. tanaka or s-0012), starting with a letter or a digit"
        )
    return name


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


@dataclass(frozen=True)
class PinHash:
    """A staff PIN's scrypt hash with its parameters and salt."""

    ln: int
    r: int
    p: int
    salt: bytes
    digest: bytes

    @classmethod
    def parse(cls, text: str) -> PinHash:
        """Read ``$scrypt$ln=…,r=…,p=…$salt$hash``; raise :class:`StaffAccessError`."""
        found = _HASH_RE.fullmatch(text)
        if found is None:
            raise StaffAccessError(
                "not a staff PIN hash ($scrypt$ln=…,r=…,p=…$salt$hash): set it with "
                "`denen-agent clinic set-staff-pin`, never the PIN itself"
            )
        numbers = {name: int(found[name]) for name in _LIMITS}
        for name, (low, high) in _LIMITS.items():
            if not low <= numbers[name] <= high:
                raise StaffAccessError(f"staff PIN hash: {name} must be {low} to {high}")
        try:
            salt, digest = _unb64(found["salt"]), _unb64(found["hash"])
        except binascii.Error:
            raise StaffAccessError("staff PIN hash: salt or hash is not base64") from None
        if len(salt) < SALT_BYTES or len(digest) != HASH_BYTES:
            raise StaffAccessError(
                f"staff PIN hash: the salt needs {SALT_BYTES}+ bytes, the hash {HASH_BYTES}"
            )
        return cls(numbers["ln"], numbers["r"], numbers["p"], salt, digest)

    @classmethod
    def make(cls, pin: str, *, salt: bytes | None = None) -> PinHash:
        """Hash a new PIN (6 to 12 digits) with a random salt."""
        check_pin_format(pin)
        salt = secrets.token_bytes(SALT_BYTES) if salt is None else salt
        digest = _scrypt(pin, salt, SCRYPT_LN, SCRYPT_R, SCRYPT_P)
        return cls(SCRYPT_LN, SCRYPT_R, SCRYPT_P, salt, digest)

    def matches(self, pin: str) -> bool:
        """Whether ``pin`` is the PIN this hash was made from (constant-time compare)."""
        if PIN_RE.fullmatch(pin) is None:
            return False
        return hmac.compare_digest(_scrypt(pin, self.salt, self.ln, self.r, self.p), self.digest)

    def __str__(self) -> str:
        return f"$scrypt$ln={self.ln},r={self.r},p={self.p}${_b64(self.salt)}${_b64(self.digest)}"


def _scrypt(pin: str, salt: bytes, ln: int, r: int, p: int) -> bytes:
    n = 1 << ln
    memory = 128 * r * (n + p + 2) + (1 << 20)  # what OpenSSL needs, and some room
    return hashlib.scrypt(pin.encode(), salt=salt, n=n, r=r, p=p, dklen=HASH_BYTES, maxmem=memory)


# ------------------------------------------------------------------------ wrong PINs


class PinCheck(StrEnum):
    RIGHT = "right"
    WRONG = "wrong"
    LOCKED = "locked"  # refused without looking: too many wrong PINs from this address


# ------------------------------------------------------------------------ sessions


def session_end(now: float) -> float:
    """When a session started at ``now`` ends: after :data:`SESSION_S`, or at the end of the
    Tokyo day (the clinic day) when that comes first."""
    tomorrow = tokyo_day(now) + timedelta(days=1)
    midnight = datetime.combine(tomorrow, time(0), TOKYO).timestamp()
    return min(now + SESSION_S, midnight)


def sign_session(key: bytes, expires: int, nonce: str) -> str:
    """The cookie value for a session ending at ``expires`` (epoch seconds)."""
    body = f"{expires}.{nonce}"
    mac = hmac.new(key, body.encode(), hashlib.sha256).hexdigest()
    return f"{body}.{mac}"


def read_session(key: bytes, value: str, now: float) -> tuple[int, str] | None:
    """``(expires, nonce)`` of a cookie signed with ``key`` that has not expired; else None."""
    parts = value.split(".")
    if len(parts) != 3 or not parts[0].isdigit() or len(parts[0]) > 12:
        return None
    expires_text, nonce, _ = parts
    expires = int(expires_text)
    if not hmac.compare_digest(sign_session(key, expires, nonce), value):
        return None
    # expired, or from a clock far ahead of ours (a session is never longer than SESSION_S)
    if not now < expires <= now + SESSION_S:
        return None
    return expires, nonce


def load_session_secret(state_dir: Path) -> bytes:
    """The agent's random session secret (``state_dir/clinic-staff-session.key``, 0600),
    made on first use; raise :class:`StaffAccessError` saying what to fix."""
    path = state_dir / KEY_FILE
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        data = b""
    except OSError as exc:
        raise StaffAccessError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if len(data) == KEY_BYTES:
        return data
    data = secrets.token_bytes(KEY_BYTES)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
        tmp.unlink(missing_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        raise StaffAccessError(
            f"cannot write {path}: {exc.strerror or exc}: check state_dir in the site config"
        ) from exc
    return data


@functools.cache
def _nobody() -> PinHash:
    """The hash a PIN typed with an unknown name is checked against (and never matches)."""
    return PinHash.make("0" * 6, salt=secrets.token_bytes(SALT_BYTES))


class StaffGate:
    """The staff side's door: checks a name's PIN (counting wrong ones per address), issues
    and reads session cookies naming who logged in. ``pins`` empty: no staff set
    (``required`` says whether that means closed)."""

    def __init__(
        self,
        pins: Mapping[str, PinHash],
        *,
        secret: bytes,
        clock: Clock,
        required: bool = True,
    ) -> None:
        self.pins = dict(pins)
        self.required = required
        self.clock = clock
        self.attempts = GuessTable(PIN_RULES)  # wrong PINs per client address
        self._keys = {
            name: hmac.new(
                secret,
                b"denen-clinic-staff-session\0" + f"{name}\0{pin_hash}".encode(),
                hashlib.sha256,
            ).digest()
            for name, pin_hash in self.pins.items()
        }
        self._known_pins: dict[str, bytes] = {}  # name -> HMAC of their last right PIN
        self._logged_out: dict[str, int] = {}  # nonce -> expires

    @property
    def is_open(self) -> bool:
        """No staff, and the site said none are needed: anyone may use the staff side."""
        return not self.pins and not self.required

    @property
    def is_unset(self) -> bool:
        """No staff, yet a PIN is needed: the staff side is closed until one is set."""
        return not self.pins and self.required

    def locked_until(self, client: str) -> float | None:
        """Until when PINs from ``client`` (an address) are refused unseen; None: not."""
        return self.attempts.waits_until(client, self.clock.now())

    def wrong_left(self, client: str) -> int:
        """Wrong PINs ``client`` may still make before it waits."""
        return max(0, MAX_WRONG - self.attempts.wrong_count(client, self.clock.now()))

    def check_pin(self, name: str, pin: str, client: str) -> PinCheck:
        """Check the PIN someone typed (or sent) for ``name`` from ``client`` (an address),
        counting a wrong one, or an unknown name, against that address. Full-width digits
        and letters (a Japanese IME's) count as the ones they are."""
        now = self.clock.now()
        pin = unicodedata.normalize("NFKC", pin).strip()
        try:
            name = staff_name(name)
        except StaffAccessError:
            name = ""
        if self.attempts.waits_until(client, now) is not None:
            return PinCheck.LOCKED
        pin_hash = self.pins.get(name)
        if pin_hash is None:
            _nobody().matches(pin)  # as long as a known name's check takes
        else:
            tag = hmac.new(self._keys[name], pin.encode(), hashlib.sha256).digest()
            known = self._known_pins.get(name)
            if (known is not None and hmac.compare_digest(tag, known)) or pin_hash.matches(pin):
                self._known_pins[name] = tag
                self.attempts.right(client)
                return PinCheck.RIGHT
        return PinCheck.LOCKED if self.attempts.wrong(client, now) else PinCheck.WRONG

    def open_session(self, name: str) -> tuple[str, int]:
        """A new session for staff member ``name`` (whose PIN was right): the cookie value
        and its lifetime in seconds."""
        now = self.clock.now()
        expires = int(session_end(now))
        value = sign_session(self._keys[name], expires, secrets.token_hex(16))
        return f"{name}.{value}", max(1, int(expires - now))

    def session_staff(self, value: str | None) -> str | None:
        """Who the session cookie ``value`` belongs to; None: no valid session."""
        found = self._read(value, self.clock.now())
        return None if found is None or found[2] in self._logged_out else found[0]

    def close_session(self, value: str | None) -> None:
        """Log a session out: its cookie is refused from now on, even if a copy is kept."""
        now = self.clock.now()
        self._logged_out = {n: e for n, e in self._logged_out.items() if e > now}
        found = self._read(value, now)
        if found is not None:
            self._logged_out[found[2]] = found[1]

    def _read(self, value: str | None, now: float) -> tuple[str, int, str] | None:
        """``(name, expires, nonce)`` of a valid cookie of a staff member still set."""
        name, _, signed = (value or "").partition(".")
        key = self._keys.get(name)
        found = None if key is None else read_session(key, signed, now)
        return None if found is None else (name, *found)


__all__ = [
    "FIRST_WAIT_S",
    "MAX_WAIT_S",
    "MAX_WRONG",
    "PIN_RULES",
    "SESSION_S",
    "SHARED_NAME",
    "STAFF_NAME_RE",
    "PinCheck",
    "PinHash",
    "StaffAccessError",
    "StaffGate",
    "check_pin_format",
    "load_session_secret",
    "session_end",
    "staff_name",
]
