"""A manager's mail to every citizen with a booking at a facility in a date range (a
closure for a disaster drill): preview, send, and the sent log.

Recipients are the contact emails (case-insensitive, one mail each) of pending and
approved bookings whose slot overlaps the local days ``from_day``..``to_day``; each mail
greets the citizen by name, carries the manager's text and lists that citizen's bookings
in the range. A send carries a ``submit_key`` (the page's hidden field, the API's
``Idempotency-Key``): the same key again returns the first mailing and queues nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, time, timedelta

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from cloud.core.mail import queue_mail
from cloud.core.models import MailMessage, MailState
from cloud.errors import ConflictError, InvalidRequestError, NotFoundError
from cloud.gym.booking_common import BLOCKING, LOAD
from cloud.gym.models import BulkMailing, Facility, Reservation
from cloud.gym.reservations import IDEMPOTENCY_KEY
from cloud.localtime import epoch_from_local, format_span
from cloud.settings import CloudSettings
from protocol.clock import Clock

MAX_SUBJECT, MAX_BODY, MAX_DAYS = 200, 5000, 366


@dataclass(frozen=True, slots=True)
class BulkMailDraft:
    """What the manager writes."""

    facility_id: int
    from_day: date
    to_day: date
    subject: str
    body: str


@dataclass(frozen=True, slots=True)
class Recipient:
    name: str
    email: str
    bookings: tuple[str, ...]  # "Main hall, 10:00-12:00 on 2027-01-15"


@dataclass(frozen=True, slots=True)
class RenderedMail:
    to: str
    subject: str
    body: str


@dataclass(frozen=True, slots=True)
class BulkPreview:
    """Who would get the mail, and the first recipient's mail as it would read."""

    draft: BulkMailDraft
    recipients: tuple[Recipient, ...]
    sample: RenderedMail | None


@dataclass(frozen=True, slots=True)
class BulkMailingView:
    """One line of the sent log; ``delivered``: accepted by the SMTP server so far."""

    id: int
    facility_id: int
    from_day: date
    to_day: date
    subject: str
    body: str
    sent_by: str
    sent_at: int
    recipients: int
    delivered: int
    replayed: bool = False


