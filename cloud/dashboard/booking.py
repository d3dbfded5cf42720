"""The citizen's pages: a room's free times and the booking form, the status page with
the PIN, cancelling from it, and confirming a booking from its mailed link."""

from __future__ import annotations

import dataclasses
import secrets
from datetime import date, time
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from cloud.api.deps import services
from cloud.api.facilities import availability_out
from cloud.api.reservations import (
    citizen_status,
    confirmed_message,
    pin_while_valid,
    requester,
)
from cloud.dashboard.i18n import N_, Lang, duration, request_lang, tr, weekday_name
from cloud.dashboard.routes import render, settings_of
from cloud.errors import (
    CloudError,
    IdempotencyKeyReusedError,
    InvalidRequestError,
    TooManyAttemptsError,
)
from cloud.gym.models import ReservationStatus
from cloud.gym.reservations import BookingRequest
from cloud.gym.rules import format_clock
from cloud.localtime import EN_DASH, WAVE_DASH, local, slot_from_form
from cloud.services import Services
from cloud.settings import CloudSettings
from protocol.clock import Clock

router = APIRouter(include_in_schema=False)
FormStr = Annotated[str, Form()]


def _rooms(svc: Services) -> list[dict[str, Any]]:
    return [
        {"id": room.id, "facility_id": f.id, "label": f"{f.name} \u2014 {room.name}"}
        for f in svc.facilities.facilities()
        for room in f.rooms
    ]


FORM_INCOMPLETE = N_(
    "please give a room, a date, a start time, a duration in hours and the group size"
)


def _rules_summary(svc: Services, facility_id: int, lang: Lang) -> dict[str, Any]:
    r = svc.facility_rules.rules(facility_id)
    dash = WAVE_DASH if lang == "ja" else EN_DASH
    return {
        "fee": r.hourly_fee_yen,
        "min": duration(lang, r.min_booking_minutes),
        "max": duration(lang, r.max_booking_minutes),
        "lead": duration(lang, r.lead_time_minutes) if r.lead_time_minutes else "",
        "horizon": r.horizon_days,
        "hours": [
            f"{weekday_name(lang, h.weekday)} {format_clock(h.opens_minute)}{dash}"
            f"{format_clock(h.closes_minute)}"
            for h in r.hours
        ],
    }


def _book_page(
    request: Request, form: dict[str, str], status_code: int = 200, error: str = ""
) -> HTMLResponse:
    svc, settings = services(request), settings_of(request)
    rooms = _rooms(svc)
    room = next((r for r in rooms if str(r["id"]) == form["room_id"]), rooms[0] if rooms else None)
    # the language switch comes back to this room and day, not to an empty form
    back = {k: v for k, v in (("room_id", form["room_id"]), ("date", form["day"])) if v}
    context: dict[str, Any] = {
        "rooms": rooms,
        "form": form,
        "room": room,
        "day": None,
        "page_url": "/book" + (f"?{urlencode(back)}" if back else ""),
    }
    if room is not None:
        form["room_id"] = str(room["id"])
        try:
            day = date.fromisoformat(form["day"])
        except ValueError:
            clock: Clock = request.app.state.clock
            day = local(clock.now(), settings.zone).date()
        context["day"] = availability_out(
            svc.availability.day(room["facility_id"], day, room["id"]), settings
        )
        context["rules"] = _rules_summary(svc, room["facility_id"], request_lang(request))
    return render(request, "book.html", status_code=status_code, error=error, **context)


@router.get("/book")
def book_page(request: Request, room_id: str = "", date: str = "") -> HTMLResponse:
    """The booking form with the chosen room's free times on the chosen day."""
    form = {
        "room_id": room_id,
        "name": "",
        "email": "",
        "group_size": "1",
        "purpose": "",
        "day": date,
        "start": "",
        "hours": "1",
        # a double-clicked or re-sent form books once: the second POST carries the same key
        "idempotency_key": secrets.token_urlsafe(16),
    }
    return _book_page(request, form)


def _request_from(form: dict[str, str], settings: CloudSettings) -> BookingRequest:
    try:
        begin, end = slot_from_form(
            date.fromisoformat(form["day"]),
            time.fromisoformat(form["start"]),
            float(form["hours"]),
            settings.zone,
        )
        room_id, group_size = int(form["room_id"]), int(form["group_size"] or "1")
    except ValueError:
        raise InvalidRequestError(FORM_INCOMPLETE) from None
    return BookingRequest(
        citizen_name=form["name"],
        email=form["email"],
        starts_at=begin,
        ends_at=end,
        room_id=room_id,
        group_size=group_size,
        purpose=form["purpose"],
        idempotency_key=form["idempotency_key"] or None,
    )


