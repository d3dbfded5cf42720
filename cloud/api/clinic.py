"""The clinic's JSON API: sites, imports from the hospital systems, check-in (app and
desk), the ticket status link, staff actions, the staff's queue view, figures, the action
log, and city announcements. Thin: each route parses, calls a service in
:mod:`cloud.clinic`, serialises.

Roles: ``clinic`` (clinic staff) and ``ops`` for everything a clinic does, clinic staff
at the sites of their departments only (another site answers 404 like a site with no
clinic: :mod:`cloud.core.scope`); ``ops`` alone for sites, announcements and the
network's patient registry (written by the hospital systems' integration account); nobody
for the patient's check-in (the signed QR code on the card is what the patient has:
:mod:`cloud.clinic.app_checkin`) and status link.
Nothing here that a display gets carries a name."""

from __future__ import annotations

import math
from datetime import date
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request, status
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StrictBool

from cloud.api.contract import error_responses
from cloud.api.deps import Ops, api_user, client_address, services
from cloud.api.params import Epoch, Integer, IsoDay, RowId, SlugPath
from cloud.clinic.announcements import AnnouncementView
from cloud.clinic.appointments import (
    AppointmentRecord,
    ImportResult,
    PatientChangeEntry,
    PatientRecord,
)
from cloud.clinic.audit import ActionEntry
from cloud.clinic.card_qr import card_qr_key, sign_card_qr
from cloud.clinic.checkin import CheckinResult, TicketStatus, parse_card
from cloud.clinic.errors import CheckinRateLimitedError
from cloud.clinic.figures import ClinicDayFigures
from cloud.clinic.models import TicketSource
from cloud.clinic.services import ClinicServices
from cloud.clinic.sites import ClinicView, DepartmentSpec
from cloud.clinic.staff import ActionResult, QueueView, StaffRequest
from cloud.core.models import Role
from cloud.core.scope import within
from cloud.core.views import UserView
from cloud.errors import InvalidRequestError, NotFoundError
from cloud.settings import CloudSettings
from protocol.clock import Clock
from protocol.messages import (
    PREFIX_PATTERN,
    SLUG_PATTERN,
    ClinicAction,
    DisplayAnnouncementLevel,
)
from protocol.queue_rules import tokyo_day

router = APIRouter(prefix="/api/clinic", tags=["clinic"])

ClinicStaff = Annotated[UserView, Depends(api_user(Role.CLINIC, Role.OPS))]


def clinic_staff_at(site: SlugPath, request: Request, user: ClinicStaff) -> UserView:
    """A dependency for the ``/sites/{site}/…`` routes: clinic staff or ops who may see
    the clinic at ``site`` (clinic staff: at their departments' sites); else 404, as for a
    site with no clinic (:mod:`cloud.core.scope`)."""
    services(request).scope.require_clinic(user, site)
    return user


StaffAtSite = Annotated[UserView, Depends(clinic_staff_at)]
Card = Annotated[
    str,
    Field(
        min_length=16,
        max_length=24,
        description="the 16 digits on the patient card (spaces and dashes allowed)",
    ),
]
Slug = Annotated[str, Field(pattern=SLUG_PATTERN)]


def clinic_services(request: Request) -> ClinicServices:
    """The process's clinic services (built in ``create_app``)."""
    svc: ClinicServices = request.app.state.clinic
    return svc


Clinics = Annotated[ClinicServices, Depends(clinic_services)]


def _actor(user: UserView) -> str:
    return f"{user.role.value}:{user.username}"


def _epoch(value: int | AwareDatetime) -> int:
    return value if isinstance(value, int) else int(value.timestamp())


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ---------------------------------------------------------------------------- sites


class DepartmentIn(_In):
    slug: Slug
    name: str = Field(min_length=1, max_length=60)
    prefix: str = Field(pattern=PREFIX_PATTERN, description="1-3 capitals: A-001")
    rooms: list[str] = Field(min_length=1, description="room labels, unique within the site")
    tolerance_s: Integer = Field(
        default=900,
        ge=0,
        le=86_400,
        description="how long an appointment may go ahead of a walk-in",
    )
    default_service_s: Integer = Field(default=600, gt=0, le=86_400)
    notify_when_left: Integer = Field(
        default=3, ge=0, le=100, description="tell a patient when this many are left before them"
    )


