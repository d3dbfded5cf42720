"""A person's data on request (APPI): a copy (JSON, or CSV), or its deletion after a
look at what it deletes, and the log of every such request and retention run. Thin:
:mod:`cloud.gym.retention` and :mod:`cloud.clinic.retention` do the work.

Who: a citizen's bookings, by email address: ``ops`` only. A patient's check-ins, by card
number at one clinic: that clinic's staff or ``ops`` (another clinic's staff get 404, as
for a site with no clinic). The address or card travels in the body of a POST, never in
an address that access logs keep.

Deletion takes two calls, as the dashboard's confirmation does: ``…/erasure-preview`` says
what would go; ``…/erase`` repeats the counts it showed and refuses (409) when they no
longer hold.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from cloud.api.clinic import StaffAtSite, clinic_services
from cloud.api.contract import json_or_csv
from cloud.api.deps import Ops, ServicesDep, api_user
from cloud.clinic.retention import PatientErasure, PatientErasurePreview, patient_csv
from cloud.clinic.services import ClinicServices
from cloud.core.models import Role
from cloud.core.personal_data import LogEntry
from cloud.core.views import UserView
from cloud.gym.retention import BookingErasure, ErasurePreview, bookings_csv

router = APIRouter(tags=["personal data"])

Clinics = Annotated[ClinicServices, Depends(clinic_services)]
Format = Annotated[Literal["json", "csv"], Query(description="json (default) or csv")]
OpsOrClinic = Annotated[UserView, Depends(api_user(Role.OPS, Role.CLINIC))]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EmailIn(_In):
    email: str = Field(min_length=3, max_length=320, description="the address they booked with")


class BookingErasureIn(EmailIn):
    expected_bookings: int = Field(ge=1, description="what the erasure preview counted")


class CardIn(_In):
    card: str = Field(min_length=16, max_length=24, description="the patient card's 16 digits")


class PatientErasureIn(CardIn):
    expected_tickets: int = Field(ge=0, description="what the erasure preview counted")
    expected_appointments: int = Field(ge=0, description="what the erasure preview counted")


def _actor(user: UserView) -> str:
    return f"{user.role.value}:{user.username}"


def _download(text: str, name: str) -> Response:
    return Response(
        text,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


@router.post(
    "/api/personal-data/bookings/export",
    response_model=None,
    responses=json_or_csv("the bookings, as JSON or CSV"),
)
def export_bookings(
    body: EmailIn, svc: ServicesDep, user: Ops, format: Format = "json"
) -> Response | dict[str, Any]:
    """Every booking that carries the address, with what the citizen gave (logged)."""
    records = svc.retention.export(body.email, user.username)
    if format == "csv":
        return _download(bookings_csv(records), "bookings.csv")
    return {"email": body.email.strip(), "bookings": [asdict(r) for r in records]}


@router.post("/api/personal-data/bookings/erasure-preview")
def preview_booking_erasure(body: EmailIn, svc: ServicesDep, _user: Ops) -> ErasurePreview:
    """How many bookings an erasure anonymises and how many of them it cancels first."""
    return svc.retention.preview(body.email)


@router.post("/api/personal-data/bookings/erase")
def erase_bookings(body: BookingErasureIn, svc: ServicesDep, user: Ops) -> BookingErasure:
    """Cancel the address's bookings that have not ended (PIN revoked, cancellation mail),
    then anonymise all of them and forget the mail to it (logged)."""
    return svc.retention.erase(body.email, user.username, body.expected_bookings)


@router.post(
    "/api/clinic/sites/{site}/patients/export",
    response_model=None,
    responses=json_or_csv("the patient's data at the site, as JSON or CSV"),
)
def export_patient(
    site: str, body: CardIn, clinics: Clinics, user: StaffAtSite, format: Format = "json"
) -> Response | dict[str, Any]:
    """The card's registry entry, check-ins and appointments at the site (logged)."""
    export = clinics.retention.export(body.card, site, _actor(user))
    if format == "csv":
        return _download(patient_csv(export), f"patient-{site}.csv")
    return asdict(export)


@router.post("/api/clinic/sites/{site}/patients/erasure-preview")
def preview_patient_erasure(
    site: str, body: CardIn, clinics: Clinics, _user: StaffAtSite
) -> PatientErasurePreview:
    """How many check-ins and appointments of the card at the site an erasure touches."""
    return clinics.retention.preview(body.card, site)


@router.post("/api/clinic/sites/{site}/patients/erase")
def erase_patient(
    site: str, body: PatientErasureIn, clinics: Clinics, user: StaffAtSite
) -> PatientErasure:
    """Cut the card's check-ins at the site from the patient, delete their appointments
    there, and their registry entry when nothing else of theirs is left (logged)."""
    expected = (body.expected_tickets, body.expected_appointments)
    return clinics.retention.erase(body.card, site, _actor(user), expected)


@router.get("/api/personal-data/log")
def personal_data_log(svc: ServicesDep, user: OpsOrClinic) -> JSONResponse:
    """The newest retention runs, erasures and exports (clinic staff: those of their
    clinics)."""
    sites = svc.scope.sites(user)
    entries: list[LogEntry] = svc.personal_data_log.recent(sites=sites)
    return JSONResponse([{**asdict(e), "action": e.action.value} for e in entries])
