"""Facilities, their rooms and locks, and a day's availability. Reading is public (the
booking form needs it); a manager changes only the facilities of its departments
(:mod:`cloud.core.scope`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, status

from cloud.api.deps import ServicesDep, Staff
from cloud.api.params import IsoDay, QueryId, RowId
from cloud.api.schemas import (
    AvailabilityOut,
    FacilityIn,
    FacilityOut,
    LockCreated,
    LockIn,
    LockOut,
    RoomDayOut,
    RoomIn,
    RoomOut,
    SlotOut,
)
from cloud.gym.views import AvailabilityDay, FacilityView, LockView, RoomView
from cloud.localtime import local
from cloud.settings import CloudSettings

router = APIRouter(prefix="/api/facilities", tags=["facilities"])


def lock_out(x: LockView) -> LockOut:
    """A lock as the API shows it (never its PIN key)."""
    return LockOut(lock_id=x.lock_id, name=x.name, facility_id=x.facility_id, room_id=x.room_id)


def room_out(r: RoomView) -> RoomOut:
    """A room with the locks its PIN opens."""
    return RoomOut(
        id=r.id, facility_id=r.facility_id, name=r.name, capacity=r.capacity, locks=[*r.lock_ids]
    )


def _out(f: FacilityView) -> FacilityOut:
    return FacilityOut(
        id=f.id,
        name=f.name,
        site=f.site,
        gateway=f.gateway,
        locks=[lock_out(x) for x in f.locks],
        rooms=[room_out(r) for r in f.rooms],
    )


def availability_out(a: AvailabilityDay, settings: CloudSettings) -> AvailabilityOut:
    """A day's availability with local clock times (``24:00`` for the next midnight)."""
    zone = settings.zone

    def hhmm(ts: int) -> str:
        t = local(ts, zone)
        return "24:00" if t.date() > a.day else f"{t:%H:%M}"

    return AvailabilityOut(
        facility_id=a.facility_id,
        date=a.day,
        timezone=settings.timezone,
        open=a.opens_at is not None,
        opens_local=None if a.opens_at is None else hhmm(a.opens_at),
        closes_local=None if a.closes_at is None else hhmm(a.closes_at),
        closed_reason=a.closed_reason,
        rooms=[
            RoomDayOut(
                room_id=r.room_id,
                room=r.room_name,
                slots=[
                    SlotOut(
                        start=s.start,
                        end=s.end,
                        start_local=hhmm(s.start),
                        end_local=hhmm(s.end),
                        state=s.state,
                        reason=s.reason,
                    )
                    for s in r.segments
                ],
            )
            for r in a.rooms
        ],
    )


@router.get("")
def list_facilities(svc: ServicesDep) -> list[FacilityOut]:
    """Every facility with its rooms and locks (public: the booking form needs them)."""
    return [_out(f) for f in svc.facilities.facilities()]


@router.post("", status_code=status.HTTP_201_CREATED)
def create_facility(body: FacilityIn, svc: ServicesDep, user: Staff) -> FacilityOut:
    """Register a facility, open 09:00-21:00 every day until set (ops, or a manager at a
    site of its departments)."""
    svc.scope.require_site(user, body.site)
    return _out(svc.facilities.create_facility(body.name, body.site, body.gateway))


@router.get("/{facility_id}")
def get_facility(facility_id: RowId, svc: ServicesDep) -> FacilityOut:
    """One facility with its rooms and locks."""
    return _out(svc.facilities.facility(facility_id))


@router.get("/{facility_id}/availability")
def availability(
    facility_id: RowId,
    request: Request,
    svc: ServicesDep,
    day: Annotated[IsoDay, Query(alias="date", description="local date, YYYY-MM-DD")],
    room_id: QueryId | None = None,
) -> AvailabilityOut:
    """Free, taken and unavailable stretches of each room on one day (public)."""
    settings: CloudSettings = request.app.state.settings
    return availability_out(svc.availability.day(facility_id, day, room_id), settings)


@router.get("/{facility_id}/rooms")
def list_rooms(facility_id: RowId, svc: ServicesDep) -> list[RoomOut]:
    """The bookable rooms of one facility."""
    return [room_out(r) for r in svc.facilities.facility(facility_id).rooms]


@router.post("/{facility_id}/rooms", status_code=status.HTTP_201_CREATED)
def add_room(facility_id: RowId, body: RoomIn, svc: ServicesDep, user: Staff) -> RoomOut:
    """Add a bookable room or court (manager or ops)."""
    svc.scope.require_facility(user, facility_id)
    return room_out(svc.facilities.add_room(facility_id, body.name, body.capacity))


@router.get("/{facility_id}/locks")
def list_locks(facility_id: RowId, svc: ServicesDep) -> list[LockOut]:
    """The locks of one facility."""
    return _out(svc.facilities.facility(facility_id)).locks


@router.post("/{facility_id}/locks", status_code=status.HTTP_201_CREATED)
def add_lock(facility_id: RowId, body: LockIn, svc: ServicesDep, user: Staff) -> LockCreated:
    """Register a lock; the answer carries its PIN key once (manager or ops)."""
    svc.scope.require_facility(user, facility_id)
    lock, key = svc.facilities.add_lock(
        facility_id,
        body.lock_id,
        body.name,
        body.pin_key,
        body.room_id,
        offline_secret=body.offline_secret,
    )
    return LockCreated(**lock_out(lock).model_dump(), pin_key=key)
