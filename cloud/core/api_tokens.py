"""Per-user API tokens: what a script sends in HTTP Basic's password slot.

Basic auth cannot carry a one-time code, so a user whose role logs in with a second
factor (:attr:`~cloud.core.models.Role.needs_second_factor`) reaches the API only with a
token, made after such a login (the account page) or by ops on the command line. A token
is 32 random bytes, so it needs no slow hash and no throttle: the table keeps its
SHA-256, and it is shown once. Each can be revoked alone; ``last_used_at`` (to the
minute) tells which are still in use.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session, sessionmaker

from cloud.core.models import ApiToken, User
from cloud.core.views import UserView
from cloud.errors import InvalidRequestError, NotFoundError
from protocol.clock import Clock

# tells a token from a password, and secret scanners what it is
TOKEN_PREFIX = "denen_"  # noqa: S105 - a prefix, not a secret
LAST_USED_EVERY_S = 60


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> tuple[str, str]:
    """A fresh token and the hash to store for it."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    return token, _hash(token)


@dataclass(frozen=True, slots=True)
class ApiTokenView:
    id: int
    label: str
    created_at: int
    last_used_at: int | None


class ApiTokens:
    """Make, list, revoke and check API tokens."""

    def __init__(self, sessions: sessionmaker[Session], clock: Clock) -> None:
        self._sessions = sessions
        self._clock = clock

    def create(self, user: UserView, label: str) -> str:
        """A new token for ``user`` (returned once; only its hash is kept)."""
        label = label.strip()
        if not label or len(label) > 100:
            raise InvalidRequestError(
                "name the token (1 to 100 characters), e.g. the script or host that uses it"
            )
        token, token_hash = new_token()
        with self._sessions.begin() as session:
            session.add(
                ApiToken(
                    user_id=user.id,
                    token_hash=token_hash,
                    label=label,
                    created_at=int(self._clock.now()),
                )
            )
        return token

    def tokens(self, user_id: int) -> list[ApiTokenView]:
        """The user's tokens, oldest first."""
        with self._sessions() as session:
            rows = session.scalars(
                select(ApiToken).where(ApiToken.user_id == user_id).order_by(ApiToken.id)
            ).all()
            return [ApiTokenView(t.id, t.label, t.created_at, t.last_used_at) for t in rows]

    def revoke(self, user_id: int, token_id: int) -> None:
        """Revoke one of the user's tokens."""
        with self._sessions.begin() as session:
            gone = session.execute(
                delete(ApiToken).where(ApiToken.id == token_id, ApiToken.user_id == user_id)
            )
        if not getattr(gone, "rowcount", 0):
            raise NotFoundError(f"you have no API token {token_id}; reload the account page")

    def user_for(self, username: str, token: str) -> UserView | None:
        """The user when ``token`` is one of ``username``'s tokens, else None."""
        if not token.startswith(TOKEN_PREFIX):
            return None
        now = int(self._clock.now())
        with self._sessions() as session:
            row = session.execute(
                select(ApiToken.id, ApiToken.last_used_at, User)
                .join(User, User.id == ApiToken.user_id)
                .where(ApiToken.token_hash == _hash(token), User.username == username)
            ).first()
        if row is None:
            return None
        token_id, last_used_at, user = row
        if last_used_at is None or now - last_used_at >= LAST_USED_EVERY_S:
            with self._sessions.begin() as session:
                session.execute(
                    update(ApiToken).where(ApiToken.id == token_id).values(last_used_at=now)
                )
        return UserView(user.id, user.username, user.role)
