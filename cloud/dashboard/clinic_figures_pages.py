"""The clinic manager's figures of one day, as a page and as CSV (clinic staff of the
site's department, and ops): check-ins per hour as a bar chart, waiting time (check-in to
first call) median and 90th percentile per department, no-shows. The numbers are
:class:`cloud.clinic.figures.ClinicFigureService`'s; this module only lays them out.

    GET /clinic/{site}/figures?date=YYYY-MM-DD
    GET /clinic/{site}/figures.csv?date=YYYY-MM-DD           one line per department
    GET /clinic/{site}/checkins-per-hour.csv?date=YYYY-MM-DD  one line per hour
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response

from cloud.api.clinic import clinic_services
from cloud.clinic.figures import ClinicDayFigures
from cloud.core.spreadsheet import csv_document
from cloud.dashboard.clinic_pages import require_clinic
from cloud.dashboard.i18n import Lang, gettext, request_lang
from cloud.dashboard.routes import render
from cloud.errors import InvalidRequestError
from protocol.clock import Clock
from protocol.queue_rules import tokyo_day

router = APIRouter(include_in_schema=False)

DEPARTMENT_COLUMNS = (
    "site",
    "day",
    "department",
    "name",
    "tickets",
    "called",
    "wait_median_s",
    "wait_p90_s",
    "done",
    "no_shows",
    "no_show_rate",
)
HOUR_COLUMNS = ("site", "day", "hour", "checkins")
BAR_MAX = 120  # the tallest bar of the chart, in SVG units
DayParam = Annotated[str, Query(alias="date", description="local day YYYY-MM-DD (default: today)")]


def _day(request: Request, value: str) -> date:
    if not value:
        clock: Clock = request.app.state.clock
        return tokyo_day(clock.now())
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise InvalidRequestError(f"{value!r} is not a date; use YYYY-MM-DD") from None


def _duration(lang: Lang, seconds: float | None) -> str:
    """``12 min 05 s``; a dash when there is nothing to measure yet."""
    if seconds is None:
        return "\N{EN DASH}"
    whole = round(seconds)
    return gettext(
        lang, "{minutes} min {seconds} s", minutes=whole // 60, seconds=f"{whole % 60:02d}"
    )


def _percent(rate: float | None) -> str:
    return "\N{EN DASH}" if rate is None else f"{rate * 100:.1f}%"


def _figures_context(figures: ClinicDayFigures, lang: Lang) -> dict[str, Any]:
    peak = max((h.checkins for h in figures.checkins_per_hour), default=0)
    hours = [
        {
            "hour": h.hour,
            "label": f"{h.hour:02d}:00",
            "checkins": h.checkins,
            "bar": 0 if peak == 0 else round(BAR_MAX * h.checkins / peak, 1),
        }
        for h in figures.checkins_per_hour
    ]
    departments = [
        {
            "slug": d.department,
            "name": d.name,
            "tickets": d.tickets,
            "called": d.called,
            "median": _duration(lang, d.wait_median_s),
            "median_s": "" if d.wait_median_s is None else d.wait_median_s,
            "p90": _duration(lang, d.wait_p90_s),
            "p90_s": "" if d.wait_p90_s is None else d.wait_p90_s,
            "done": d.done,
            "no_shows": d.no_shows,
            "no_show_rate": _percent(d.no_show_rate),
        }
        for d in figures.departments
    ]
    return {
        "figures": figures,
        "hours": hours,
        "departments": departments,
        "no_show_rate": _percent(figures.no_show_rate),
    }


@router.get("/clinic/{site}/figures")
def clinic_figures_page(request: Request, site: str, on: DayParam = "") -> HTMLResponse:
    """A day's check-ins per hour, waiting times and no-shows, with CSV links."""
    user = require_clinic(request, site)
    day = _day(request, on)
    clinics = clinic_services(request)
    figures = clinics.figures.day(site, day)
    query = f"?date={day.isoformat()}"
    return render(
        request,
        "clinic_figures.html",
        user=user,
        clinic=clinics.sites.get(site),
        day=day,
        csv_url=f"/clinic/{quote(site)}/figures.csv{query}",
        hours_csv_url=f"/clinic/{quote(site)}/checkins-per-hour.csv{query}",
        **_figures_context(figures, request_lang(request)),
    )


def _csv(rows: list[dict[str, Any]], columns: tuple[str, ...], name: str) -> Response:
    return Response(
        csv_document(columns, ([row[k] for k in columns] for row in rows)),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


@router.get("/clinic/{site}/figures.csv")
def clinic_figures_csv(request: Request, site: str, on: DayParam = "") -> Response:
    """The day's figures per department as CSV (seconds, rates as fractions, blanks for
    none), like the gym's figures CSV."""
    require_clinic(request, site)
    figures = clinic_services(request).figures.day(site, _day(request, on))
    rows = [
        {
            "site": figures.site,
            "day": figures.day.isoformat(),
            "department": d.department,
            "name": d.name,
            "tickets": d.tickets,
            "called": d.called,
            "wait_median_s": d.wait_median_s,
            "wait_p90_s": d.wait_p90_s,
            "done": d.done,
            "no_shows": d.no_shows,
            "no_show_rate": d.no_show_rate,
        }
        for d in figures.departments
    ]
    return _csv(rows, DEPARTMENT_COLUMNS, f"clinic-{figures.site}-{figures.day}.csv")


@router.get("/clinic/{site}/checkins-per-hour.csv")
def clinic_hours_csv(request: Request, site: str, on: DayParam = "") -> Response:
    """The day's check-ins per local hour as CSV."""
    require_clinic(request, site)
    figures = clinic_services(request).figures.day(site, _day(request, on))
    rows = [
        {
            "site": figures.site,
            "day": figures.day.isoformat(),
            "hour": h.hour,
            "checkins": h.checkins,
        }
        for h in figures.checkins_per_hour
    ]
    return _csv(rows, HOUR_COLUMNS, f"clinic-{figures.site}-{figures.day}-checkins.csv")
