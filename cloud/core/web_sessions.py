"""Dashboard sessions kept on the server: the cookie holds a random id, the table its
SHA-256, so that logging out ends the session (a copied cookie is refused afterwards) and
"log out everywhere" ends all of a user's sessions at once.

Each session has a CSRF token, an HMAC of its id under a key from the secret key: forms
carry it and :mod:`cloud.dashboard.csrf` compares it, so nothing needs storing for it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, field

from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from cloud.core.models import User, WebSession
from cloud.core.views import UserView
from protocol.clock import Clock

SESSION_COOKIE = "denen_session"
SESSION_MAX_AGE_S = 12 * 3600
# the password was right; the one-time code (or the enrolment) must follow within this
PENDING_MAX_AGE_S = 10 * 60


def _id_hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class SessionView:
    """A live session: whose, whether the second factor is still to come, its CSRF token."""

    user: UserView
    pending: bool
    csrf_token: str = field(repr=False)


class WebSessions:
    """Open, look up and end dashboard sessions."""

    def __init__(self, sessions: sessionmaker[Session], clock: Clock, secret_key: str) -> None:
        self._sessions = sessions
        self._clock = clock
        self._csrf_key = hashlib.sha256(b"denen-csrf-v1:" + secret_key.encode()).digest()

    def open(self, user: UserView, *, pending: bool) -> str:
        """A new session's id (the cookie's value) for ``user``; their expired sessions
        are swept on the way."""
        now = int(self._clock.now())
        session_id = secrets.token_urlsafe(32)
        with self._sessions.begin() as session:
            session.execute(
                delete(WebSession).where(
                    WebSession.user_id == user.id, WebSession.expires_at <= now
                )
            )
            session.add(
                WebSession(
                    id_hash=_id_hash(session_id),
                    user_id=user.id,
                    pending=pending,
                    created_at=now,
                    expires_at=now + (PENDING_MAX_AGE_S if pending else SESSION_MAX_AGE_S),
                )
            )
        return session_id

    def get(self, session_id: str | None) -> SessionView | None:
        """The live session with that id, if any (not ended, not expired)."""
        if not session_id:
            return None
        with self._sessions() as session:
            row = session.execute(
                select(WebSession.pending, User)
                .join(User, User.id == WebSession.user_id)
                .where(
                    WebSession.id_hash == _id_hash(session_id),
                    WebSession.expires_at > int(self._clock.now()),
                )
            ).first()
        if row is None:
            return None
        pending, user = row
        return SessionView(
            UserView(user.id, user.username, user.role), pending, self.csrf_token(session_id)
        )

    def csrf_token(self, session_id: str) -> str:
        """The session's CSRF token."""
        return hmac.new(self._csrf_key, session_id.encode(), hashlib.sha256).hexdigest()

    def end(self, session_id: str | None) -> None:
        """End one session (logging out)."""
        if session_id:
            with self._sessions.begin() as session:
                session.execute(
                    delete(WebSession).where(WebSession.id_hash == _id_hash(session_id))
                )

    def end_all(self, user_id: int) -> int:
        """End every session of the user ("log out everywhere"); how many there were."""
        with self._sessions.begin() as session:
            ended = session.execute(delete(WebSession).where(WebSession.user_id == user_id))
        return int(getattr(ended, "rowcount", 0) or 0)
