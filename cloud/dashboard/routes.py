"""The pages: parse the form, call a service, render a template."""

from __future__ import annotations

from datetime import date, time
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from cloud.api.deps import services
from cloud.api.reservations import citizen_status, reservation_out
from cloud.auth import SESSION_COOKIE, SESSION_MAX_AGE_S, AuthError, SessionSigner, check_role
from cloud.dashboard.labels import event_label
from cloud.db.models import ReservationStatus, Role
from cloud.errors import CloudError, InvalidRequestError, TooManyAttemptsError
from cloud.localtime import format_local, slot_from_form
from cloud.services.views import UserView
from cloud.settings import CloudSettings
from protocol.clock import Clock

templates = Jinja2Templates(directory=Path(__file__).with_name("templates"))
templates.env.filters["event_label"] = event_label
router = APIRouter(include_in_schema=False)

FormStr = Annotated[str, Form()]


def _settings(request: Request) -> CloudSettings:
    settings: CloudSettings = request.app.state.settings
    return settings


def page_user(request: Request) -> UserView | None:
    """The user of a valid session cookie, if any."""
    signer: SessionSigner = request.app.state.signer
    clock: Clock = request.app.state.clock
    username = signer.username(request.cookies.get(SESSION_COOKIE), clock.now())
    return None if username is None else services(request).users.get(username)


def _require(request: Request, *roles: Role) -> UserView:
    return check_role(page_user(request), frozenset(roles))


def render(request: Request, name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    """Render ``name`` with the logged-in user and the time zone in the context."""
    context.setdefault("user", page_user(request))
    context.setdefault("timezone", _settings(request).timezone)
    return templates.TemplateResponse(request, name, context, status_code=status_code)


def auth_error_page(request: Request, exc: AuthError) -> Response:
    """401 → the login page (coming back here afterwards); 403 → an explanation."""
    if exc.status == 401:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?next={quote(target)}", status_code=303)
    return render(request, "error.html", status_code=403, error=str(exc))


def _safe_next(target: str) -> str:
    return target if target.startswith("/") and not target.startswith("//") else "/"


@router.get("/login")
def login_page(request: Request, next: str = "/") -> HTMLResponse:
    """The login form."""
    return render(request, "login.html", next=_safe_next(next))


@router.post("/login")
def login(
    request: Request,
    username: FormStr,
    password: FormStr,
    next: FormStr = "/",
) -> Response:
    """Check the password, set the session cookie, go on to ``next``."""
    try:
        user = services(request).users.authenticate(username, password)
    except TooManyAttemptsError as exc:
        return render(request, "login.html", status_code=429, next=_safe_next(next), error=str(exc))
    if user is None:
        return render(
            request,
            "login.html",
            status_code=401,
            next=_safe_next(next),
            error="wrong user name or password; try again",
        )
    clock: Clock = request.app.state.clock
    signer: SessionSigner = request.app.state.signer
    response = RedirectResponse(_safe_next(next), status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        signer.issue(user.username, clock.now()),
        max_age=SESSION_MAX_AGE_S,
        httponly=True,
        samesite="lax",
        secure=_settings(request).public_url.startswith("https://"),
    )
    return response


@router.post("/logout")
def logout() -> Response:
    """Forget the session."""
    response = RedirectResponse("/", status_code=303)
    response.delete_cookie(SESSION_COOKIE)
    return response


@router.get("/")
def index(request: Request) -> HTMLResponse:
    """Facilities and their locks."""
    return render(request, "index.html", facilities=services(request).facilities.facilities())


@router.get("/book")
def book_page(request: Request, lock_id: str = "") -> HTMLResponse:
    """The citizen's booking form."""
    form = {"lock_id": lock_id, "name": "", "email": "", "day": "", "start": "", "hours": "1"}
    return render(
        request, "book.html", facilities=services(request).facilities.facilities(), form=form
    )


@router.post("/book")
def book(
    request: Request,
    *,
    lock_id: FormStr,
    name: FormStr,
    email: FormStr,
    day: FormStr,
    start: FormStr,
    hours: FormStr,
) -> Response:
    """Make the booking and go to its status page; on a rule broken, show the form again."""
    svc = services(request)
    form = {"lock_id": lock_id, "name": name, "email": email, "day": day, "start": start}
    form["hours"] = hours
    try:
        try:
            begin, end = slot_from_form(
                date.fromisoformat(day),
                time.fromisoformat(start),
                float(hours),
                _settings(request).zone,
            )
        except ValueError:
            raise InvalidRequestError(
                "please give a date, a start time and a duration in hours"
            ) from None
        new = svc.reservations.create(lock_id, name, email, begin, end)
    except CloudError as exc:
        return render(
            request,
            "book.html",
            status_code=400,
            facilities=svc.facilities.facilities(),
            form=form,
            error=str(exc),
        )
    target = f"/r/{new.reservation.id}?token={quote(new.access_token)}"
    return RedirectResponse(target, status_code=303)


@router.get("/r/{reservation_id}")
def status_page(request: Request, reservation_id: str, token: str = "") -> HTMLResponse:
    """The citizen's status: waiting, or the PIN and its window in local time."""
    view = services(request).reservations.for_citizen(reservation_id, token)
    return render(request, "status.html", r=citizen_status(view, _settings(request)))


@router.get("/manage")
def manage(request: Request, flash: str = "") -> HTMLResponse:
    """Pending bookings with Approve / Reject buttons (manager)."""
    user = _require(request, Role.MANAGER)
    pending = services(request).reservations.list(ReservationStatus.PENDING)
    settings = _settings(request)
    rows = [reservation_out(r, settings) for r in pending]
    return render(request, "manage.html", user=user, pending=rows, flash=flash)


@router.post("/manage/{reservation_id}/{action}")
def decide(request: Request, reservation_id: str, action: str) -> Response:
    """Approve or reject one booking, then back to the list."""
    _require(request, Role.MANAGER)
    reservations = services(request).reservations
    if action == "approve":
        r = reservations.approve(reservation_id)
        flash = f"Approved: {r.citizen_name}, the PIN was sent"
    elif action == "reject":
        r = reservations.reject(reservation_id)
        flash = f"Rejected: {r.citizen_name}"
    else:
        return render(request, "error.html", status_code=404, error=f"no action {action!r}")
    return RedirectResponse(f"/manage?flash={quote(flash)}", status_code=303)


@router.get("/locks/{lock_id}")
def lock_page(request: Request, lock_id: str) -> HTMLResponse:
    """A lock's audit log: each event once, newest first (manager or ops)."""
    user = _require(request, Role.MANAGER, Role.OPS)
    svc, zone = services(request), _settings(request).zone
    lock = svc.facilities.lock(lock_id)
    events = [
        {
            "seq": e.seq,
            "kind": e.kind,
            "who": e.reservation_name,
            "time_local": format_local(e.lock_ts, zone),
        }
        for e in svc.audit.events(lock_id)
    ]
    return render(request, "lock.html", user=user, lock=lock, events=events)


@router.get("/mail")
def mail_page(request: Request) -> HTMLResponse:
    """The demo mail outbox (ops)."""
    user = _require(request, Role.OPS)
    zone = _settings(request).zone
    mails = [
        {
            "id": m.id,
            "to": m.to,
            "subject": m.subject,
            "body": m.body,
            "created_local": format_local(m.created_at, zone),
        }
        for m in services(request).mail.messages()
    ]
    return render(request, "mail.html", user=user, mails=mails)
