"""The personal-data page: a person's copy or deletion on request, with a confirmation
step before anything is deleted, and the log of requests and retention runs.

Ops see both halves (a citizen's bookings by email; a patient by card at a clinic); clinic
staff the patient half for their clinics, and the log of their clinics. The services
(:mod:`cloud.gym.retention`, :mod:`cloud.clinic.retention`) check, do and log the work.

    GET  /personal-data                      the forms and the log
    POST /personal-data/bookings             export (JSON or CSV) or look before deleting
    POST /personal-data/bookings/erase       delete, repeating the counts that were shown
    POST /personal-data/patients             the same for a patient at a clinic
    POST /personal-data/patients/erase
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from cloud.api.clinic import clinic_services
from cloud.api.deps import services
from cloud.clinic.retention import patient_csv
from cloud.core.models import Role
from cloud.core.scope import within
from cloud.core.views import UserView
from cloud.dashboard.i18n import request_lang, tr, when
from cloud.dashboard.routes import render, require, settings_of
from cloud.errors import CloudError, InvalidRequestError
from cloud.gym.retention import bookings_csv

router = APIRouter(include_in_schema=False)
PAGE = "/personal-data"


def _actor(user: UserView) -> str:
    return f"{user.role.value}:{user.username}"


def _download(body: str, name: str, media_type: str) -> Response:
    return Response(
        body,
        media_type=f"{media_type}; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


def _page(request: Request, user: UserView, status_code: int = 200, **extra: Any) -> HTMLResponse:
    svc = services(request)
    scope = svc.scope.sites(user)
    settings, lang = settings_of(request), request_lang(request)
    log = [
        {**asdict(e), "at_local": when(lang, e.at, settings.zone), "action": e.action.value}
        for e in svc.personal_data_log.recent(sites=scope)
    ]
    clinics = [
        (c.site, c.name) for c in clinic_services(request).sites.all() if within(c.site, scope)
    ]
    context: dict[str, Any] = {
        "user": user,
        "clinics": clinics,
        "log": log,
        "confirm_booking": None,
        "confirm_patient": None,
        "flash": request.query_params.get("flash", ""),
        "error": request.query_params.get("error", ""),
        **extra,
    }
    return render(request, "personal_data.html", status_code=status_code, **context)


@router.get(PAGE)
def personal_data_page(request: Request) -> HTMLResponse:
    """The forms and the newest log entries."""
    user = require(request, Role.OPS, Role.CLINIC)
    return _page(request, user)


@router.post(f"{PAGE}/bookings")
async def bookings_request(request: Request) -> Response:
    """``email`` and ``action``: ``json`` or ``csv`` (a copy, downloaded), ``look`` (what
    a deletion would do, with the button that does it)."""
    user = require(request, Role.OPS)
    form = await request.form()
    email, action = str(form.get("email", "")), str(form.get("action", ""))
    retention = services(request).retention
    try:
        if action == "look":
            preview = retention.preview(email)
            return _page(request, user, confirm_booking=preview)
        if action not in ("json", "csv"):
            raise InvalidRequestError(f"action is json, csv or look; got {action!r}")
        records = retention.export(email, user.username)
    except CloudError as exc:
        return _page(request, user, status_code=400, error=str(exc))
    if action == "csv":
        return _download(bookings_csv(records), "bookings.csv", "text/csv")
    body = json.dumps({"bookings": [asdict(r) for r in records]}, ensure_ascii=False, indent=2)
    return _download(body, "bookings.json", "application/json")


@router.post(f"{PAGE}/bookings/erase")
async def erase_bookings(request: Request) -> Response:
    """Delete what the confirmation showed (``email``, ``expected_bookings``)."""
    user = require(request, Role.OPS)
    form = await request.form()
    try:
        expected = int(str(form.get("expected_bookings", "")))
        done = services(request).retention.erase(
            str(form.get("email", "")), user.username, expected
        )
    except CloudError as exc:
        return _page(request, user, status_code=400, error=str(exc))
    except ValueError:
        return _page(request, user, status_code=400, error="look at the bookings again first")
    flash = tr(
        request,
        "Deleted: {cancelled} bookings cancelled, {anonymised} anonymised, {mails} mails deleted",
        cancelled=done.cancelled,
        anonymised=done.anonymised,
        mails=done.mails_deleted,
    )
    return RedirectResponse(f"{PAGE}?flash={quote(flash)}", status_code=303)


def _clinic_user(request: Request, site: str) -> UserView:
    user = require(request, Role.OPS, Role.CLINIC)
    services(request).scope.require_clinic(user, site)
    return user


@router.post(f"{PAGE}/patients")
async def patient_request(request: Request) -> Response:
    """``site``, ``card`` and ``action`` (``json``, ``csv`` or ``look``), as for bookings."""
    form = await request.form()
    site, card, action = (str(form.get(k, "")) for k in ("site", "card", "action"))
    user = _clinic_user(request, site)
    retention = clinic_services(request).retention
    try:
        if action == "look":
            preview = retention.preview(card, site)
            return _page(request, user, confirm_patient={**asdict(preview), "card": card})
        if action not in ("json", "csv"):
            raise InvalidRequestError(f"action is json, csv or look; got {action!r}")
        export = retention.export(card, site, _actor(user))
    except CloudError as exc:
        return _page(request, user, status_code=400, error=str(exc))
    if action == "csv":
        return _download(patient_csv(export), f"patient-{site}.csv", "text/csv")
    body = json.dumps(asdict(export), ensure_ascii=False, indent=2)
    return _download(body, f"patient-{site}.json", "application/json")


@router.post(f"{PAGE}/patients/erase")
async def erase_patient(request: Request) -> Response:
    """Delete what the confirmation showed (``site``, ``card``, the two counts)."""
    form = await request.form()
    site, card = str(form.get("site", "")), str(form.get("card", ""))
    user = _clinic_user(request, site)
    try:
        expected = (
            int(str(form.get("expected_tickets", ""))),
            int(str(form.get("expected_appointments", ""))),
        )
        done = clinic_services(request).retention.erase(card, site, _actor(user), expected)
    except CloudError as exc:
        return _page(request, user, status_code=400, error=str(exc))
    except ValueError:
        return _page(request, user, status_code=400, error="look at the patient's data again first")
    flash = tr(
        request,
        "Deleted: {tickets} check-ins cut from the patient, {appointments} appointments and "
        "{registry} registry entries deleted",
        tickets=done.tickets_unlinked,
        appointments=done.appointments_deleted,
        registry=done.registry_deleted,
    )
    return RedirectResponse(f"{PAGE}?flash={quote(flash)}", status_code=303)
