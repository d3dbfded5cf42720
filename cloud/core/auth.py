"""Who is calling: HTTP Basic for the API, a signed session cookie for the pages."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

from cloud.core.models import Role
from cloud.core.users import UserService
from cloud.core.views import UserView
from cloud.errors import CloudError

SESSION_COOKIE = "denen_session"
SESSION_MAX_AGE_S = 12 * 3600


class AuthError(CloudError, PermissionError):
    """Not logged in (``status`` 401) or not allowed (``status`` 403)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def basic_credentials(header: str | None) -> tuple[str, str] | None:
    """``(username, password)`` from an ``Authorization: Basic …`` header."""
    if not header or not header.lower().startswith("basic "):
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    username, sep, password = decoded.partition(":")
    return (username, password) if sep else None


def check_role(user: UserView | None, roles: frozenset[Role]) -> UserView:
    """The user, if logged in with one of ``roles``; else :class:`AuthError`."""
    if user is None:
        raise AuthError("log in first (HTTP Basic for the API, /login for the pages)", 401)
    if user.role not in roles:
        wanted = " or ".join(sorted(r.value for r in roles))
        raise AuthError(f"this needs the {wanted} role; you are {user.role.value}", 403)
    return user


class SessionSigner:
    """Issues and checks ``username.expires.mac`` cookies (HMAC-SHA256 of the secret)."""

    def __init__(self, secret_key: str) -> None:
        self._key = hashlib.sha256(b"denen-session-v1:" + secret_key.encode()).digest()

    def _mac(self, body: str) -> str:
        return hmac.new(self._key, body.encode(), hashlib.sha256).hexdigest()

    def issue(self, username: str, now: float) -> str:
        """A cookie value valid for :data:`SESSION_MAX_AGE_S`."""
        name = base64.urlsafe_b64encode(username.encode()).decode().rstrip("=")
        body = f"{name}.{int(now) + SESSION_MAX_AGE_S}"
        return f"{body}.{self._mac(body)}"

    def username(self, cookie: str | None, now: float) -> str | None:
        """The username in a valid, unexpired cookie."""
        if not cookie or cookie.count(".") != 2:
            return None
        name, expires, mac = cookie.split(".")
        if not hmac.compare_digest(mac, self._mac(f"{name}.{expires}")):
            return None
        if not expires.isdigit() or int(expires) < now:
            return None
        try:
            return base64.urlsafe_b64decode(name + "=" * (-len(name) % 4)).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None


def user_from_basic(users: UserService, header: str | None) -> UserView | None:
    """The user whose Basic credentials are in ``header``, if they are right."""
    creds = basic_credentials(header)
    return None if creds is None else users.authenticate(*creds)
