"""The clinic's pages: the list of clinic sites, the staff page and the patient's ticket
page. Routes parse the form, call a clinic service (:mod:`cloud.clinic`), render; what
the queue refuses (room busy, nobody waiting, a step the ticket cannot take) comes back
to the staff page as its message, never as an error page.

    GET  /clinic                                       clinic sites and their pages
    GET  /clinic/{site}/staff?department=&room=        the staff page of one room
    GET  /clinic/{site}/staff/live?department=&room=   its live part, polled by the page
    POST /clinic/{site}/staff/call-next                the room calls the next patient
    POST /clinic/{site}/staff/tickets/{number}/{action}  call, recall, start, done, …
    POST /clinic/{site}/staff/checkin                  check a patient in at the desk
    GET  /ticket/{token}                        the patient's page (no login)
    GET  /ticket/{token}/live                   its live part

Staff pages are for the ``clinic`` and ``ops`` roles, clinic staff at the sites of their
departments only (another clinic is a 404), and may show patient names (it is the
staff's own screen); the ticket page shows what a display shows: numbers, no names.
Forms are protected from other sites like the rest of the dashboard: the session cookie
is ``SameSite=Lax``, so a cross-site POST arrives without it and is refused.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import quote, unquote, urlencode

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from cloud.api.clinic import clinic_services
from cloud.api.deps import services
from cloud.clinic.models import TicketSource
from cloud.clinic.sites import ClinicView, DepartmentSpec
from cloud.clinic.staff import QueueEntry, QueueView, StaffRequest
from cloud.core.models import Role
from cloud.core.views import UserView
from cloud.dashboard.i18n import N_, Lang, gettext, request_lang, tr
from cloud.dashboard.routes import render, require, settings_of
from cloud.errors import CloudError, InvalidRequestError
from cloud.localtime import local
from protocol.clock import Clock
from protocol.messages import ClinicAction
from protocol.queue_rules import TRANSITIONS, QueueError, TicketState

router = APIRouter(include_in_schema=False)
FormStr = Annotated[str, Form()]
CLINIC_STAFF = (Role.CLINIC, Role.OPS)
DESK_COOKIE = "denen_clinic_desk"  # the department and room last chosen, per site
DESK_COOKIE_MAX_AGE_S = 30 * 24 * 3600
LIVE_VERSION_HEADER = "X-Live-Version"
STAFF_REFRESH_MS = 3000
TICKET_REFRESH_MS = 5000

# the buttons on a room's ticket, always in this order so they stay where hands expect
# (labels in English, the catalogue's keys: the template says them in the page's language)
TICKET_BUTTONS: tuple[tuple[ClinicAction, str], ...] = (
    (ClinicAction.RECALL, N_("Recall")),
    (ClinicAction.START, N_("Start")),
    (ClinicAction.DONE, N_("Done")),
    (ClinicAction.NO_SHOW, N_("No-show")),
    (ClinicAction.SKIP, N_("Skip")),
)

DONE_MESSAGES: dict[ClinicAction, str] = {
    ClinicAction.CALL_NEXT: N_("Called {number} to room {room}"),
    ClinicAction.CALL: N_("Called {number} to room {room} (out of turn)"),
    ClinicAction.RECALL: N_("Called {number} again to room {room}"),
    ClinicAction.START: N_("{number} is in room {room}"),
    ClinicAction.DONE: N_("{number} is done"),
    ClinicAction.NO_SHOW: N_("{number} is marked no-show"),
    ClinicAction.SKIP: N_("{number} is set aside (skipped); recall it when the patient is back"),
    ClinicAction.TRANSFER: N_("{number} is moved to {target}"),
}


@dataclass(frozen=True, slots=True)
class DeskChoice:
    """The department and room a staff page shows (the room is None until chosen)."""

    department: DepartmentSpec
    room: str | None


def _allowed(state: str) -> frozenset[str]:
    """The actions the queue rules allow on a ticket in ``state``."""
    return frozenset(a.value for a in TRANSITIONS[TicketState(state)])


def _minutes(lang: Lang, seconds: float) -> str:
    return gettext(lang, "{minutes} min", minutes=max(int(seconds // 60), 0))


def _about(lang: Lang, seconds: float | None) -> str:
    if seconds is None:
        return ""
    minutes = math.ceil(seconds / 60)
    if minutes < 1:
        return gettext(lang, "now")
    return gettext(lang, "about {minutes} min", minutes=minutes)


def _live_url(site: str, choice: DeskChoice) -> str:
    query = {"department": choice.department.slug}
    if choice.room is not None:
        query["room"] = choice.room
    return f"/clinic/{quote(site)}/staff/live?{urlencode(query)}"


def require_clinic(request: Request, site: str) -> UserView:
    """The logged-in clinic staff or ops user, who must see the clinic at ``site`` (clinic
    staff: at their departments' sites); else 404, as for a site with no clinic
    (:mod:`cloud.core.scope`). Before any form is handled: an action at another
    department's clinic is refused the same way, not sent back as the page's message."""
    user = require(request, *CLINIC_STAFF)
    services(request).scope.require_clinic(user, site)
    return user


def _back(site: str, department: str, room: str, *, flash: str = "", error: str = "") -> Response:
    query = {"department": department, "room": room, "flash": flash, "error": error}
    target = f"/clinic/{quote(site)}/staff?{urlencode({k: v for k, v in query.items() if v})}"
    return RedirectResponse(target, status_code=303)


# --------------------------------------------------------------------------- the sites


@router.get("/clinic")
def clinic_index(request: Request) -> HTMLResponse:
    """The clinic sites the user may see (clinic staff: of their departments) with links
    to their rooms' staff pages and figures."""
    user = require(request, *CLINIC_STAFF)
    clinics = clinic_services(request).sites.all(services(request).scope.sites(user))
    return render(request, "clinic_index.html", user=user, clinics=clinics)


# -------------------------------------------------------------------------- staff page


def _choose(
    clinic: ClinicView, department: str, room: str, cookie: str | None, lang: Lang = "en"
) -> tuple[DeskChoice, str]:
    """The page's department and room: the query's, else the cookie's, else the first
    department; and a message when the query named something the site does not have."""
    by_slug = {d.slug: d for d in clinic.departments}
    problem = ""
    if not department and cookie:
        remembered, _, remembered_room = cookie.partition("/")
        department, room = unquote(remembered), unquote(remembered_room)
        if department not in by_slug:  # the site changed since: start over quietly
            department, room = "", ""
    if department and department not in by_slug:
        problem = gettext(
            lang,
            "{site} has no department {department}; showing the first one",
            site=clinic.site,
            department=repr(department),
        )
        department, room = "", ""
    chosen = by_slug.get(department) or clinic.departments[0]
    if room and room not in chosen.rooms:
        problem = gettext(
            lang,
            "room {room} is not a room of {department} (rooms: {rooms})",
            room=room,
            department=chosen.name,
            rooms=", ".join(chosen.rooms),
        )
        room = ""
    return DeskChoice(chosen, room or None), problem


def _entry(e: QueueEntry, now: float, request: Request) -> dict[str, Any]:
    zone, lang = settings_of(request).zone, request_lang(request)
    return {
        "number": e.number,
        "state": e.state,
        "name": e.patient_name or "",
        "urgent": e.urgent,
        "appointment": "" if e.appointment_at is None else f"{local(e.appointment_at, zone):%H:%M}",
        "preferred_room": e.preferred_room,
        "room": e.room,
        "position": e.position,
        "waited": _minutes(lang, now - e.queued_at),
        "waited_s": int(now - e.queued_at),
        "estimate": _about(lang, e.estimated_wait_s),
        "allowed": _allowed(e.state),
    }


def _targets(clinic: ClinicView, lang: Lang) -> list[tuple[str, str]]:
    """Where a ticket may be transferred: each room, then each department (any room)."""
    rooms = [
        (f"room:{room}", gettext(lang, "Room {room} ({department})", room=room, department=d.name))
        for d in clinic.departments
        for room in d.rooms
    ]
    return rooms + [
        (f"department:{d.slug}", gettext(lang, "{department}, any room", department=d.name))
        for d in clinic.departments
    ]


def _live_context(request: Request, clinic: ClinicView, choice: DeskChoice) -> dict[str, Any]:
    """What the live part of the staff page shows, and its version (changes when the
    queue changes, and every minute for the waits)."""
    clock: Clock = request.app.state.clock
    now = clock.now()
    site = clinic.site
    queue: QueueView = clinic_services(request).staff.queue(site, choice.department.slug)
    entries = {e.number: e for e in (*queue.waiting, *queue.others)}
    rooms = [
        {
            "room": r.room,
            "number": r.number,
            "state": r.state,
            "mine": r.room == choice.room,
        }
        for r in queue.rooms
    ]
    mine = None
    current = next((r for r in queue.rooms if r.room == choice.room), None)
    if current is not None and current.number is not None:
        mine = _entry(entries[current.number], now, request)
    closed = [e for e in queue.others if TicketState(e.state).terminal]
    context = {
        "site": site,
        "clinic": clinic,
        "choice": choice,
        "mine": mine,
        "rooms": rooms,
        "waiting": [_entry(e, now, request) for e in queue.waiting],
        "skipped": [
            _entry(e, now, request) for e in queue.others if e.state == TicketState.SKIPPED.value
        ],
        "done": sum(e.state == TicketState.DONE.value for e in closed),
        "no_shows": sum(e.state == TicketState.NO_SHOW.value for e in closed),
        "buttons": TICKET_BUTTONS,
        "targets": _targets(clinic, request_lang(request)),
        "refresh_ms": STAFF_REFRESH_MS,
    }
    seen = repr((queue, int(now // 60)))
    context["version"] = hashlib.sha256(seen.encode()).hexdigest()[:16]
    context["live_url"] = _live_url(site, choice)
    return context


@router.get("/clinic/{site}/staff")
def staff_page(
    request: Request,
    site: str,
    *,
    department: str = "",
    room: str = "",
    flash: str = "",
    error: str = "",
) -> Response:
    """A room's page: call next, the room's ticket and its buttons, the department's
    queue in call order, the desk check-in; it refreshes its live part by itself."""
    user = require_clinic(request, site)
    clinic = clinic_services(request).sites.get(site)
    choice, problem = _choose(
        clinic, department, room, request.cookies.get(DESK_COOKIE), request_lang(request)
    )
    response = render(
        request,
        "clinic_staff.html",
        user=user,
        flash=flash,
        error=error or problem,
        **_live_context(request, clinic, choice),
    )
    if choice.room is not None:
        remembered = f"{quote(choice.department.slug, safe='')}/{quote(choice.room, safe='')}"
        response.set_cookie(
            DESK_COOKIE,
            remembered,
            max_age=DESK_COOKIE_MAX_AGE_S,
            path=f"/clinic/{quote(site)}",
            httponly=True,
            samesite="lax",
            secure=settings_of(request).public_url.startswith("https://"),
        )
    return response


@router.get("/clinic/{site}/staff/live")
def staff_live(request: Request, site: str, department: str = "", room: str = "") -> Response:
    """The live part of the staff page (rooms, the room's ticket, the queue), with its
    version in a header: the page swaps it in when the version changed."""
    require_clinic(request, site)
    clinic = clinic_services(request).sites.get(site)
    choice, _ = _choose(clinic, department, room, None)
    context = _live_context(request, clinic, choice)
    response = render(request, "clinic_staff_live.html", **context)
    response.headers[LIVE_VERSION_HEADER] = context["version"]
    response.headers["Cache-Control"] = "no-store"
    return response


def _actor(user: UserView) -> str:
    return f"{user.role.value}:{user.username}"


@router.post("/clinic/{site}/staff/call-next")
def staff_call_next(request: Request, site: str, department: FormStr, room: FormStr) -> Response:
    """My room calls the next patient; back to the page with the number or the reason."""
    user = require_clinic(request, site)
    if not room:
        return _back(
            site, department, room, error=tr(request, "choose your room first, then call next")
        )
    staff = clinic_services(request).staff
    try:
        done = staff.act(site, StaffRequest(ClinicAction.CALL_NEXT, room=room), _actor(user))
    except (CloudError, QueueError) as exc:
        return _back(site, department, room, error=str(exc))
    flash = tr(request, DONE_MESSAGES[ClinicAction.CALL_NEXT], number=done.number, room=done.room)
    return _back(site, department, room, flash=flash)


def _transfer_target(target: str) -> tuple[str | None, str | None]:
    """``room:<label>`` or ``department:<slug>`` → ``(to_room, to_department)``."""
    kind, _, value = target.partition(":")
    if kind == "room" and value:
        return value, None
    if kind == "department" and value:
        return None, value
    raise InvalidRequestError(N_("choose where to transfer the ticket: a room or a department"))


@router.post("/clinic/{site}/staff/tickets/{number}/{action}")
def staff_ticket_action(
    request: Request,
    site: str,
    number: str,
    action: str,
    *,
    department: FormStr = "",
    room: FormStr = "",
    to_room: FormStr = "",
    target: FormStr = "",
) -> Response:
    """A button on a ticket: ``call`` (to my room, out of turn), ``recall`` (to its room,
    or ``to_room`` for a skipped ticket), ``start``, ``done``, ``no_show``, ``skip`` or
    ``transfer`` (``target`` is ``room:<label>`` or ``department:<slug>``)."""
    user = require_clinic(request, site)
    staff = clinic_services(request).staff
    try:
        try:
            what = ClinicAction(action)
        except ValueError:
            raise InvalidRequestError(
                tr(request, "{action} is not an action on a ticket", action=repr(action))
            ) from None
        if what is ClinicAction.CALL_NEXT:
            raise InvalidRequestError(
                tr(request, "use the Call next button to call the next patient")
            )
        if what is ClinicAction.CALL and not room:
            raise InvalidRequestError(
                tr(request, "choose your room first, then call {number}", number=number)
            )
        moved_to = ""
        to_department = None
        if what is ClinicAction.TRANSFER:
            target_room, to_department = _transfer_target(target)
            moved_to = (
                tr(request, "room {room}", room=target_room) if target_room else f"{to_department}"
            )
            ask = StaffRequest(what, number, None, to_department, target_room)
        elif what is ClinicAction.CALL:
            ask = StaffRequest(what, number, room=room)
        elif what is ClinicAction.RECALL:
            ask = StaffRequest(what, number, room=to_room or None)
        else:
            ask = StaffRequest(what, number)
        done = staff.act(site, ask, _actor(user))
    except (CloudError, QueueError) as exc:
        return _back(site, department, room, error=str(exc))
    flash = tr(request, DONE_MESSAGES[what], number=done.number, room=done.room, target=moved_to)
    return _back(site, department, room, flash=flash)


@router.post("/clinic/{site}/staff/checkin")
def staff_checkin(
    request: Request,
    site: str,
    *,
    department: FormStr = "",
    room: FormStr = "",
    to_department: FormStr = "",
    card: FormStr = "",
    urgent: FormStr = "",
) -> Response:
    """Check a patient in at the desk: with the card (their appointment, or a walk-in),
    or without one (a walk-in in ``to_department``); urgent when the box is ticked."""
    require_clinic(request, site)
    try:
        result = clinic_services(request).checkin.check_in(
            site,
            card.strip() or None,
            department=to_department or None,
            urgent=bool(urgent),
            source=TicketSource.DESK,
        )
    except (CloudError, QueueError) as exc:
        return _back(site, department, room, error=str(exc))
    lang = request_lang(request)
    if result.existing:
        flash = gettext(
            lang,
            "This patient already holds {number} ({department}) today",
            number=result.number,
            department=result.department_name,
        )
    else:
        if result.ahead == 0:
            ahead = gettext(lang, "nobody ahead")
        else:
            ahead = gettext(lang, "{count} ahead", count=result.ahead)
        flash = gettext(
            lang,
            "Checked in: {number}, {department}, {ahead}, wait {wait}",
            number=result.number,
            department=result.department_name,
            ahead=ahead,
            wait=_about(lang, result.estimated_wait_s),
        )
    return _back(site, department, room, flash=flash)


# ------------------------------------------------------------------ the patient's page

TICKET_STATE_TEXT = {
    TicketState.SKIPPED.value: N_("You were called but not found. Please tell the reception desk."),
    TicketState.DONE.value: N_("Your visit is finished. Thank you."),
    TicketState.NO_SHOW.value: N_(
        "This number was closed because you did not come when called. "
        "Please see the reception desk."
    ),
}


def _ticket_context(request: Request, token: str) -> dict[str, Any]:
    status = clinic_services(request).checkin.status(token)
    lang = request_lang(request)
    clock: Clock = request.app.state.clock
    now = local(clock.now(), settings_of(request).zone)
    final = status.state in (TicketState.DONE.value, TicketState.NO_SHOW.value)
    seen = repr((status, now.strftime("%H:%M")))
    return {
        "ticket": status,
        "estimate": _about(lang, status.estimated_wait_s),
        "state_text": gettext(lang, TICKET_STATE_TEXT.get(status.state, "")),
        "updated": now.strftime("%H:%M"),
        "final": final,
        "version": hashlib.sha256(seen.encode()).hexdigest()[:16],
        "live_url": f"/ticket/{quote(token)}/live",
        "refresh_ms": TICKET_REFRESH_MS,
    }


@router.get("/ticket/{token}")
def ticket_page(request: Request, token: str) -> HTMLResponse:
    """The patient's page behind the check-in's status link: the number, people ahead,
    the estimated wait, the room when called; it refreshes itself. No name, no card."""
    return render(request, "clinic_ticket.html", **_ticket_context(request, token))


@router.get("/ticket/{token}/live")
def ticket_live(request: Request, token: str) -> HTMLResponse:
    """The live part of the patient's page, with its version in a header."""
    context = _ticket_context(request, token)
    response = render(request, "clinic_ticket_live.html", **context)
    response.headers[LIVE_VERSION_HEADER] = context["version"]
    response.headers["Cache-Control"] = "no-store"
    return response
