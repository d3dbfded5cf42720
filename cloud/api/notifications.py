"""A facility manager's figures (JSON and CSV), no-shows, and bulk mail to the citizens
with bookings in a date range (preview, send, sent log); a manager reaches only the
facilities of its departments, another's answers 404 (:mod:`cloud.core.scope`)."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field

from cloud.api.deps import Manager, ServicesDep, Staff
from cloud.api.params import IsoDay, RowId
from cloud.errors import InvalidRequestError
from cloud.gym.figures import FacilityFigures, figures_csv
from cloud.gym.notifications_bulk import BulkMailDraft, BulkMailingView, BulkPreview
from cloud.localtime import format_local, local
from cloud.settings import CloudSettings
from protocol.clock import Clock

router = APIRouter(prefix="/api/facilities", tags=["notifications and figures"])

FromDay = Annotated[
    IsoDay | None, Query(alias="from", description="first local day (default: 11 months ago, 1st)")
]
ToDay = Annotated[IsoDay | None, Query(alias="to", description="last local day (default: today)")]


def figure_range(request: Request, from_day: date | None, to_day: date | None) -> tuple[date, date]:
    """The asked range, or the last twelve months up to today (local)."""
    settings: CloudSettings = request.app.state.settings
    clock: Clock = request.app.state.clock
    today = local(clock.now(), settings.zone).date()
    last = to_day or today
    if from_day is not None:
        return from_day, last
    first = last.replace(day=1)
    for _ in range(11):
        first = (first - timedelta(days=1)).replace(day=1)
    return first, last


@router.get("/{facility_id}/figures")
def figures(
    facility_id: RowId,
    request: Request,
    *,
    svc: ServicesDep,
    user: Staff,
    from_day: FromDay = None,
    to_day: ToDay = None,
) -> FacilityFigures:
    """Per local month: bookings, users (distinct citizens who came), visitors (their
    group sizes), utilisation (booked / open room-hours), no-show rate and the mean 1-5
    satisfaction score. Definitions: docs/reservations.md (staff)."""
    svc.scope.require_facility(user, facility_id)
    first, last = figure_range(request, from_day, to_day)
    return svc.figures.monthly(facility_id, first, last)


@router.get(
    "/{facility_id}/figures.csv",
    response_class=Response,
    responses={200: {"content": {"text/csv": {}}, "description": "one line per month"}},
)
def figures_as_csv(
    facility_id: RowId,
    request: Request,
    *,
    svc: ServicesDep,
    user: Staff,
    from_day: FromDay = None,
    to_day: ToDay = None,
) -> Response:
    """The same figures as CSV, one line per month (staff)."""
    svc.scope.require_facility(user, facility_id)
    first, last = figure_range(request, from_day, to_day)
    body = figures_csv(svc.figures.monthly(facility_id, first, last))
    name = f"figures-facility-{facility_id}-{first}-{last}.csv"
    return Response(
        body,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


class NoShowOut(BaseModel):
    reservation_id: str
    room: str
    name: str
    email: str
    group_size: int
    start: int
    end: int
    start_local: str
    end_local: str
    flagged_at: int


@router.get("/{facility_id}/no-shows")
def no_shows(
    facility_id: RowId,
    request: Request,
    *,
    svc: ServicesDep,
    user: Staff,
    from_day: Annotated[IsoDay | None, Query(alias="from")] = None,
    to_day: Annotated[IsoDay | None, Query(alias="to")] = None,
) -> list[NoShowOut]:
    """Approved bookings whose PIN opened no door by their end (staff)."""
    svc.scope.require_facility(user, facility_id)
    settings: CloudSettings = request.app.state.settings
    zone = settings.zone
    return [
        NoShowOut(
            reservation_id=n.reservation_id,
            room=n.room_name,
            name=n.citizen_name,
            email=n.email,
            group_size=n.group_size,
            start=n.starts_at,
            end=n.ends_at,
            start_local=format_local(n.starts_at, zone),
            end_local=format_local(n.ends_at, zone),
            flagged_at=n.flagged_at,
        )
        for n in svc.notifications.no_shows(facility_id, from_day, to_day)
    ]


class BulkMailIn(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    from_day: IsoDay = Field(alias="from", description="first local day")
    to_day: IsoDay = Field(alias="to", description="last local day")
    subject: str = Field(min_length=1, max_length=200)
    body: str = Field(min_length=1, max_length=5000)

    def draft(self, facility_id: RowId) -> BulkMailDraft:
        """The service's draft."""
        return BulkMailDraft(facility_id, self.from_day, self.to_day, self.subject, self.body)


