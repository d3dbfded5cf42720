"""Who is calling: HTTP Basic for the API (a password, or an API token for roles whose
login needs a second factor), a server-side session for the pages
(:mod:`cloud.core.web_sessions`)."""

from __future__ import annotations

import base64
import binascii

from cloud.core.api_tokens import ApiTokens
from cloud.core.models import Role
from cloud.core.users import UserService
from cloud.core.views import UserView
from cloud.errors import CloudError


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


def user_from_basic(
    users: UserService, tokens: ApiTokens, header: str | None, address: str
) -> UserView | None:
    """The user whose Basic credentials are in ``header``: an API token of theirs, or
    their password if their role logs in without a second factor. A right password of a
    role that needs one is refused with what to use instead (Basic cannot carry a code)."""
    creds = basic_credentials(header)
    if creds is None:
        return None
    username, secret = creds
    user = tokens.user_for(username, secret)
    if user is not None:
        return user
    user = users.authenticate(username, secret, address)
    if user is not None and user.role.needs_second_factor:
        raise AuthError(
            f"{user.role.value} accounts log in with a second factor, which HTTP Basic cannot "
            "carry: send one of your API tokens as the password instead (make one on the "
            "dashboard's account page, /account)",
            401,
        )
    return user
