"""A facility's booking rules, opening hours, closed days and registered groups. Reading
the rules is public (the booking page states them); changing them is for staff (a
manager: of its departments' facilities only, :mod:`cloud.core.scope`)."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from cloud.api.deps import ServicesDep, Staff
from cloud.api.params import IsoDay, RowId
from cloud.api.schemas import (
    ClosedDayIO,
    GroupIn,
    GroupOut,
    HoursIn,
    OpeningHoursIO,
    RulesIn,
    RulesOut,
)
from cloud.gym.facility_rules import RulesUpdate
from cloud.gym.rules import format_clock, parse_clock
from cloud.gym.views import GroupView, OpeningHoursView, RulesView

router = APIRouter(prefix="/api/facilities", tags=["facility rules"])


def rules_out(r: RulesView) -> RulesOut:
    """The rules with clock times as ``HH:MM``."""
    return RulesOut(
        facility_id=r.facility_id,
        hourly_fee_yen=r.hourly_fee_yen,
        min_booking_minutes=r.min_booking_minutes,
        max_booking_minutes=r.max_booking_minutes,
        lead_time_minutes=r.lead_time_minutes,
        horizon_days=r.horizon_days,
        off_peak_from=None
        if r.off_peak_from_minute is None
        else format_clock(r.off_peak_from_minute),
        off_peak_until=(
            None if r.off_peak_until_minute is None else format_clock(r.off_peak_until_minute)
        ),
        payment_method=r.payment_method,
        hours=[
            OpeningHoursIO(
                weekday=h.weekday,
                opens=format_clock(h.opens_minute),
                closes=format_clock(h.closes_minute),
            )
            for h in r.hours
        ],
        closed_days=[ClosedDayIO(day=d, reason=why) for d, why in r.closed_days],
    )


def _group_out(g: GroupView) -> GroupOut:
    return GroupOut(id=g.id, facility_id=g.facility_id, name=g.name, email=g.email)


@router.get("/{facility_id}/rules")
def get_rules(facility_id: RowId, svc: ServicesDep) -> RulesOut:
    """Fee, lengths, lead time, how far ahead, hours and closed days (public)."""
    return rules_out(svc.facility_rules.rules(facility_id))


@router.put("/{facility_id}/rules")
def put_rules(facility_id: RowId, body: RulesIn, svc: ServicesDep, user: Staff) -> RulesOut:
    """Replace the rules' numbers; new bookings follow them (manager or ops)."""
    svc.scope.require_facility(user, facility_id)
    update = RulesUpdate(
        hourly_fee_yen=body.hourly_fee_yen,
        min_booking_minutes=body.min_booking_minutes,
        max_booking_minutes=body.max_booking_minutes,
        lead_time_minutes=body.lead_time_minutes,
        horizon_days=body.horizon_days,
        off_peak_from_minute=None
        if body.off_peak_from is None
        else parse_clock(body.off_peak_from),
        off_peak_until_minute=(
            None if body.off_peak_until is None else parse_clock(body.off_peak_until)
        ),
    )
    return rules_out(svc.facility_rules.set_rules(facility_id, update))


@router.put("/{facility_id}/hours")
def put_hours(facility_id: RowId, body: HoursIn, svc: ServicesDep, user: Staff) -> RulesOut:
    """Replace the weekly opening hours; a weekday left out is closed (manager or ops)."""
    svc.scope.require_facility(user, facility_id)
    hours = [
        OpeningHoursView(h.weekday, parse_clock(h.opens), parse_clock(h.closes)) for h in body.hours
    ]
    return rules_out(svc.facility_rules.set_hours(facility_id, hours))


@router.post("/{facility_id}/closed-days", status_code=status.HTTP_201_CREATED)
def add_closed_day(
    facility_id: RowId, body: ClosedDayIO, svc: ServicesDep, user: Staff
) -> RulesOut:
    """Close the facility on a day, with the reason citizens see (manager or ops)."""
    svc.scope.require_facility(user, facility_id)
    return rules_out(svc.facility_rules.add_closed_day(facility_id, body.day, body.reason))


@router.delete("/{facility_id}/closed-days/{day}")
def remove_closed_day(facility_id: RowId, day: IsoDay, svc: ServicesDep, user: Staff) -> RulesOut:
    """Open a closed day again (manager or ops)."""
    svc.scope.require_facility(user, facility_id)
    return rules_out(svc.facility_rules.remove_closed_day(facility_id, day))


@router.get("/{facility_id}/groups")
def list_groups(facility_id: RowId, svc: ServicesDep, user: Staff) -> list[GroupOut]:
    """Registered groups, whose bookings approve themselves (manager or ops)."""
    svc.scope.require_facility(user, facility_id)
    return [_group_out(g) for g in svc.facility_rules.groups(facility_id)]


@router.post("/{facility_id}/groups", status_code=status.HTTP_201_CREATED)
def add_group(facility_id: RowId, body: GroupIn, svc: ServicesDep, user: Staff) -> GroupOut:
    """Register a group by its contact email (manager or ops)."""
    svc.scope.require_facility(user, facility_id)
    return _group_out(svc.facility_rules.add_group(facility_id, body.name, body.email))


@router.delete("/{facility_id}/groups/{group_id}", status_code=status.HTTP_204_NO_CONTENT)
def remove_group(facility_id: RowId, group_id: RowId, svc: ServicesDep, user: Staff) -> Response:
    """Forget a registered group (manager or ops)."""
    svc.scope.require_facility(user, facility_id)
    svc.facility_rules.remove_group(facility_id, group_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