class RecipientOut(BaseModel):
    name: str
    email: str
    bookings: list[str]


class MailOut(BaseModel):
    to: str
    subject: str
    body: str


class BulkPreviewOut(BaseModel):
    count: int
    recipients: list[RecipientOut]
    sample: MailOut | None


class BulkMailingOut(BaseModel):
    id: int
    facility_id: RowId
    from_day: date
    to_day: date
    subject: str
    body: str
    sent_by: str
    sent_at: int
    sent_local: str
    recipients: int
    delivered: int


def preview_out(p: BulkPreview) -> BulkPreviewOut:
    """A preview as the API shows it."""
    return BulkPreviewOut(
        count=len(p.recipients),
        recipients=[
            RecipientOut(name=r.name, email=r.email, bookings=[*r.bookings]) for r in p.recipients
        ],
        sample=None
        if p.sample is None
        else MailOut(to=p.sample.to, subject=p.sample.subject, body=p.sample.body),
    )


def mailing_out(m: BulkMailingView, settings: CloudSettings) -> BulkMailingOut:
    """One line of the sent log."""
    return BulkMailingOut(
        id=m.id,
        facility_id=m.facility_id,
        from_day=m.from_day,
        to_day=m.to_day,
        subject=m.subject,
        body=m.body,
        sent_by=m.sent_by,
        sent_at=m.sent_at,
        sent_local=format_local(m.sent_at, settings.zone),
        recipients=m.recipients,
        delivered=m.delivered,
    )


@router.post("/{facility_id}/bulk-mail/preview")
def preview_bulk_mail(
    facility_id: RowId, body: BulkMailIn, svc: ServicesDep, user: Manager
) -> BulkPreviewOut:
    """Who would get this mail (everyone with a pending or approved booking at the
    facility in the days), and how the first one's mail reads; nothing is sent."""
    svc.scope.require_facility(user, facility_id)
    return preview_out(svc.bulk_mail.preview(body.draft(facility_id)))


@router.post("/{facility_id}/bulk-mail", status_code=status.HTTP_201_CREATED)
def send_bulk_mail(
    *,
    facility_id: RowId,
    body: BulkMailIn,
    request: Request,
    response: Response,
    svc: ServicesDep,
    user: Manager,
    idempotency_key: Annotated[str | None, Header()] = None,
) -> BulkMailingOut:
    """Queue one mail per recipient (manager). ``Idempotency-Key`` is required: the same
    key again answers 200 with the first mailing and ``Idempotent-Replayed: true``."""
    if idempotency_key is None:
        raise InvalidRequestError(
            "send an Idempotency-Key header (a fresh UUID per mailing) so that a retry "
            "does not mail everyone twice"
        )
    svc.scope.require_facility(user, facility_id)
    m = svc.bulk_mail.send(body.draft(facility_id), f"manager:{user.username}", idempotency_key)
    if m.replayed:
        response.status_code = status.HTTP_200_OK
        response.headers["Idempotent-Replayed"] = "true"
    return mailing_out(m, request.app.state.settings)


@router.get("/{facility_id}/bulk-mail")
def bulk_mail_log(
    facility_id: RowId, request: Request, svc: ServicesDep, user: Manager
) -> list[BulkMailingOut]:
    """The facility's bulk mailings, newest first: who sent what, when, to how many."""
    svc.scope.require_facility(user, facility_id)
    settings: CloudSettings = request.app.state.settings
    return [mailing_out(m, settings) for m in svc.bulk_mail.log(facility_id)]