class BulkMailService:
    """Preview, send and list a facility's bulk mailings."""

    def __init__(
        self, sessions: sessionmaker[Session], clock: Clock, settings: CloudSettings
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        self._settings = settings

    def preview(self, draft: BulkMailDraft) -> BulkPreview:
        """The recipients and the first one's mail; nothing is queued."""
        draft = _checked(draft)
        with self._sessions() as session:
            facility = _facility(session, draft.facility_id)
            recipients = self._recipients(session, draft)
            sample = None if not recipients else self._render(facility, draft, recipients[0])
        return BulkPreview(draft, tuple(recipients), sample)

    def send(self, draft: BulkMailDraft, by: str, submit_key: str) -> BulkMailingView:
        """Queue one mail per recipient and log the mailing; the same ``submit_key``
        again answers with the first mailing (``replayed``)."""
        draft = _checked(draft)
        if not IDEMPOTENCY_KEY.fullmatch(submit_key):
            raise InvalidRequestError(
                "a submit key is 8 to 64 letters, digits or ._:- (send a fresh UUID)"
            )
        now = int(self._clock.now())
        try:
            with self._sessions.begin() as session:
                replay = self._replay(session, submit_key, draft)
                if replay is not None:
                    return replay
                facility = _facility(session, draft.facility_id)
                recipients = self._recipients(session, draft)
                if not recipients:
                    raise InvalidRequestError(
                        "no citizen has a booking at this facility in these days; nothing sent"
                    )
                mailing = BulkMailing(
                    facility_id=draft.facility_id,
                    from_day=draft.from_day,
                    to_day=draft.to_day,
                    subject=draft.subject,
                    body=draft.body,
                    sent_by=by,
                    sent_at=now,
                    recipients=len(recipients),
                    submit_key=submit_key,
                )
                session.add(mailing)
                session.flush()
                for recipient in recipients:
                    mail = self._render(facility, draft, recipient)
                    queue_mail(
                        session, mail.to, mail.subject, mail.body, now, bulk_mailing_id=mailing.id
                    )
                return _view(mailing, 0)
        except IntegrityError:
            # the same key raced in from a second click: answer with the first mailing
            with self._sessions() as session:
                replay = self._replay(session, submit_key, draft)
            if replay is None:
                raise
            return replay

    def log(self, facility_id: int, limit: int = 100) -> list[BulkMailingView]:
        """A facility's mailings, newest first, with how many were delivered."""
        delivered = (
            select(MailMessage.bulk_mailing_id, func.count())
            .where(MailMessage.state == MailState.SENT, MailMessage.bulk_mailing_id.is_not(None))
            .group_by(MailMessage.bulk_mailing_id)
        )
        with self._sessions() as session:
            _facility(session, facility_id)
            counts = {int(k): int(n) for k, n in session.execute(delivered).all() if k is not None}
            rows = session.scalars(
                select(BulkMailing)
                .where(BulkMailing.facility_id == facility_id)
                .order_by(BulkMailing.sent_at.desc(), BulkMailing.id.desc())
                .limit(limit)
            ).all()
            return [_view(m, counts.get(m.id, 0)) for m in rows]

    def _replay(
        self, session: Session, submit_key: str, draft: BulkMailDraft
    ) -> BulkMailingView | None:
        first = session.scalars(
            select(BulkMailing).where(BulkMailing.submit_key == submit_key)
        ).first()
        if first is None:
            return None
        if (first.facility_id, first.subject, first.body) != (
            draft.facility_id,
            draft.subject,
            draft.body,
        ):
            raise ConflictError(
                "this submit key was used for another mailing; preview again and send"
            )
        return _view(first, 0, replayed=True)

    def _recipients(self, session: Session, draft: BulkMailDraft) -> list[Recipient]:
        zone = self._settings.zone
        start = epoch_from_local(draft.from_day, time(0, 0), zone)
        end = epoch_from_local(draft.to_day + timedelta(days=1), time(0, 0), zone)
        bookings = session.scalars(
            select(Reservation)
            .options(*LOAD)
            .where(
                Reservation.facility_id == draft.facility_id,
                Reservation.status.in_(BLOCKING),
                Reservation.starts_at < end,
                Reservation.ends_at > start,
            )
            .order_by(Reservation.starts_at, Reservation.id)
        ).all()
        by_email: dict[str, Recipient] = {}
        for r in bookings:
            line = f"{r.room.name}, {format_span(r.starts_at, r.ends_at, zone)}"
            seen = by_email.get(r.email.lower())
            by_email[r.email.lower()] = (
                Recipient(r.citizen_name, r.email, (line,))
                if seen is None
                else Recipient(seen.name, seen.email, (*seen.bookings, line))
            )
        return list(by_email.values())

    def _render(self, facility: Facility, draft: BulkMailDraft, to: Recipient) -> RenderedMail:
        bookings = "\n".join(f"- {line}" for line in to.bookings)
        return RenderedMail(
            to=to.email,
            subject=draft.subject,
            body=(
                f"Dear {to.name},\n\n{draft.body.strip()}\n\n"
                f"Your bookings at {facility.name} in this period "
                f"({self._settings.timezone}):\n{bookings}\n\n{facility.name}\n"
            ),
        )


def _checked(draft: BulkMailDraft) -> BulkMailDraft:
    subject, body = draft.subject.strip(), draft.body.strip()
    if not subject or len(subject) > MAX_SUBJECT:
        raise InvalidRequestError(f"please write a subject of 1 to {MAX_SUBJECT} characters")
    if not body or len(body) > MAX_BODY:
        raise InvalidRequestError(f"please write a message of 1 to {MAX_BODY} characters")
    if draft.to_day < draft.from_day:
        raise InvalidRequestError("the last day is before the first day; swap them")
    if (draft.to_day - draft.from_day).days >= MAX_DAYS:
        raise InvalidRequestError(f"pick a range of at most {MAX_DAYS} days")
    return BulkMailDraft(draft.facility_id, draft.from_day, draft.to_day, subject, body)


def _facility(session: Session, facility_id: int) -> Facility:
    facility = session.get(Facility, facility_id)
    if facility is None:
        raise NotFoundError(f"no facility {facility_id}")
    return facility


def _view(m: BulkMailing, delivered: int, *, replayed: bool = False) -> BulkMailingView:
    return BulkMailingView(
        id=m.id,
        facility_id=m.facility_id,
        from_day=m.from_day,
        to_day=m.to_day,
        subject=m.subject,
        body=m.body,
        sent_by=m.sent_by,
        sent_at=m.sent_at,
        recipients=m.recipients,
        delivered=delivered,
        replayed=replayed,
    )
