"""Cross-site request forgery, refused once for every route (``create_app`` adds
:func:`csrf_guard` to the app's dependencies).

A state change (POST, PUT, PATCH, DELETE) that a browser sends with the session cookie
must carry the session's token (the ``csrf_token`` field every form has, or an
``X-CSRF-Token`` header for a script) AND come from our own origin (its Origin header, or
its Referer when a browser leaves Origin out). Either alone has gaps: a token can leak in
a page or a log, and Origin is missing from some old browsers' requests. Any state change
whose Origin or Referer names another site is refused whatever it carries, also on the
API, where a browser may re-send Basic credentials it remembers.
"""

from __future__ import annotations

import hmac
from urllib.parse import urlsplit

from fastapi import Request
from jinja2 import pass_context
from jinja2.runtime import Context
from markupsafe import Markup

from cloud.api.deps import request_scheme
from cloud.core.auth import AuthError
from cloud.dashboard.session import current_session
from cloud.settings import CloudSettings

CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# what a state change that fails the checks is told (the pages say it in Japanese too)
REFUSED = (
    "this form is out of date or was sent from another site; reload the page and send it again"
)


def _origin_of(url: str) -> str | None:
    parts = urlsplit(url)
    if not parts.scheme or not parts.netloc:
        return None
    return f"{parts.scheme}://{parts.netloc}".lower()


def sender_origin(request: Request) -> str | None:
    """The origin the browser says the request came from: Origin, else Referer's."""
    origin = request.headers.get("origin")
    if origin is not None:
        return origin.strip().lower()  # "null" (a sandboxed or privacy-hidden page) too
    referer = request.headers.get("referer")
    return None if referer is None else _origin_of(referer) or "null"


def own_origins(request: Request) -> frozenset[str]:
    """Our origin as this request reached us (scheme as a trusted proxy says, Host as the
    browser sent it) and as the deployment names it (``DENEN_CLOUD_PUBLIC_URL``)."""
    settings: CloudSettings = request.app.state.settings
    here = f"{request_scheme(request)}://{request.headers.get('host', '')}".lower()
    public = _origin_of(settings.public_url)
    return frozenset({here} if public is None else {here, public})


async def _sent_token(request: Request) -> str:
    header = request.headers.get(CSRF_HEADER)
    if header:
        return header
    content_type = request.headers.get("content-type", "")
    if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
        value = (await request.form()).get(CSRF_FIELD)
        return value if isinstance(value, str) else ""
    return ""


async def csrf_guard(request: Request) -> None:
    """Refuse (403) a cross-site state change, and one sent with the session cookie
    without the session's token from our own origin."""
    if request.method not in UNSAFE_METHODS:
        return
    origin = sender_origin(request)
    if origin is not None and origin not in own_origins(request):
        raise AuthError(REFUSED, 403)
    if request.url.path.startswith("/api/"):
        return  # the API takes no cookie: Basic credentials only
    session = current_session(request)
    if session is None:
        return  # no session, no authority to forge: the public booking forms
    if origin is None or not hmac.compare_digest(await _sent_token(request), session.csrf_token):
        raise AuthError(REFUSED, 403)


@pass_context
def csrf_field(context: Context) -> Markup:
    """``{{ csrf_field() }}`` in a form: the hidden field with the session's token (empty
    without a session, where none is asked for)."""
    session = current_session(context["request"])
    token = "" if session is None else session.csrf_token
    return Markup('<input type="hidden" name="{}" value="{}">').format(CSRF_FIELD, token)
