"""Bookings: citizens create, follow and cancel them; managers list, approve, reject,
cancel them and record counter payments, at the facilities of their departments only
(another's booking is a 404 like a missing one: :mod:`cloud.core.scope`)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, Response, status

from cloud.api.contract import error_responses
from cloud.api.deps import Manager, ServicesDep, api_user, client_address
from cloud.api.params import QueryId
from cloud.api.schemas import (
    AccessStatusOut,
    CancelIn,
    CitizenStatus,
    ConfirmedOut,
    ConfirmIn,
    ReservationCreated,
    ReservationIn,
    ReservationOut,
)
from cloud.core.models import Role
from cloud.gym.confirmations import Confirmed
from cloud.gym.models import ReservationStatus
from cloud.gym.reservations import BookingRequest
from cloud.gym.sync_status import GrantSync
from cloud.gym.views import ReservationView
from cloud.localtime import format_local
from cloud.settings import CloudSettings
from protocol.clock import Clock

router = APIRouter(prefix="/api/reservations", tags=["reservations"])


def _epoch(value: int | datetime) -> int:
    return value if isinstance(value, int) else int(value.timestamp())


def _settings(request: Request) -> CloudSettings:
    settings: CloudSettings = request.app.state.settings
    return settings


def access_out(items: list[GrantSync]) -> list[AccessStatusOut]:
    """A booking's PIN status per lock, as the API shows it."""
    return [
        AccessStatusOut(
            lock_id=g.lock_id,
            lock=g.lock_name,
            state=g.state.value,
            text=g.text,
            since=g.since,
            next_sync_at=g.at,
        )
        for g in items
    ]


def reservation_out(
    r: ReservationView, settings: CloudSettings, access: list[GrantSync] | None = None
) -> ReservationOut:
    """The staff view of a reservation (no PIN), with its PIN's sync status if given."""
    zone = settings.zone
    return ReservationOut(
        id=r.id,
        status=r.status,
        facility_id=r.facility_id,
        facility=r.facility_name,
        room_id=r.room_id,
        room=r.room_name,
        name=r.citizen_name,
        email=r.email,
        group_size=r.group_size,
        purpose=r.purpose,
        start=r.starts_at,
        end=r.ends_at,
        start_local=format_local(r.starts_at, zone),
        end_local=format_local(r.ends_at, zone),
        created_at=r.created_at,
        fee_yen=r.fee_yen,
        payment_method=r.payment_method,
        payment_state=r.payment_state,
        decided_by=r.decided_by,
        cancelled_by=r.cancelled_by,
        cancel_reason=r.cancel_reason,
        offline_pin=r.grant is not None and r.grant.offline,
        access=access_out(access or []),
    )


def citizen_status(r: ReservationView, settings: CloudSettings) -> CitizenStatus:
    """The citizen's view: the PIN and its window once approved."""
    zone = settings.zone
    out = CitizenStatus(
        id=r.id,
        status=r.status,
        facility=r.facility_name,
        room=r.room_name,
        name=r.citizen_name,
        group_size=r.group_size,
        start=r.starts_at,
        end=r.ends_at,
        start_local=format_local(r.starts_at, zone),
        end_local=format_local(r.ends_at, zone),
        timezone=settings.timezone,
        fee_yen=r.fee_yen,
        payment_state=r.payment_state,
        payment_instructions=r.payment_instructions,
        cancel_reason=r.cancel_reason,
    )
    if r.grant is not None and r.status is ReservationStatus.APPROVED:
        g = r.grant
        out = out.model_copy(
            update={
                "pin": g.pin,
                "window_start": g.window_start,
                "window_end": g.window_end,
                "window_start_local": format_local(g.window_start, zone),
                "window_end_local": format_local(g.window_end, zone),
                "offline_pin": g.offline,
            }
        )
    return out


def pin_while_valid(out: CitizenStatus, now: float) -> CitizenStatus:
    """The PIN is told while it can open a door; after its window only the times stay
    (see "Telling the PIN once" in docs/reservations.md)."""
    if out.pin is not None and out.window_end is not None and now >= out.window_end:
        return out.model_copy(update={"pin": None})
    return out


def booking_request(body: ReservationIn, idempotency_key: str | None) -> BookingRequest:
    """The service's request from the API body."""
    return BookingRequest(
        citizen_name=body.name,
        email=body.email,
        starts_at=_epoch(body.start),
        ends_at=_epoch(body.end),
        room_id=body.room_id,
        lock_id=body.lock_id,
        group_size=body.group_size,
        purpose=body.purpose,
        idempotency_key=idempotency_key,
    )


CHECK_MAIL = (
    "予約はまだ確定していません。{email} に送ったメールのリンクを {minutes} 分以内に開いて確定して"
    "ください。 / Your booking is not confirmed yet: open the link in the mail sent to {email} "
    "within {minutes} minutes to confirm it."
)


def requester(request: Request) -> str:
    """The anonymous client's address, for the booking limits (``trusted_proxies``)."""
    return client_address(request)


