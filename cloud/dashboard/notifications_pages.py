"""Pages for notifications and figures: a facility's monthly figures (staff), bulk mail
to its citizens (manager: write, preview, send, sent log), the citizen's one-click
satisfaction score, and queueing a failed mail again (ops). A manager reaches only the
facilities of its departments (:mod:`cloud.core.scope`)."""

from __future__ import annotations

import secrets
from datetime import date
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from cloud.api.deps import services
from cloud.api.notifications import figure_range, mailing_out, preview_out
from cloud.core.models import Role
from cloud.dashboard.i18n import N_, request_lang, tr
from cloud.dashboard.routes import render, require, require_facility, settings_of
from cloud.errors import CloudError, InvalidRequestError
from cloud.gym.notifications import SurveyView
from cloud.gym.notifications_bulk import BulkMailDraft
from cloud.localtime import format_span, format_span_ja

router = APIRouter(include_in_schema=False)
FormStr = Annotated[str, Form()]
STAFF = (Role.MANAGER, Role.OPS)


def _day(value: str) -> date | None:
    try:
        return date.fromisoformat(value) if value else None
    except ValueError:
        raise InvalidRequestError(f"{value!r} is not a date; use YYYY-MM-DD") from None


def _percent(value: float | None) -> str:
    return "" if value is None else f"{value * 100:.1f}%"


@router.get("/manage/facilities/{facility_id}/figures")
def figures_page(
    request: Request,
    facility_id: int,
    from_day: Annotated[str, Query(alias="from")] = "",
    to_day: Annotated[str, Query(alias="to")] = "",
) -> HTMLResponse:
    """Monthly users, utilisation, no-show rate and satisfaction, with a CSV link."""
    user = require_facility(request, facility_id, *STAFF)
    first, last = figure_range(request, _day(from_day), _day(to_day))
    figures = services(request).figures.monthly(facility_id, first, last)
    rows = [
        {
            **{k: getattr(m, k) for k in m.__slots__},
            "utilisation_pct": _percent(m.utilisation),
            "no_show_pct": _percent(m.no_show_rate),
        }
        for m in figures.months
    ]
    csv_url = f"/api/facilities/{facility_id}/figures.csv?from={first}&to={last}"
    return render(request, "figures.html", user=user, figures=figures, rows=rows, csv_url=csv_url)


def _bulk_page(
    request: Request,
    facility_id: int,
    form: dict[str, str],
    *,
    status_code: int = 200,
    preview: Any = None,
    flash: str = "",
    error: str = "",
) -> HTMLResponse:
    user = require_facility(request, facility_id, Role.MANAGER)
    svc, settings = services(request), settings_of(request)
    return render(
        request,
        "bulk_mail.html",
        status_code=status_code,
        user=user,
        facility=svc.facilities.facility(facility_id),
        form=form,
        preview=preview,
        log=[mailing_out(m, settings) for m in svc.bulk_mail.log(facility_id)],
        flash=flash,
        error=error,
    )


@router.get("/manage/facilities/{facility_id}/mail")
def bulk_mail_page(
    request: Request, facility_id: int, flash: str = "", error: str = ""
) -> HTMLResponse:
    """The bulk mail form and the sent log."""
    form = {"from": "", "to": "", "subject": "", "body": "", "submit_key": ""}
    return _bulk_page(request, facility_id, form, flash=flash, error=error)


def _draft(facility_id: int, form: dict[str, str]) -> BulkMailDraft:
    first, last = _day(form["from"]), _day(form["to"])
    if first is None or last is None:
        raise InvalidRequestError(N_("please give the first and the last day"))
    return BulkMailDraft(facility_id, first, last, form["subject"], form["body"])


@router.post("/manage/facilities/{facility_id}/mail/preview")
def bulk_mail_preview(
    request: Request,
    *,
    facility_id: int,
    from_day: Annotated[str, Form(alias="from")],
    to_day: Annotated[str, Form(alias="to")],
    subject: FormStr,
    body: FormStr,
) -> HTMLResponse:
    """Who would get the mail and how it reads; the send button carries a fresh key."""
    require_facility(request, facility_id, Role.MANAGER)
    form = {"from": from_day, "to": to_day, "subject": subject, "body": body}
    # one key per preview: a double click on "send" (or a reload) sends once
    form["submit_key"] = secrets.token_urlsafe(16)
    try:
        preview = preview_out(services(request).bulk_mail.preview(_draft(facility_id, form)))
    except CloudError as exc:
        return _bulk_page(request, facility_id, form, status_code=400, error=str(exc))
    return _bulk_page(request, facility_id, form, preview=preview)


@router.post("/manage/facilities/{facility_id}/mail/send")
def bulk_mail_send(
    request: Request,
    *,
    facility_id: int,
    from_day: Annotated[str, Form(alias="from")],
    to_day: Annotated[str, Form(alias="to")],
    subject: FormStr,
    body: FormStr,
    submit_key: FormStr,
) -> Response:
    """Queue the mails, then back to the page with the log."""
    user = require_facility(request, facility_id, Role.MANAGER)
    form = {"from": from_day, "to": to_day, "subject": subject, "body": body}
    try:
        m = services(request).bulk_mail.send(
            _draft(facility_id, form), f"manager:{user.username}", submit_key
        )
    except CloudError as exc:
        form["submit_key"] = ""
        return _bulk_page(request, facility_id, form, status_code=400, error=str(exc))
    if m.replayed:
        done = tr(request, "Your mail to {count} citizens was sent already.", count=m.recipients)
    else:
        done = tr(request, "Your mail to {count} citizens is queued.", count=m.recipients)
    flash = quote(done)
    return RedirectResponse(f"/manage/facilities/{facility_id}/mail?flash={flash}", 303)


def _survey_context(request: Request, view: SurveyView, sig: str) -> dict[str, Any]:
    zone = settings_of(request).zone
    ja = request_lang(request) == "ja"
    return {
        "visit": view,
        "when": (format_span_ja if ja else format_span)(view.starts_at, view.ends_at, zone),
        "sig": sig,
        "scores": range(1, 6),
        "page_url": f"/feedback/{quote(view.reservation_id)}?sig={quote(sig)}",
    }


@router.get("/feedback/{reservation_id}")
def feedback_page(request: Request, reservation_id: str, sig: str = "") -> HTMLResponse:
    """The citizen's 1-5 buttons (or the score they gave)."""
    view = services(request).notifications.survey(reservation_id, sig)
    return render(request, "feedback.html", **_survey_context(request, view, sig))


@router.post("/feedback/{reservation_id}")
def feedback(
    request: Request, reservation_id: str, sig: FormStr, score: Annotated[int, Form()]
) -> HTMLResponse:
    """Record the score once; a second answer is told the first one counts."""
    notifications = services(request).notifications
    try:
        view = notifications.record_score(reservation_id, sig, score)
    except CloudError as exc:
        view = notifications.survey(reservation_id, sig)
        context = _survey_context(request, view, sig)
        return render(request, "feedback.html", status_code=409, error=str(exc), **context)
    context = _survey_context(request, view, sig)
    thanks = tr(request, "Thank you! Your score is recorded.")
    return render(request, "feedback.html", flash=thanks, **context)


@router.post("/mail/{mail_id}/retry")
def retry_mail(request: Request, mail_id: int) -> Response:
    """Queue a mail the SMTP server refused again (ops)."""
    require(request, Role.OPS)
    services(request).mail.retry(mail_id)
    return RedirectResponse("/mail", status_code=303)
