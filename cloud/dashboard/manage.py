"""The facility manager's pages: the approval queue, upcoming bookings with their
payment, cancelling with a reason; of the facilities of the manager's departments only
(another's booking is a 404: :mod:`cloud.core.scope`)."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from cloud.api.deps import services
from cloud.api.reservations import reservation_out
from cloud.core.models import Role
from cloud.core.views import UserView
from cloud.dashboard.i18n import tr
from cloud.dashboard.routes import render, require, settings_of
from cloud.errors import CloudError
from cloud.gym.models import ReservationStatus
from protocol.clock import Clock

router = APIRouter(include_in_schema=False)


def _back(flash: str) -> Response:
    return RedirectResponse(f"/manage?flash={quote(flash)}", status_code=303)


def _manager_of(request: Request, reservation_id: str) -> UserView:
    """The logged-in manager, if the booking is at one of its departments' facilities;
    else 404, as for a booking that does not exist."""
    user = require(request, Role.MANAGER)
    services(request).scope.require_reservation(user, reservation_id)
    return user


@router.get("/manage")
def manage(request: Request, flash: str = "", error: str = "") -> HTMLResponse:
    """Pending bookings to approve or reject; approved ones to come, with where their PIN
    stands on the lock, to mark paid or cancel (manager)."""
    user = require(request, Role.MANAGER)
    svc, settings = services(request), settings_of(request)
    clock: Clock = request.app.state.clock
    sites = svc.scope.sites(user)  # only the facilities of the manager's departments
    pending = svc.reservations.list(ReservationStatus.PENDING, sites=sites)
    upcoming = [
        r
        for r in svc.reservations.list(ReservationStatus.APPROVED, sites=sites)
        if r.ends_at > clock.now()
    ]
    access = svc.sync_status.grants(upcoming)
    return render(
        request,
        "manage.html",
        user=user,
        pending=[reservation_out(r, settings) for r in pending],
        upcoming=[reservation_out(r, settings, access.get(r.id)) for r in upcoming],
        flash=flash,
        error=error,
    )


@router.post("/manage/{reservation_id}/approve")
def approve(request: Request, reservation_id: str) -> Response:
    """Approve one booking, then back to the list."""
    user = _manager_of(request, reservation_id)
    r = services(request).approvals.approve(reservation_id, by=user.username)
    if r.grant is not None and r.grant.offline:
        return _back(tr(request, "Approved: {name}, an offline PIN was sent", name=r.citizen_name))
    return _back(tr(request, "Approved: {name}, the PIN was sent", name=r.citizen_name))


@router.post("/manage/{reservation_id}/reject")
def reject(request: Request, reservation_id: str) -> Response:
    """Reject one booking, then back to the list."""
    user = _manager_of(request, reservation_id)
    r = services(request).approvals.reject(reservation_id, by=user.username)
    return _back(tr(request, "Rejected: {name}", name=r.citizen_name))


@router.post("/manage/{reservation_id}/paid")
def mark_paid(request: Request, reservation_id: str) -> Response:
    """Record the fee as paid at the counter."""
    user = _manager_of(request, reservation_id)
    r = services(request).payments.mark_paid(reservation_id, by=f"manager:{user.username}")
    return _back(
        tr(request, "Paid: {name}, \u00a5{fee}", name=r.citizen_name, fee=f"{r.fee_yen:,}")
    )


@router.post("/manage/{reservation_id}/cancel")
def cancel(request: Request, reservation_id: str, reason: Annotated[str, Form()] = "") -> Response:
    """Cancel a booking with a reason: the PIN stops working, a paid fee is refunded."""
    user = _manager_of(request, reservation_id)
    try:
        r = services(request).cancellations.by_manager(reservation_id, user.username, reason)
    except CloudError as exc:
        return RedirectResponse(f"/manage?error={quote(str(exc))}", status_code=303)
    return _back(tr(request, "Cancelled: {name}", name=r.citizen_name))