def confirmed_message(done: Confirmed) -> str:
    """What a confirmed booking means for the citizen (Japanese first)."""
    if done.already:
        return "この予約は確定済みです。 / This booking is confirmed already."
    if done.reservation.status is ReservationStatus.APPROVED:
        return (
            "予約が確定し、承認されました。暗証番号(PIN)をメールでお送りしました。 / Your "
            "booking is confirmed and approved; we mailed you its PIN."
        )
    return (
        "予約が確定しました。管理者が承認するとメールでお知らせします。 / Your booking is "
        "confirmed; we will mail you when a manager approved it."
    )


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(429),  # the booking limits per address and facility
)
def create_reservation(
    body: ReservationIn,
    request: Request,
    svc: ServicesDep,
    response: Response,
    idempotency_key: Annotated[str | None, Header()] = None,
) -> ReservationCreated:
    """Book a room (public). The booking is ``unconfirmed`` until the link mailed to its
    address is opened (within ``booking_confirm_ttl_s``); then pending, or approved by an
    auto-approval rule. Keep ``status_url``: it shows the PIN once approved. Send an
    ``Idempotency-Key`` header (a fresh UUID per booking) to make a retry safe: the same
    key again answers with the first booking and ``Idempotent-Replayed: true``. A client
    address books at most ``booking_limit_per_address`` times an hour (429)."""
    new = svc.reservations.create(booking_request(body, idempotency_key), requester(request))
    r = new.reservation
    if new.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return ReservationCreated(
        id=r.id,
        status=r.status,
        access_token=new.access_token,
        status_url=svc.reservations.status_url(r.id, new.access_token),
        fee_yen=r.fee_yen,
        payment_state=r.payment_state,
        payment_instructions=r.payment_instructions,
        decided_by=r.decided_by,
        message=CHECK_MAIL.format(
            email=r.email, minutes=_settings(request).booking_confirm_ttl_s // 60
        )
        if r.status is ReservationStatus.UNCONFIRMED
        else "",
    )


@router.post("/{reservation_id}/confirm")
def confirm(reservation_id: str, body: ConfirmIn, svc: ServicesDep) -> ConfirmedOut:
    """Confirm a booking with the ``t`` of the link mailed to its address (what the
    link's page does): pending, or approved with its PIN mailed. A second use changes
    nothing; an expired link is 409."""
    done = svc.confirmations.confirm(reservation_id, body.token)
    return ConfirmedOut(
        id=done.reservation.id,
        status=done.reservation.status,
        already_confirmed=done.already,
        message=confirmed_message(done),
    )


@router.get("")
def list_reservations(
    request: Request,
    svc: ServicesDep,
    user: Manager,
    status: ReservationStatus | None = Query(default=None),  # noqa: B008 - FastAPI idiom
    facility_id: QueryId | None = None,
) -> list[ReservationOut]:
    """Reservations, optionally of one status or facility (manager: of the facilities of
    its departments only)."""
    settings = _settings(request)
    views = svc.reservations.list(status, facility_id, sites=svc.scope.sites(user))
    access = svc.sync_status.grants(r for r in views if r.status is ReservationStatus.APPROVED)
    return [reservation_out(r, settings, access.get(r.id)) for r in views]


@router.get("/{reservation_id}")
def get_reservation(
    reservation_id: str, request: Request, svc: ServicesDep, token: str = ""
) -> CitizenStatus:
    """The citizen's status page data; needs the ``token`` from the status link. The PIN
    is in it until its window has ended."""
    clock: Clock = request.app.state.clock
    view = svc.reservations.for_citizen(reservation_id, token)
    return pin_while_valid(citizen_status(view, _settings(request)), clock.now())


@router.post("/{reservation_id}/approve")
def approve(
    reservation_id: str, request: Request, svc: ServicesDep, user: Manager
) -> ReservationOut:
    """Approve a pending booking: issues the PIN, mails it, publishes the snapshot."""
    svc.scope.require_reservation(user, reservation_id)
    view = svc.approvals.approve(reservation_id, by=user.username)
    access = svc.sync_status.grants([view])
    return reservation_out(view, _settings(request), access.get(view.id))


@router.post("/{reservation_id}/reject")
def reject(
    reservation_id: str, request: Request, svc: ServicesDep, user: Manager
) -> ReservationOut:
    """Reject a pending booking (manager)."""
    svc.scope.require_reservation(user, reservation_id)
    view = svc.approvals.reject(reservation_id, by=user.username)
    return reservation_out(view, _settings(request))


@router.post(
    "/{reservation_id}/cancel",
    # the citizen's token or a manager's Basic credentials: either can be wrong
    responses=error_responses(401, 403, 429),
)
def cancel(
    reservation_id: str, body: CancelIn, request: Request, svc: ServicesDep
) -> ReservationOut:
    """Cancel with a reason: the citizen with ``token`` (before the start), or a manager
    with HTTP Basic (before the end). Revokes the PIN and refunds a paid fee."""
    if body.token is not None:
        view = svc.cancellations.by_citizen(reservation_id, body.token, body.reason)
    else:
        user = api_user(Role.MANAGER)(request)
        svc.scope.require_reservation(user, reservation_id)
        view = svc.cancellations.by_manager(reservation_id, user.username, body.reason)
    return reservation_out(view, _settings(request))


@router.post("/{reservation_id}/payment/paid")
def mark_paid(
    reservation_id: str, request: Request, svc: ServicesDep, user: Manager
) -> ReservationOut:
    """The fee was paid at the counter: unpaid → paid (manager)."""
    svc.scope.require_reservation(user, reservation_id)
    view = svc.payments.mark_paid(reservation_id, by=f"manager:{user.username}")
    return reservation_out(view, _settings(request))