@router.post("/book")
def book(
    request: Request,
    *,
    room_id: FormStr,
    name: FormStr,
    email: FormStr,
    day: FormStr,
    start: FormStr,
    hours: FormStr,
    group_size: FormStr = "1",
    purpose: FormStr = "",
    idempotency_key: FormStr = "",
) -> Response:
    """Make the booking and go to its status page; on a rule broken, show the form again."""
    svc = services(request)
    form = {
        "room_id": room_id,
        "name": name,
        "email": email,
        "day": day,
        "start": start,
        "hours": hours,
        "group_size": group_size,
        "purpose": purpose,
        "idempotency_key": idempotency_key,
    }
    client = requester(request)
    try:
        req = _request_from(form, settings_of(request))
        try:
            new = svc.reservations.create(req, client)
        except IdempotencyKeyReusedError:
            # the form was sent again with other values (the back button): a new booking
            form["idempotency_key"] = secrets.token_urlsafe(16)
            new = svc.reservations.create(
                dataclasses.replace(req, idempotency_key=form["idempotency_key"]), client
            )
    except TooManyAttemptsError as exc:
        return _book_page(request, form, status_code=429, error=str(exc))
    except CloudError as exc:
        return _book_page(request, form, status_code=400, error=str(exc))
    target = f"/r/{new.reservation.id}?token={quote(new.access_token)}"
    return RedirectResponse(target, status_code=303)


@router.get("/r/{reservation_id}")
def status_page(
    request: Request, reservation_id: str, token: str = "", flash: str = ""
) -> HTMLResponse:
    """The citizen's status: waiting, or the PIN and its window in local time; cancel.
    The PIN is shown on every visit until its window ends (docs/reservations.md,
    "Telling the PIN once"); the page is neither cached nor leaks its link as a referrer
    to another site (``same-origin``: ``no-referrer`` would make the browser send
    ``Origin: null`` with the page's own forms, which the CSRF check refuses)."""
    svc = services(request)
    view = svc.reservations.for_citizen(reservation_id, token)
    clock: Clock = request.app.state.clock
    can_cancel = (
        view.status
        in (ReservationStatus.UNCONFIRMED, ReservationStatus.PENDING, ReservationStatus.APPROVED)
        and view.starts_at > clock.now()
    )
    response = render(
        request,
        "status.html",
        r=pin_while_valid(citizen_status(view, settings_of(request)), clock.now()),
        ended=view.ends_at <= clock.now(),
        token=token,
        can_cancel=can_cancel,
        flash=flash,
        confirm_minutes=settings_of(request).booking_confirm_ttl_s // 60,
        email=view.email,
    )
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "same-origin"
    return response


def _confirm_page(
    request: Request, reservation_id: str, t: str, status_code: int = 200, **context: Any
) -> HTMLResponse:
    response = render(
        request,
        "confirm.html",
        status_code=status_code,
        reservation_id=reservation_id,
        t=t,
        page_url=f"/r/{quote(reservation_id)}/confirm?t={quote(t)}",
        **context,
    )
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "same-origin"
    return response


@router.get("/r/{reservation_id}/confirm")
def confirm_page(request: Request, reservation_id: str, t: str = "") -> HTMLResponse:
    """The mailed link's page: the booking and a button that confirms it (a link opened
    by a mail scanner confirms nothing)."""
    view = services(request).confirmations.check(reservation_id, t)
    r = citizen_status(view, settings_of(request))
    return _confirm_page(request, reservation_id, t, r=r)


@router.post("/r/{reservation_id}/confirm")
def confirm_booking(request: Request, reservation_id: str, t: FormStr) -> HTMLResponse:
    """Confirm the booking; say what happens next (no PIN here: the mail carries it)."""
    confirmations = services(request).confirmations
    try:
        done = confirmations.confirm(reservation_id, t)
    except CloudError as exc:
        view = confirmations.check(reservation_id, t)
        r = citizen_status(view, settings_of(request))
        return _confirm_page(request, reservation_id, t, 409, r=r, error=str(exc))
    r = citizen_status(done.reservation, settings_of(request))
    return _confirm_page(request, reservation_id, t, r=r, done=confirmed_message(done))


@router.post("/r/{reservation_id}/cancel")
def cancel_booking(
    request: Request, reservation_id: str, token: FormStr, reason: FormStr = ""
) -> Response:
    """The citizen cancels from the status page."""
    svc = services(request)
    try:
        svc.cancellations.by_citizen(reservation_id, token, reason)
    except InvalidRequestError as exc:
        view = svc.reservations.for_citizen(reservation_id, token)
        r = citizen_status(view, settings_of(request))
        back = f"/r/{quote(reservation_id)}?token={quote(token)}"
        return render(
            request,
            "status.html",
            400,
            r=r,
            token=token,
            can_cancel=True,
            error=str(exc),
            page_url=back,
        )
    flash = quote(tr(request, "Your booking is cancelled."))
    return RedirectResponse(
        f"/r/{reservation_id}?token={quote(token)}&flash={flash}", status_code=303
    )
