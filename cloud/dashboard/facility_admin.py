"""A simple page for staff to edit a facility's booking rules, hours, closed days and
registered groups (the same services as the API); a manager only those of its
departments' facilities (:mod:`cloud.core.scope`)."""

from __future__ import annotations

from datetime import date
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from cloud.api.deps import services
from cloud.core.models import Role
from cloud.dashboard.i18n import day_text, request_lang, tr, weekday_name
from cloud.dashboard.routes import render, require_facility
from cloud.errors import CloudError, InvalidRequestError
from cloud.gym.facility_rules import RulesUpdate
from cloud.gym.rules import format_clock, parse_clock
from cloud.gym.views import OpeningHoursView

router = APIRouter(include_in_schema=False)
FormStr = Annotated[str, Form()]
STAFF = (Role.MANAGER, Role.OPS)


def _back(facility_id: int, *, flash: str = "", error: str = "") -> Response:
    query = f"flash={quote(flash)}" if flash else f"error={quote(error)}"
    return RedirectResponse(f"/manage/facilities/{facility_id}?{query}", status_code=303)


@router.get("/manage/facilities/{facility_id}")
def facility_page(
    request: Request, facility_id: int, flash: str = "", error: str = ""
) -> HTMLResponse:
    """The rules, hours, closed days and groups of one facility, each with its form."""
    user = require_facility(request, facility_id, *STAFF)
    svc = services(request)
    facility = svc.facilities.facility(facility_id)
    rules = svc.facility_rules.rules(facility_id)
    by_day = {h.weekday: h for h in rules.hours}
    lang = request_lang(request)
    hours = [
        {
            "weekday": d,
            "name": weekday_name(lang, d),
            "opens": format_clock(by_day[d].opens_minute) if d in by_day else "",
            "closes": format_clock(by_day[d].closes_minute) if d in by_day else "",
        }
        for d in range(7)
    ]
    off_peak = ""
    if rules.off_peak_from_minute is not None and rules.off_peak_until_minute is not None:
        off_peak = (
            f"{format_clock(rules.off_peak_from_minute)}-"
            f"{format_clock(rules.off_peak_until_minute)}"
        )
    return render(
        request,
        "facility.html",
        user=user,
        facility=facility,
        rules=rules,
        hours=hours,
        off_peak=off_peak,
        groups=svc.facility_rules.groups(facility_id),
        flash=flash,
        error=error,
    )


def _int(text: str, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise InvalidRequestError(f"{what} is a whole number; got {text!r}") from None


@router.post("/manage/facilities/{facility_id}/rules")
def save_rules(
    request: Request,
    facility_id: int,
    *,
    hourly_fee_yen: FormStr,
    min_booking_minutes: FormStr,
    max_booking_minutes: FormStr,
    lead_time_minutes: FormStr,
    horizon_days: FormStr,
    off_peak: FormStr = "",
) -> Response:
    """Save the numbers; ``off_peak`` is ``HH:MM-HH:MM`` or empty."""
    require_facility(request, facility_id, *STAFF)
    try:
        lo = hi = None
        if off_peak.strip():
            first, _, last = off_peak.strip().partition("-")
            lo, hi = parse_clock(first.strip()), parse_clock(last.strip())
        update = RulesUpdate(
            _int(hourly_fee_yen, "the hourly fee"),
            _int(min_booking_minutes, "the minimum length"),
            _int(max_booking_minutes, "the maximum length"),
            _int(lead_time_minutes, "the lead time"),
            _int(horizon_days, "how many days ahead"),
            lo,
            hi,
        )
        services(request).facility_rules.set_rules(facility_id, update)
    except CloudError as exc:
        return _back(facility_id, error=str(exc))
    return _back(facility_id, flash=tr(request, "Rules saved"))


@router.post("/manage/facilities/{facility_id}/hours")
async def save_hours(request: Request, facility_id: int) -> Response:
    """Save the week: ``opens-<d>`` and ``closes-<d>`` per weekday; both empty: closed."""
    require_facility(request, facility_id, *STAFF)
    form = await request.form()
    try:
        hours = []
        for d in range(7):
            opens, closes = str(form.get(f"opens-{d}", "")), str(form.get(f"closes-{d}", ""))
            if opens or closes:
                hours.append(OpeningHoursView(d, parse_clock(opens), parse_clock(closes)))
        services(request).facility_rules.set_hours(facility_id, hours)
    except CloudError as exc:
        return _back(facility_id, error=str(exc))
    return _back(facility_id, flash=tr(request, "Opening hours saved"))


@router.post("/manage/facilities/{facility_id}/closed-days")
def add_closed_day(request: Request, facility_id: int, day: FormStr, reason: FormStr) -> Response:
    """Close the facility on a day."""
    require_facility(request, facility_id, *STAFF)
    try:
        on = date.fromisoformat(day)
    except ValueError:
        wrong = tr(request, "give the day as YYYY-MM-DD; got {day}", day=repr(day))
        return _back(facility_id, error=wrong)
    try:
        services(request).facility_rules.add_closed_day(facility_id, on, reason)
    except CloudError as exc:
        return _back(facility_id, error=str(exc))
    return _back(
        facility_id, flash=tr(request, "Closed on {day}", day=day_text(request_lang(request), on))
    )


@router.post("/manage/facilities/{facility_id}/closed-days/{day}/delete")
def remove_closed_day(request: Request, facility_id: int, day: date) -> Response:
    """Open a closed day again."""
    require_facility(request, facility_id, *STAFF)
    services(request).facility_rules.remove_closed_day(facility_id, day)
    return _back(
        facility_id,
        flash=tr(request, "Open again on {day}", day=day_text(request_lang(request), day)),
    )


@router.post("/manage/facilities/{facility_id}/groups")
def add_group(request: Request, facility_id: int, name: FormStr, email: FormStr) -> Response:
    """Register a group."""
    require_facility(request, facility_id, *STAFF)
    try:
        services(request).facility_rules.add_group(facility_id, name, email)
    except CloudError as exc:
        return _back(facility_id, error=str(exc))
    return _back(facility_id, flash=tr(request, "Registered {name}", name=name))


@router.post("/manage/facilities/{facility_id}/groups/{group_id}/delete")
def remove_group(request: Request, facility_id: int, group_id: int) -> Response:
    """Forget a registered group."""
    require_facility(request, facility_id, *STAFF)
    services(request).facility_rules.remove_group(facility_id, group_id)
    return _back(facility_id, flash=tr(request, "Group removed"))
