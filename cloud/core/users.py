"""Users of the dashboard and API: argon2id-hashed passwords and a role."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from cloud.core.models import Role, User
from cloud.core.throttle import LoginThrottle
from cloud.core.views import UserView
from cloud.errors import ConflictError, InvalidRequestError
from protocol.clock import Clock

MIN_PASSWORD_LEN = 12
# OWASP's argon2id minimum (19 MiB, 2 passes, 1 lane): about the cost of the scrypt it
# replaces, so a login costs the server the same while a GPU's guess costs more memory
_HASHER = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)
# what hashes made before argon2id look like: scrypt$n$r$p$salt$hash; verified, then
# replaced by an argon2id hash at the user's next successful login
_LEGACY_SCHEME = "scrypt"


def hash_password(password: str) -> str:
    """An argon2id hash (``$argon2id$v=19$m=…``) with a fresh random salt."""
    return _HASHER.hash(password)


def _verify_scrypt(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
    except ValueError:
        return False
    if scheme != _LEGACY_SCHEME:
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


def verify_password(password: str, stored: str) -> bool:
    """True when ``password`` matches ``stored``, an argon2id hash or a legacy scrypt one
    (constant-time comparison either way)."""
    if stored.startswith(_LEGACY_SCHEME + "$"):
        return _verify_scrypt(password, stored)
    try:
        return _HASHER.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(stored: str) -> bool:
    """Whether ``stored`` is not an argon2id hash with today's parameters."""
    return stored.startswith(_LEGACY_SCHEME + "$") or _HASHER.check_needs_rehash(stored)


def generate_password() -> str:
    """A random password to hand to a new user once."""
    return secrets.token_urlsafe(15)


# verified against when the user does not exist, so both paths cost one hash
_DUMMY_HASH = hash_password(secrets.token_urlsafe(16))
# A right password, once checked with argon2id (~30 ms), is remembered for a few minutes
# as a keyed hash bound to the stored password hash, so an API client sending Basic
# credentials on every request pays argon2id once, not per request. Changing the password
# changes the stored hash and so forgets it; wrong passwords are never remembered.
VERIFIED_TTL_S = 300.0
VERIFIED_MAX = 1024


class UserService:
    """Create users and check their passwords."""

    def __init__(
        self, sessions: sessionmaker[Session], clock: Clock, throttle: LoginThrottle
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        self._throttle = throttle
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

    def authenticate(self, username: str, password: str, address: str) -> UserView | None:
        """The user when ``password`` is right, else None; raises
        :class:`~cloud.errors.TooManyAttemptsError` while ``address`` must wait after
        wrong guesses for ``username`` (:mod:`cloud.core.throttle`). A right password kept
        in an old or weaker hash is hashed again with argon2id."""
        self._throttle.check(username, address)
        now = self._clock.now()
        with self._sessions() as session:
            user = session.scalars(select(User).where(User.username == username)).first()
        if user is None:
            verify_password(password, _DUMMY_HASH)
        elif self._verified_recently(user, password, now) or verify_password(
            password, user.password_hash
        ):
            self._throttle.succeeded(username, address)
            if needs_rehash(user.password_hash):
                self._rehash(user, password)
            self._remember(user, password, now)
            return UserView(user.id, user.username, user.role)
        self._throttle.failed(username, address)
        return None

    def _rehash(self, user: User, password: str) -> None:
        stored = hash_password(password)
        with self._sessions.begin() as session:
            session.execute(
                update(User)
                .where(User.id == user.id, User.password_hash == user.password_hash)
                .values(password_hash=stored)
            )
        user.password_hash = stored

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