class ClinicIn(_In):
    site: Slug
    gateway: Slug
    name: str = Field(min_length=1, max_length=200)
    departments: list[DepartmentIn] = Field(min_length=1)
    walk_in_department: Slug | None = None
    displays: dict[str, list[str]] = Field(
        default_factory=dict, description="display id -> the departments it shows"
    )


@router.get("/sites")
def list_sites(request: Request, svc: Clinics, user: ClinicStaff) -> list[ClinicView]:
    """The clinic sites the caller may see (clinic staff: of their departments; ops:
    every one) with their departments, rooms and displays."""
    return svc.sites.all(services(request).scope.sites(user))


@router.post("/sites", status_code=status.HTTP_201_CREATED)
def create_site(body: ClinicIn, request: Request, svc: Clinics, _user: Ops) -> ClinicView:
    """Add a clinic site (ops)."""
    clock: Clock = request.app.state.clock
    return svc.sites.create(
        site=body.site,
        gateway=body.gateway,
        name=body.name,
        departments=[
            DepartmentSpec(
                d.slug,
                d.name,
                d.prefix,
                tuple(d.rooms),
                d.tolerance_s,
                d.default_service_s,
                d.notify_when_left,
            )
            for d in body.departments
        ],
        walk_in_department=body.walk_in_department,
        displays=body.displays,
        now=int(clock.now()),
    )


@router.get("/sites/{site}")
def get_site(site: SlugPath, svc: Clinics, _user: StaffAtSite) -> ClinicView:
    """One clinic site."""
    return svc.sites.get(site)


# -------------------------------------------------------------------------- imports


class PatientIn(_In):
    card: Card
    name: str = Field(min_length=1, max_length=200)
    email: str | None = Field(default=None, max_length=320)
    issuing_facility: str | None = Field(
        default=None, max_length=100, description="default: the card's facility digits"
    )


class PatientsIn(_In):
    patients: list[PatientIn]


class AppointmentIn(_In):
    external_id: str = Field(min_length=1, max_length=100)
    card: Card
    site: Slug
    department: Slug
    at: Epoch | AwareDatetime = Field(description="UTC epoch seconds or ISO 8601 with offset")
    cancelled: StrictBool = False


class AppointmentsIn(_In):
    source: str = Field(min_length=1, max_length=40, description="the sending system")
    appointments: list[AppointmentIn]


@router.post("/patients")
def import_patients(body: PatientsIn, svc: Clinics, user: Ops) -> ImportResult:
    """Create or update patients by card number (a batch; all or nothing). The registry is
    the whole network's: only ``ops`` (the hospital systems' integration account) writes
    it, and each change is recorded (``GET /patients/changes``)."""
    return svc.appointments.upsert_patients(
        [PatientRecord(p.card, p.name, p.email, p.issuing_facility) for p in body.patients],
        _actor(user),
    )


@router.get("/patients/changes")
def patient_changes(
    svc: Clinics,
    _user: Ops,
    card: Annotated[str | None, Query(description="only this card's changes")] = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
) -> list[PatientChangeEntry]:
    """The registry's audit trail, newest first: who created or changed which patient,
    when, and what (``changes``: field -> [before, after])."""
    return svc.appointments.patient_changes(card, limit)


@router.post("/appointments")
def import_appointments(
    body: AppointmentsIn, request: Request, svc: Clinics, user: ClinicStaff
) -> ImportResult:
    """Create, update or cancel appointments by ``(source, external_id)`` (a batch; all or
    nothing; sending the same batch again changes nothing). Clinic staff send only their
    departments' sites: another site is refused like a site with no clinic."""
    scope = services(request).scope.sites(user)
    for i, a in enumerate(body.appointments):
        if not within(a.site, scope):
            raise NotFoundError(f"appointments[{i}]: there is no clinic at site {a.site!r}")
    return svc.appointments.upsert_appointments(
        body.source,
        [
            AppointmentRecord(
                a.external_id, a.card, a.site, a.department, _epoch(a.at), a.cancelled
            )
            for a in body.appointments
        ],
    )


