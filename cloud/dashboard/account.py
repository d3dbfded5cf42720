"""The second step of a login (the one-time code), enrolling an authenticator at the
first login, and the account page: recovery codes, API tokens, logging out everywhere.

After a right password, a user whose role needs a second factor holds a *pending*
session (:mod:`cloud.core.web_sessions`) that reaches only these pages: the code step when
enrolled, the enrolment otherwise. The full session is opened only after the code.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

import segno
from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from markupsafe import Markup

from cloud.api.deps import client_address, services
from cloud.core.auth import AuthError, check_role
from cloud.core.models import Role
from cloud.core.views import UserView
from cloud.dashboard.i18n import tr
from cloud.dashboard.routes import page_user, render, safe_next
from cloud.dashboard.session import current_session, end_session, start_session
from cloud.errors import CloudError, TooManyAttemptsError

router = APIRouter(include_in_schema=False)

FormStr = Annotated[str, Form()]
EVERY_ROLE = frozenset(Role)


def _pending_user(request: Request) -> UserView:
    """The user of a pending session (password right, second factor to come); else back
    to the login page."""
    session = current_session(request)
    if session is None or not session.pending:
        raise AuthError("log in first (HTTP Basic for the API, /login for the pages)", 401)
    return session.user


def _qr_svg(uri: str) -> Markup:
    # segno writes the SVG from the URI alone: nothing else gets into the markup
    return Markup(segno.make(uri, error="m").svg_inline(scale=5, dark="#1d2330"))  # noqa: S704


@router.get("/login/code")
def code_page(request: Request, next: str = "/") -> HTMLResponse:
    """Ask for the 6-digit code (or a recovery code) after the password."""
    user = _pending_user(request)
    return render(request, "login_code.html", user=None, who=user, next=safe_next(next))


@router.post("/login/code")
def code_step(request: Request, code: FormStr, next: FormStr = "/") -> Response:
    """Check the code; open the full session."""
    user, target = _pending_user(request), safe_next(next)
    try:
        ok = services(request).second_factor.verify(user, code, client_address(request))
    except TooManyAttemptsError as exc:
        return render(
            request, "login_code.html", 429, user=None, who=user, next=target, error=str(exc)
        )
    if not ok:
        error = tr(
            request,
            "that code is not right; type the 6 digits the app shows now, or a recovery code",
        )
        return render(
            request, "login_code.html", 401, user=None, who=user, next=target, error=error
        )
    response = RedirectResponse(target, status_code=303)
    start_session(response, request, user, pending=False)
    return response


@router.get("/account/2fa")
def enrol_page(request: Request, next: str = "/") -> HTMLResponse:
    """At the first login of a role that needs it: a new authenticator secret as a QR
    code (and as text, to type in), and the field for its first code."""
    user = _pending_user(request)
    enrolment = services(request).second_factor.start_enrolment(user)
    return render(
        request,
        "enrol.html",
        user=None,
        who=user,
        next=safe_next(next),
        qr=_qr_svg(enrolment.uri),
        secret=enrolment.secret,
    )


@router.post("/account/2fa")
def enrol(request: Request, code: FormStr, next: FormStr = "/") -> Response:
    """The first code proves the app holds the secret: enable it, show the recovery
    codes once, open the full session."""
    user, target = _pending_user(request), safe_next(next)
    try:
        codes = services(request).second_factor.confirm_enrolment(
            user, code, client_address(request)
        )
    except CloudError as exc:
        # a wrong first code: a fresh secret and QR code, and what went wrong
        enrolment = services(request).second_factor.start_enrolment(user)
        status = 429 if isinstance(exc, TooManyAttemptsError) else 400
        return render(
            request,
            "enrol.html",
            status,
            user=None,
            who=user,
            next=target,
            qr=_qr_svg(enrolment.uri),
            secret=enrolment.secret,
            error=str(exc),
        )
    response = render(request, "recovery_codes.html", user=user, codes=codes, next=target)
    start_session(response, request, user, pending=False)
    return response


def _account(
    request: Request,
    user: UserView,
    *,
    flash: str = "",
    error: str = "",
    new_token: str = "",
    new_label: str = "",
) -> HTMLResponse:
    svc = services(request)
    enrolled = svc.second_factor.enrolled(user.id)
    return render(
        request,
        "account.html",
        user=user,
        enrolled=enrolled,
        codes_left=svc.second_factor.recovery_codes_left(user.id) if enrolled else 0,
        tokens=svc.api_tokens.tokens(user.id),
        flash=flash,
        error=error,
        new_token=new_token,
        new_label=new_label,
    )


@router.get("/account")
def account(request: Request, flash: str = "") -> HTMLResponse:
    """The logged-in user's second factor, API tokens and sessions."""
    return _account(request, check_role(page_user(request), EVERY_ROLE), flash=flash)


@router.post("/account/tokens")
def create_token(request: Request, label: FormStr) -> HTMLResponse:
    """A new API token, shown once on the page that answers."""
    user = check_role(page_user(request), EVERY_ROLE)
    try:
        token = services(request).api_tokens.create(user, label)
    except CloudError as exc:
        return _account(request, user, error=str(exc))
    return _account(request, user, new_token=token, new_label=label.strip())


@router.post("/account/tokens/{token_id}/revoke")
def revoke_token(request: Request, token_id: int) -> Response:
    """Revoke one of the user's API tokens."""
    user = check_role(page_user(request), EVERY_ROLE)
    services(request).api_tokens.revoke(user.id, token_id)
    flash = tr(request, "API token revoked")
    return RedirectResponse(f"/account?flash={quote(flash)}", status_code=303)


@router.post("/account/recovery-codes")
def new_recovery_codes(request: Request) -> HTMLResponse:
    """Ten new recovery codes (the old ones stop working), shown once."""
    user = check_role(page_user(request), EVERY_ROLE)
    svc = services(request)
    if not svc.second_factor.enrolled(user.id):
        return _account(request, user, error=tr(request, "enrol an authenticator first"))
    codes = svc.second_factor.new_recovery_codes(user)
    return render(request, "recovery_codes.html", user=user, codes=codes, next="/account")


@router.post("/logout/everywhere")
def logout_everywhere(request: Request) -> Response:
    """End every session of the user, on every browser (a lost or shared computer)."""
    user = check_role(page_user(request), EVERY_ROLE)
    response = RedirectResponse("/", status_code=303)
    end_session(response, request)
    services(request).web_sessions.end_all(user.id)
    return response
