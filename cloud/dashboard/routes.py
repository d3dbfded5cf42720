"""The pages: parse the form, call a service, render a template."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from cloud.api.deps import client_address, services
from cloud.core.auth import AuthError, check_role
from cloud.core.models import Role
from cloud.core.views import UserView
from cloud.dashboard.csrf import csrf_field
from cloud.dashboard.i18n import (
    LANG_COOKIE,
    LANG_COOKIE_MAX_AGE_S,
    LANG_NAMES,
    LANGS,
    install,
    request_lang,
    service_text,
    tr,
    when,
)
from cloud.dashboard.labels import event_label
from cloud.dashboard.session import current_session, end_session, start_session
from cloud.errors import TooManyAttemptsError
from cloud.gym.sync_status import short_time
from cloud.localtime import local
from cloud.settings import CloudSettings

templates = Jinja2Templates(directory=Path(__file__).with_name("templates"))
templates.env.filters["event_label"] = event_label
templates.env.globals["lang_names"] = LANG_NAMES
templates.env.globals["csrf_field"] = csrf_field
install(templates.env)
# one-time messages a page carries in its address: not kept when the language switches
ONCE_PARAMS = frozenset({"flash", "error"})
router = APIRouter(include_in_schema=False)

FormStr = Annotated[str, Form()]


def settings_of(request: Request) -> CloudSettings:
    """The process's settings."""
    settings: CloudSettings = request.app.state.settings
    return settings


def page_user(request: Request) -> UserView | None:
    """The user of a live session, if any (not one still owing its second factor)."""
    session = current_session(request)
    return None if session is None or session.pending else session.user


def require(request: Request, *roles: Role) -> UserView:
    """The logged-in user, who must hold one of ``roles``."""
    return check_role(page_user(request), frozenset(roles))


def require_facility(request: Request, facility_id: int, *roles: Role) -> UserView:
    """The logged-in user, who must hold one of ``roles`` and see the facility (a manager:
    at its departments' sites, :mod:`cloud.core.scope`); else 404, as for a facility
    that does not exist."""
    user = require(request, *roles)
    services(request).scope.require_facility(user, facility_id)
    return user


def page_url(request: Request) -> str:
    """Where the language switch comes back to: this page without its one-time messages
    (the path alone after a form post; a handler may pass a better ``page_url``)."""
    if request.method != "GET":
        return request.url.path
    query = urlencode(
        [(k, v) for k, v in request.query_params.multi_items() if k not in ONCE_PARAMS]
    )
    return request.url.path + (f"?{query}" if query else "")


