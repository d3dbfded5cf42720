"""Bookings: citizens create and follow them; managers list and approve them."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Query, Request, status

from cloud.api.deps import Manager, ServicesDep
from cloud.api.schemas import CitizenStatus, ReservationCreated, ReservationIn, ReservationOut
from cloud.db.models import ReservationStatus
from cloud.localtime import format_local
from cloud.services.views import ReservationView
from cloud.settings import CloudSettings

router = APIRouter(prefix="/api/reservations", tags=["reservations"])


def _epoch(value: int | datetime) -> int:
    return value if isinstance(value, int) else int(value.timestamp())


def _settings(request: Request) -> CloudSettings:
    settings: CloudSettings = request.app.state.settings
    return settings


def reservation_out(r: ReservationView, settings: CloudSettings) -> ReservationOut:
    """The staff view of a reservation (no PIN)."""
    zone = settings.zone
    return ReservationOut(
        id=r.id,
        status=r.status,
        facility_id=r.facility_id,
        facility=r.facility_name,
        lock_id=r.lock_id,
        lock=r.lock_name,
        name=r.citizen_name,
        email=r.email,
        start=r.starts_at,
        end=r.ends_at,
        start_local=format_local(r.starts_at, zone),
        end_local=format_local(r.ends_at, zone),
        created_at=r.created_at,
    )


def citizen_status(r: ReservationView, settings: CloudSettings) -> CitizenStatus:
    """The citizen's view: the PIN and its window once approved."""
    zone = settings.zone
    out = CitizenStatus(
        id=r.id,
        status=r.status,
        facility=r.facility_name,
        lock=r.lock_name,
        name=r.citizen_name,
        start=r.starts_at,
        end=r.ends_at,
        start_local=format_local(r.starts_at, zone),
        end_local=format_local(r.ends_at, zone),
        timezone=settings.timezone,
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
            }
        )
    return out


@router.post("", status_code=status.HTTP_201_CREATED)
def create_reservation(body: ReservationIn, svc: ServicesDep) -> ReservationCreated:
    """Book a lock (public). Keep ``status_url``: it shows the PIN once approved."""
    new = svc.reservations.create(
        body.lock_id, body.name, body.email, _epoch(body.start), _epoch(body.end)
    )
    r = new.reservation
    return ReservationCreated(
        id=r.id,
        status=r.status,
        access_token=new.access_token,
        status_url=svc.reservations.status_url(r.id, new.access_token),
    )


@router.get("")
def list_reservations(
    request: Request,
    svc: ServicesDep,
    _user: Manager,
    status: ReservationStatus | None = Query(default=None),  # noqa: B008 - FastAPI idiom
) -> list[ReservationOut]:
    """Reservations, optionally of one status (manager)."""
    settings = _settings(request)
    return [reservation_out(r, settings) for r in svc.reservations.list(status)]


@router.get("/{reservation_id}")
def get_reservation(
    reservation_id: str, request: Request, svc: ServicesDep, token: str = ""
) -> CitizenStatus:
    """The citizen's status page data; needs the ``token`` from the status link."""
    return citizen_status(svc.reservations.for_citizen(reservation_id, token), _settings(request))


@router.post("/{reservation_id}/approve")
def approve(
    reservation_id: str, request: Request, svc: ServicesDep, _user: Manager
) -> ReservationOut:
    """Approve a pending booking: issues the PIN, mails it, publishes the snapshot."""
    return reservation_out(svc.reservations.approve(reservation_id), _settings(request))


@router.post("/{reservation_id}/reject")
def reject(
    reservation_id: str, request: Request, svc: ServicesDep, _user: Manager
) -> ReservationOut:
    """Reject a pending booking (manager)."""
    return reservation_out(svc.reservations.reject(reservation_id), _settings(request))
