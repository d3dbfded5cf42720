"""City ops' page for announcements on the clinics' call-number displays: send a text
(info or urgent) to every clinic site or to chosen ones until a time in the facilities'
zone, see the ones showing now, clear one (ops only; :class:`cloud.clinic.announcements.
AnnouncementService` does the work).

    GET  /announcements                  the form and the active announcements
    POST /announcements                  send one
    POST /announcements/{id}/clear       take one off the displays now
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from cloud.api.clinic import clinic_services
from cloud.clinic.announcements import AnnouncementView
from cloud.core.models import Role
from cloud.core.views import UserView
from cloud.dashboard.i18n import N_, Lang, gettext, request_lang, tr, when
from cloud.dashboard.routes import render, require, settings_of
from cloud.errors import CloudError, InvalidRequestError
from cloud.localtime import local
from cloud.settings import CloudSettings
from protocol.clock import Clock
from protocol.messages import DisplayAnnouncementLevel

router = APIRouter(include_in_schema=False)
DEFAULT_SHOWING = timedelta(hours=1)  # the form's expiry starts an hour from now
LOCAL_INPUT = "%Y-%m-%dT%H:%M"  # what <input type="datetime-local"> sends


def _expiry(text: str, settings: CloudSettings) -> int:
    """Epoch seconds of a ``datetime-local`` value read in the facilities' zone."""
    try:
        wall = datetime.strptime(text.strip(), LOCAL_INPUT)
    except ValueError:
        raise InvalidRequestError(
            f"give the expiry as a date and a time ({settings.timezone}); got {text!r}"
        ) from None
    return int(wall.replace(tzinfo=settings.zone).timestamp())


def _where(lang: Lang, sites: tuple[str, ...] | list[str] | None) -> str:
    return gettext(lang, "every clinic") if sites is None else ", ".join(sites)


def _row(a: AnnouncementView, settings: CloudSettings, lang: Lang) -> dict[str, Any]:
    return {
        "id": a.id,
        "text": a.text,
        "level": a.level.value,
        "sites": _where(lang, a.sites),
        "expires_local": when(lang, a.expires_at, settings.zone),
        "created_by": a.created_by,
        "created_local": when(lang, a.created_at, settings.zone),
    }


def _page(
    request: Request,
    user: UserView,
    form: dict[str, Any],
    *,
    status_code: int = 200,
    flash: str = "",
    error: str = "",
) -> HTMLResponse:
    settings = settings_of(request)
    clinics = clinic_services(request)
    return render(
        request,
        "announcements.html",
        status_code=status_code,
        user=user,
        form=form,
        levels=[level.value for level in DisplayAnnouncementLevel],
        sites=[(c.site, c.name) for c in clinics.sites.all()],
        active=[_row(a, settings, request_lang(request)) for a in clinics.announcements.active()],
        flash=flash,
        error=error,
    )


@router.get("/announcements")
def announcements_page(request: Request, flash: str = "", error: str = "") -> HTMLResponse:
    """The form (expiry an hour from now) and what shows on the displays now."""
    user = require(request, Role.OPS)
    clock: Clock = request.app.state.clock
    expires = local(clock.now(), settings_of(request).zone) + DEFAULT_SHOWING
    form = {
        "text": "",
        "level": DisplayAnnouncementLevel.INFO.value,
        "expires": expires.strftime(LOCAL_INPUT),
        "scope": "all",
        "sites": [],
    }
    return _page(request, user, form, flash=flash, error=error)


@router.post("/announcements")
async def send_announcement(request: Request) -> Response:
    """Send: ``text``, ``level``, ``expires`` (local), ``scope`` ``all`` or ``chosen``
    with one ``site`` field per chosen site. A refusal shows the form again, filled in."""
    user = require(request, Role.OPS)
    data = await request.form()
    form: dict[str, Any] = {
        "text": str(data.get("text", "")),
        "level": str(data.get("level", DisplayAnnouncementLevel.INFO.value)),
        "expires": str(data.get("expires", "")),
        "scope": str(data.get("scope", "all")),
        "sites": [str(s) for s in data.getlist("site")],
    }
    settings = settings_of(request)
    try:
        try:
            level = DisplayAnnouncementLevel(form["level"])
        except ValueError:
            raise InvalidRequestError(f"level is info or urgent; got {form['level']!r}") from None
        sites = None if form["scope"] == "all" else form["sites"]
        if sites is not None and not sites:
            raise InvalidRequestError(N_("tick at least one site, or choose every clinic"))
        if sites is None and form["sites"]:  # a tick under "every clinic": ask, do not guess
            raise InvalidRequestError(
                N_("you ticked sites but chose every clinic: choose 'only these clinics' or untick")
            )
        sent = clinic_services(request).announcements.send(
            form["text"], level, _expiry(form["expires"], settings), sites, f"ops:{user.username}"
        )
    except CloudError as exc:
        return _page(request, user, form, status_code=400, error=str(exc))
    lang = request_lang(request)
    flash = tr(
        request,
        "Showing on {where} until {until} ({timezone})",
        where=_where(lang, sent.sites),
        until=when(lang, sent.expires_at, settings.zone),
        timezone=settings.timezone,
    )
    return RedirectResponse(f"/announcements?flash={quote(flash)}", status_code=303)


@router.post("/announcements/{announcement_id}/clear")
def clear_announcement(request: Request, announcement_id: int) -> Response:
    """Take one announcement off the displays now."""
    user = require(request, Role.OPS)
    try:
        cleared = clinic_services(request).announcements.clear(
            announcement_id, f"ops:{user.username}"
        )
    except CloudError as exc:
        return RedirectResponse(f"/announcements?error={quote(str(exc))}", status_code=303)
    flash = tr(request, "Cleared: {text}", text=cleared.text)
    return RedirectResponse(f"/announcements?flash={quote(flash)}", status_code=303)
