"""Facilities and their locks."""

from __future__ import annotations

from fastapi import APIRouter, status

from cloud.api.deps import ServicesDep, Staff
from cloud.api.schemas import FacilityIn, FacilityOut, LockCreated, LockIn, LockOut
from cloud.services.views import FacilityView

router = APIRouter(prefix="/api/facilities", tags=["facilities"])


def _out(f: FacilityView) -> FacilityOut:
    return FacilityOut(
        id=f.id,
        name=f.name,
        site=f.site,
        gateway=f.gateway,
        locks=[LockOut(lock_id=x.lock_id, name=x.name, facility_id=x.facility_id) for x in f.locks],
    )


@router.get("")
def list_facilities(svc: ServicesDep) -> list[FacilityOut]:
    """Every facility with its locks (public: the booking form needs them)."""
    return [_out(f) for f in svc.facilities.facilities()]


@router.post("", status_code=status.HTTP_201_CREATED)
def create_facility(body: FacilityIn, svc: ServicesDep, _user: Staff) -> FacilityOut:
    """Register a facility (manager or ops)."""
    return _out(svc.facilities.create_facility(body.name, body.site, body.gateway))


@router.get("/{facility_id}/locks")
def list_locks(facility_id: int, svc: ServicesDep) -> list[LockOut]:
    """The locks of one facility."""
    return _out(svc.facilities.facility(facility_id)).locks


@router.post("/{facility_id}/locks", status_code=status.HTTP_201_CREATED)
def add_lock(facility_id: int, body: LockIn, svc: ServicesDep, _user: Staff) -> LockCreated:
    """Register a lock; the answer carries its PIN key once (manager or ops)."""
    lock, key = svc.facilities.add_lock(facility_id, body.lock_id, body.name, body.pin_key)
    return LockCreated(
        lock_id=lock.lock_id, name=lock.name, facility_id=lock.facility_id, pin_key=key
    )