# ------------------------------------------------------------------------- check-in


class AppCheckinIn(_In):
    qr: str = Field(
        min_length=1,
        max_length=200,
        description="the text of the QR code printed on the patient card (denen-card:1:…)",
    )
    site: Slug
    department: Slug | None = Field(
        default=None, description="for a walk-in; default: the clinic's"
    )


class DeskCheckinIn(_In):
    card: Card | None = Field(default=None, description="leave out for a patient without one")
    department: Slug | None = None
    urgent: StrictBool = False


class CheckinOut(BaseModel):
    site: str
    number: str
    department: str
    department_name: str
    estimated_wait_s: float
    estimated_wait_min: int
    ahead: int = Field(description="patients called before this ticket")
    appointment_at: int | None
    existing: bool = Field(description="the patient already held this ticket today")
    status_url: str
    page_url: str = Field(description="the same status as a page for the patient's phone")


def _checkin_out(request: Request, result: CheckinResult) -> CheckinOut:
    settings: CloudSettings = request.app.state.settings
    return CheckinOut(
        site=result.site,
        number=result.number,
        department=result.department,
        department_name=result.department_name,
        estimated_wait_s=result.estimated_wait_s,
        estimated_wait_min=math.ceil(result.estimated_wait_s / 60),
        ahead=result.ahead,
        appointment_at=result.appointment_at,
        existing=result.existing,
        status_url=f"{settings.public_url.rstrip('/')}/api/clinic/tickets/{result.status_token}",
        page_url=f"{settings.public_url.rstrip('/')}/ticket/{result.status_token}",
    )


@router.post("/checkin", responses=error_responses(429))
def app_checkin(body: AppCheckinIn, request: Request, svc: Clinics) -> CheckinOut:
    """The patient's app: check in with the card's signed QR code (today's appointment, or
    a walk-in); the number, the estimated wait and a status link. A refused card: 404, the
    same for a forged code and an unknown card; too many refusals: 429 with Retry-After."""
    client = client_address(request)
    try:
        result = svc.app_checkin.check_in(
            body.site, body.qr, client=client, department=body.department
        )
    except CheckinRateLimitedError as exc:
        headers = {"Retry-After": str(exc.retry_after_s)}
        raise HTTPException(status.HTTP_429_TOO_MANY_REQUESTS, str(exc), headers=headers) from None
    return _checkin_out(request, result)


class CardQrIn(_In):
    card: Card


class CardQrOut(BaseModel):
    qr: str = Field(description="the text to print as a QR code on the card")


@router.post("/sites/{site}/card-qr")
def card_qr(site: str, body: CardQrIn, request: Request, _user: StaffAtSite) -> CardQrOut:
    """Reception: the signed QR code to print on a patient card, which the patient's app
    checks in with (it says nothing about whether the card is registered)."""
    settings: CloudSettings = request.app.state.settings
    card = parse_card(body.card)
    return CardQrOut(qr=sign_card_qr(card_qr_key(settings), site, card))


@router.post("/sites/{site}/checkins")
def desk_checkin(
    site: SlugPath, body: DeskCheckinIn, request: Request, svc: Clinics, _user: StaffAtSite
) -> CheckinOut:
    """Reception: check a patient in (with or without a card, urgent or not)."""
    result = svc.checkin.check_in(
        site, body.card, department=body.department, urgent=body.urgent, source=TicketSource.DESK
    )
    return _checkin_out(request, result)


@router.get("/tickets/{token}")
def ticket_status(token: str, svc: Clinics) -> TicketStatus:
    """Where a ticket stands (the link a check-in answers with): no name, no card."""
    return svc.checkin.status(token)