def render(request: Request, name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    """Render ``name`` in the request's language (:mod:`cloud.dashboard.i18n`) with the
    logged-in user and the time zone in the context; a service's English ``error`` is
    said in Japanese where the catalogue knows it."""
    settings = settings_of(request)
    lang = request_lang(request)
    context.setdefault("user", page_user(request))
    context.setdefault("timezone", settings.timezone)
    context.setdefault("zone", settings.zone)
    context.setdefault("page_url", page_url(request))
    context["lang"] = lang
    if isinstance(context.get("error"), str):
        context["error"] = service_text(lang, context["error"])
    response = templates.TemplateResponse(request, name, context, status_code=status_code)
    response.headers["Content-Language"] = lang
    response.headers["Vary"] = "Accept-Language, Cookie"
    return response


def auth_error_page(request: Request, exc: AuthError) -> Response:
    """401 → the login page (coming back here afterwards); 403 → an explanation."""
    if exc.status == 401:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?next={quote(target)}", status_code=303)
    return render(request, "error.html", status_code=403, error=str(exc))


def safe_next(target: str) -> str:
    """``target`` if it is a path of ours, else ``/`` ("//host" and "/\\host" are other
    sites to a browser)."""
    return target if target.startswith("/") and not target.startswith(("//", "/\\")) else "/"


@router.get("/lang/{code}")
def switch_language(request: Request, code: str, next: str = "/") -> Response:
    """The header's 日本語 / English switch: remember the language, back to the page."""
    response = RedirectResponse(safe_next(next), status_code=303)
    if code in LANGS:
        response.set_cookie(
            LANG_COOKIE,
            code,
            max_age=LANG_COOKIE_MAX_AGE_S,
            httponly=True,
            samesite="lax",
            secure=settings_of(request).public_url.startswith("https://"),
        )
    return response


@router.get("/login")
def login_page(request: Request, next: str = "/") -> HTMLResponse:
    """The login form."""
    return render(request, "login.html", next=safe_next(next))


@router.post("/login")
def login(
    request: Request,
    username: FormStr,
    password: FormStr,
    next: FormStr = "/",
) -> Response:
    """Check the password; then, for a role that needs it, the second factor
    (``/login/code``, or enrolment at the first login), else the session cookie at once."""
    svc, target = services(request), safe_next(next)
    try:
        user = svc.users.authenticate(username, password, client_address(request))
    except TooManyAttemptsError as exc:
        return render(request, "login.html", status_code=429, next=target, error=str(exc))
    if user is None:
        return render(
            request,
            "login.html",
            status_code=401,
            next=target,
            error=tr(request, "wrong user name or password; try again"),
        )
    pending = user.role.needs_second_factor
    if not pending:
        location = target
    elif svc.second_factor.enrolled(user.id):
        location = f"/login/code?next={quote(target)}"
    else:
        location = f"/account/2fa?next={quote(target)}"
    response = RedirectResponse(location, status_code=303)
    start_session(response, request, user, pending=pending)
    return response


@router.post("/logout")
def logout(request: Request) -> Response:
    """End this session on the server (its cookie is refused afterwards)."""
    response = RedirectResponse("/", status_code=303)
    end_session(response, request)
    return response


@router.get("/")
def index(request: Request) -> HTMLResponse:
    """Facilities, their rooms and locks (public: the booking form starts here); the staff
    links of the facilities the logged-in manager or ops user may manage."""
    svc, user = services(request), page_user(request)
    managed: frozenset[int] | None = frozenset()
    if user is not None and user.role in (Role.MANAGER, Role.OPS):
        managed = svc.scope.facility_ids(user)
    return render(
        request, "index.html", user=user, facilities=svc.facilities.facilities(), managed=managed
    )


@router.get("/locks/{lock_id}")
def lock_page(request: Request, lock_id: str) -> HTMLResponse:
    """A lock's sync status (last sync, drift, next sync) and its audit log: each event
    once, newest first (manager of its facility's department, or ops)."""
    user = require(request, Role.MANAGER, Role.OPS)
    svc, zone, lang = services(request), settings_of(request).zone, request_lang(request)
    svc.scope.require_lock(user, lock_id)  # another department's lock: 404
    lock = svc.facilities.lock(lock_id)
    now = request.app.state.clock.now()
    events = [
        {
            "seq": e.seq,
            "kind": e.kind,
            "label": event_label(e.kind, e.offline, lang),
            "offline": e.offline,
            "who": e.reservation_name,
            "time_local": when(lang, e.lock_ts, zone),
        }
        for e in svc.audit.events(lock_id)
    ]
    v = svc.sync_status.lock(lock_id)

    def sync_time(ts: int | None) -> str | None:
        if ts is None:
            return None
        if lang == "ja" and local(ts, zone).date() != local(now, zone).date():
            return when(lang, ts, zone)
        return short_time(ts, zone, now)

    sync = {
        "gateway_state": v.gateway_state,
        "reachable": v.reachable,
        "last_sync": sync_time(v.last_sync_at or v.applied_received_at),
        "next_sync": sync_time(v.next_sync_at),
        "next_sync_overdue": v.next_sync_at is not None and v.next_sync_at < now,
        "drift_s": v.clock_drift_s if v.clock_drift_s is not None else v.clock_offset_s,
        "clock_set": v.clock_set,
        "version": v.applied_version,
        "pins": len(v.grant_ids),
        "deferred": len(v.deferred),
        "revoked_offline": v.revoked_offline,
        "revocation_error": v.revocation_error,
    }
    return render(request, "lock.html", user=user, lock=lock, events=events, sync=sync)


@router.get("/mail")
def mail_page(request: Request) -> HTMLResponse:
    """The mail outbox with each mail's delivery state (ops). Without SMTP (the demo) it
    is the mailbox and shows bodies; with SMTP it does not (a body can hold a PIN)."""
    user = require(request, Role.OPS)
    settings = settings_of(request)
    zone, lang = settings.zone, request_lang(request)
    smtp = f"{settings.smtp_host}:{settings.smtp_port}" if settings.smtp_host else ""
    mails = [
        {
            "id": m.id,
            "to": m.to,
            "subject": m.subject,
            "body": "" if smtp else m.body,
            "created_local": when(lang, m.created_at, zone),
            "state": m.state.value,
            "attempts": m.attempts,
            "last_error": m.last_error,
            "sent_local": "" if m.sent_at is None else when(lang, m.sent_at, zone),
        }
        for m in services(request).mail.messages()
    ]
    return render(request, "mail.html", user=user, mails=mails, smtp=smtp)
