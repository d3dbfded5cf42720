"""Users of the dashboard and API: scrypt-hashed passwords and a role."""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from cloud.core.models import Role, User
from cloud.core.views import UserView
from cloud.errors import ConflictError, InvalidRequestError, TooManyAttemptsError
from protocol.clock import Clock

SCRYPT_N, SCRYPT_R, SCRYPT_P, SCRYPT_LEN = 2**14, 8, 1, 32
MIN_PASSWORD_LEN = 12


def hash_password(password: str) -> str:
    """``scrypt$n$r$p$salt$hash`` with a fresh random salt."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(
        password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=SCRYPT_LEN
    )
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${salt.hex()}${digest.hex()}"


def verify_password(password: str, stored: str) -> bool:
    """True when ``password`` matches ``stored`` (constant-time comparison)."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
    except ValueError:
        return False
    if scheme != "scrypt":
        return False
    candidate = hashlib.scrypt(
        password.encode(),
        salt=bytes.fromhex(salt),
        n=int(n),
        r=int(r),
        p=int(p),
        dklen=len(digest) // 2,
    )
    return hmac.compare_digest(candidate.hex(), digest)


def generate_password() -> str:
    """A random password to hand to a new user once."""
    return secrets.token_urlsafe(15)


# verified against when the user does not exist, so both paths cost one scrypt
_DUMMY_HASH = hash_password(secrets.token_urlsafe(16))
# A right password, once checked with scrypt (~50 ms), is remembered for a few minutes as
# a keyed hash bound to the stored password hash, so an API client sending Basic
# credentials on every request pays scrypt once, not per request. Changing the password
# changes the stored hash and so forgets it; wrong passwords are never remembered.
VERIFIED_TTL_S = 300.0
VERIFIED_MAX = 1024


# Like the keypad: five wrong passwords in a row for one user name lock it for five
# minutes, so guessing a password over the network is impractical (EN 303 645, 5.1-5).
LOGIN_ATTEMPTS = 5
LOGIN_LOCKOUT_S = 300


class UserService:
    """Create users and check their passwords."""

    def __init__(self, sessions: sessionmaker[Session], clock: Clock) -> None:
        self._sessions = sessions
        self._clock = clock
        # per process: with N workers an attacker gets N times the attempts, still few
        self._failures: dict[str, tuple[int, float]] = {}
        self._verified: dict[bytes, float] = {}  # keyed hash -> until (see VERIFIED_TTL_S)
        self._verified_key = secrets.token_bytes(32)

    def create(
        self, username: str, role: Role, password: str | None = None
    ) -> tuple[UserView, str]:
        """Create a user; return it and its password (generated unless given)."""
        username = username.strip()
        if not username or len(username) > 64:
            raise InvalidRequestError("a username has 1 to 64 characters")
        password = password or generate_password()
        if len(password) < MIN_PASSWORD_LEN:
            raise InvalidRequestError(f"a password has at least {MIN_PASSWORD_LEN} characters")
        user = User(
            username=username,
            password_hash=hash_password(password),
            role=role,
            created_at=int(self._clock.now()),
        )
        try:
            with self._sessions.begin() as session:
                session.add(user)
        except IntegrityError:
            raise ConflictError(f"user {username!r} exists already; pick another name") from None
        return UserView(user.id, user.username, user.role), password

    def authenticate(self, username: str, password: str) -> UserView | None:
        """The user when ``password`` is right, else None; raises
        :class:`TooManyAttemptsError` while the user name is locked after wrong passwords."""
        now = self._clock.now()
        failures, locked_until = self._failures.get(username, (0, 0.0))
        if now < locked_until:
            minutes = max(1, math.ceil((locked_until - now) / 60))
            raise TooManyAttemptsError(
                f"too many wrong passwords for {username!r}; try again in {minutes} minute(s)"
            )
        with self._sessions() as session:
            user = session.scalars(select(User).where(User.username == username)).first()
        if user is None:
            verify_password(password, _DUMMY_HASH)
        elif self._verified_recently(user, password, now) or verify_password(
            password, user.password_hash
        ):
            self._failures.pop(username, None)
            self._remember(user, password, now)
            return UserView(user.id, user.username, user.role)
        failures += 1
        if failures >= LOGIN_ATTEMPTS:
            self._failures[username] = (0, now + LOGIN_LOCKOUT_S)
        else:
            self._failures[username] = (failures, 0.0)
        return None

    def _verified_key_of(self, user: User, password: str) -> bytes:
        body = f"{user.username}\x00{user.password_hash}\x00{password}".encode()
        return hmac.new(self._verified_key, body, hashlib.sha256).digest()

    def _verified_recently(self, user: User, password: str, now: float) -> bool:
        until = self._verified.get(self._verified_key_of(user, password))
        return until is not None and now < until

    def _remember(self, user: User, password: str, now: float) -> None:
        if len(self._verified) >= VERIFIED_MAX:
            self._verified = {k: t for k, t in self._verified.items() if t > now}
            if len(self._verified) >= VERIFIED_MAX:
                self._verified.clear()
        self._verified[self._verified_key_of(user, password)] = now + VERIFIED_TTL_S

    def get(self, username: str) -> UserView | None:
        """The user named ``username``, if any."""
        with self._sessions() as session:
            user = session.scalars(select(User).where(User.username == username)).first()
            return None if user is None else UserView(user.id, user.username, user.role)