# ---------------------------------------------------------------------------- staff


class ActionIn(_In):
    room: str | None = Field(default=None, description="call: the room; recall: another room")
    to_department: Slug | None = Field(default=None, description="transfer: the department")
    to_room: str | None = Field(default=None, description="transfer: the room")


@router.post("/sites/{site}/rooms/{room}/call-next")
def call_next(site: SlugPath, room: str, svc: Clinics, user: StaffAtSite) -> ActionResult:
    """Room ``room`` calls the next patient of its department."""
    return svc.staff.act(site, StaffRequest(ClinicAction.CALL_NEXT, room=room), _actor(user))


@router.post("/sites/{site}/tickets/{number}/{action}")
def ticket_action(
    site: SlugPath,
    number: str,
    action: ClinicAction,
    *,
    svc: Clinics,
    user: StaffAtSite,
    body: ActionIn | None = None,
) -> ActionResult:
    """``call`` (with ``room``), ``recall``, ``start``, ``done``, ``no_show``, ``skip`` or
    ``transfer`` (``to_room`` and/or ``to_department``) on ticket ``number``."""
    if action is ClinicAction.CALL_NEXT:
        raise InvalidRequestError("call the next patient with POST …/rooms/{room}/call-next")
    body = body or ActionIn()
    request = StaffRequest(action, number, body.room, body.to_department, body.to_room)
    return svc.staff.act(site, request, _actor(user))


@router.get("/sites/{site}/departments/{department}/queue")
def department_queue(
    site: SlugPath, department: str, svc: Clinics, _user: StaffAtSite
) -> QueueView:
    """The department today: each room's ticket, the waiting tickets in call order (with
    position and estimated wait) and the others; patient names for the staff."""
    return svc.staff.queue(site, department)


# -------------------------------------------------------------------- figures, log

Day = Annotated[IsoDay | None, Query(alias="date", description="local day (default: today)")]


def _day(request: Request, day: date | None) -> date:
    clock: Clock = request.app.state.clock
    return day or tokyo_day(clock.now())


@router.get("/sites/{site}/figures")
def figures(
    site: SlugPath, request: Request, svc: Clinics, _user: StaffAtSite, day: Day = None
) -> ClinicDayFigures:
    """Check-ins per hour, waiting time (check-in to first call) median and 90th
    percentile per department, no-show rate; offline (agent) tickets included."""
    return svc.figures.day(site, _day(request, day))


@router.get("/sites/{site}/actions")
def actions(
    site: SlugPath, request: Request, svc: Clinics, _user: StaffAtSite, day: Day = None
) -> list[ActionEntry]:
    """The day's staff action log, oldest first (refused offline replays included)."""
    return svc.audit.actions(site, _day(request, day))


# -------------------------------------------------------------------- announcements


class AnnouncementIn(_In):
    text: str = Field(min_length=1, max_length=240, description="at most 240 UTF-8 bytes")
    level: DisplayAnnouncementLevel = DisplayAnnouncementLevel.INFO
    expires_at: int | AwareDatetime
    sites: list[Slug] | None = Field(default=None, description="leave out: every clinic site")


@router.post("/announcements", status_code=status.HTTP_201_CREATED)
def send_announcement(body: AnnouncementIn, svc: Clinics, user: Ops) -> AnnouncementView:
    """Show a message on the displays of every clinic site, or of ``sites``, until
    ``expires_at`` (ops)."""
    return svc.announcements.send(
        body.text, body.level, _epoch(body.expires_at), body.sites, _actor(user)
    )


@router.get("/announcements")
def list_announcements(svc: Clinics, _user: Ops) -> list[AnnouncementView]:
    """The announcements showing now, newest first."""
    return svc.announcements.active()


@router.delete("/announcements/{announcement_id}")
def clear_announcement(announcement_id: RowId, svc: Clinics, user: Ops) -> AnnouncementView:
    """Take an announcement off the displays now."""
    return svc.announcements.clear(announcement_id, _actor(user))
