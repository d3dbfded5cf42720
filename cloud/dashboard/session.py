"""The pages' side of a dashboard session: which one a request carries (looked up once
per request) and the cookie that holds it — ``HttpOnly``, ``SameSite=Strict`` (only
staff log in, and they never arrive logged in from another site) and ``Secure`` whenever
the page is served over https."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import Response

from cloud.api.deps import request_scheme, services
from cloud.core.views import UserView
from cloud.core.web_sessions import (
    PENDING_MAX_AGE_S,
    SESSION_COOKIE,
    SESSION_MAX_AGE_S,
    SessionView,
)
from cloud.settings import CloudSettings

_UNKNOWN = object()


def current_session(request: Request) -> SessionView | None:
    """The live session of the request's cookie (full or pending), if any; looked up
    once per request, however many times a page asks."""
    found = getattr(request.state, "web_session", _UNKNOWN)
    if found is _UNKNOWN:
        found = services(request).web_sessions.get(request.cookies.get(SESSION_COOKIE))
        request.state.web_session = found
    return found if isinstance(found, SessionView) else None


def https(request: Request) -> bool:
    """Whether the browser reached us over https (or the deployment says it always does)."""
    settings: CloudSettings = request.app.state.settings
    return request_scheme(request) == "https" or settings.public_url.startswith("https://")


def start_session(response: Response, request: Request, user: UserView, *, pending: bool) -> None:
    """Open a session for ``user`` and hand the browser its id; the session the request
    came with (a pending one, an earlier login) ends: each login gets a new id, so an id
    planted before it is worth nothing."""
    web_sessions = services(request).web_sessions
    web_sessions.end(request.cookies.get(SESSION_COOKIE))
    response.set_cookie(
        SESSION_COOKIE,
        web_sessions.open(user, pending=pending),
        max_age=PENDING_MAX_AGE_S if pending else SESSION_MAX_AGE_S,
        httponly=True,
        samesite="strict",
        secure=https(request),
    )


def end_session(response: Response, request: Request) -> None:
    """End the request's session on the server and drop the browser's cookie."""
    services(request).web_sessions.end(request.cookies.get(SESSION_COOKIE))
    response.delete_cookie(SESSION_COOKIE, httponly=True, samesite="strict", secure=https(request))
