"""Periodic notifications of approved bookings, run by every cloud worker with the time
passed in (``run_due(now)``):

- **reminder** the day before: once per booking, to bookings approved before the
  reminder time (a booking approved within the last day has just had its PIN mail);
- **no-show**: an approved booking whose PIN opened no door by its end is flagged; a
  late unlock event (a site that was offline) clears the flag on the next run;
- **survey** after the visit: a signed link to a page that records a 1-5 score once;
  not sent to no-shows.

Once only, under restarts and several workers: the ``reservation_notices`` row (primary
key: booking and kind) is inserted in the transaction that queues the mail, with
``ON CONFLICT DO NOTHING``; a worker whose insert found a row queues nothing. No mail
here carries the PIN: it was told once, on the status page and in the approval mail.
"""

from __future__ import annotations

import hmac
import logging
from dataclasses import dataclass
from datetime import date, time
from hashlib import sha256
from typing import Any

from sqlalchemy import Exists, Select, delete, exists, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from cloud.core.mail import queue_mail
from cloud.db.base import Base
from cloud.errors import ConflictError, InvalidRequestError, NotFoundError
from cloud.gym.booking_common import LOAD, status_url
from cloud.gym.models import (
    AccessGrant,
    LockEvent,
    NoShow,
    Reservation,
    ReservationNotice,
    ReservationStatus,
    SatisfactionScore,
)
from cloud.localtime import epoch_from_local, format_span
from cloud.settings import CloudSettings
from protocol.clock import Clock
from protocol.messages import LockEventKind

log = logging.getLogger(__name__)

REMINDER, SURVEY = "reminder", "survey"
NO_SHOW_LOOKBACK_S = 14 * 24 * 3600  # older bookings are not judged (e.g. at first start)
SURVEY_LOOKBACK_S = 3 * 24 * 3600  # nobody wants a survey about last month
MIN_SCORE, MAX_SCORE = 1, 5
_MIDNIGHT = time(0, 0)


@dataclass(frozen=True, slots=True)
class NotificationRun:
    """What one pass of the periodic job did."""

    reminders: int = 0
    no_shows: int = 0
    no_shows_cleared: int = 0
    surveys: int = 0


@dataclass(frozen=True, slots=True)
class NoShowView:
    reservation_id: str
    facility_id: int
    room_name: str
    citizen_name: str
    email: str
    group_size: int
    starts_at: int
    ends_at: int
    flagged_at: int


@dataclass(frozen=True, slots=True)
class SurveyView:
    """What the score page shows; ``score`` set: already answered."""

    reservation_id: str
    facility_name: str
    room_name: str
    citizen_name: str
    starts_at: int
    ends_at: int
    score: int | None


def survey_signature(secret_key: str, reservation_id: str) -> str:
    """The signature of a booking's survey link (the status token is not reused: the
    survey link must not show the PIN)."""
    mac = hmac.new(secret_key.encode(), f"survey:{reservation_id}".encode(), sha256)
    return mac.hexdigest()[:32]


def survey_url(settings: CloudSettings, reservation_id: str) -> str:
    """The absolute link of a booking's score page."""
    sig = survey_signature(settings.secret_key, reservation_id)
    return f"{settings.public_url.rstrip('/')}/feedback/{reservation_id}?sig={sig}"


def insert_once(session: Session, model: type[Base], key: list[str], **values: object) -> bool:
    """``INSERT … ON CONFLICT DO NOTHING`` of one row; False when the key was taken (by
    an earlier run, or by another worker whose transaction committed first)."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = insert(model).values(**values).on_conflict_do_nothing(index_elements=key)
    returning = stmt.returning(*(model.__table__.c[k] for k in key))
    return session.execute(returning).first() is not None


def claim_notice(session: Session, reservation_id: str, kind: str, now: int) -> bool:
    """Insert the once-only row of a booking's ``kind`` of mail; False if it was there."""
    return insert_once(
        session,
        ReservationNotice,
        ["reservation_id", "kind"],
        reservation_id=reservation_id,
        kind=kind,
        created_at=now,
    )


def _unlocked(grant_id: Any) -> Exists:
    return exists().where(
        LockEvent.grant_id == grant_id, LockEvent.kind == LockEventKind.UNLOCKED.value
    )


def _noticed(kind: str) -> Exists:
    return exists().where(
        ReservationNotice.reservation_id == Reservation.id, ReservationNotice.kind == kind
    )


def _approved_with_grant() -> Select[Reservation]:
    return (
        select(Reservation)
        .join(AccessGrant, AccessGrant.reservation_id == Reservation.id)
        .options(*LOAD)
        .where(Reservation.status == ReservationStatus.APPROVED, AccessGrant.revoked_at.is_(None))
        .order_by(Reservation.starts_at)
    )


class NotificationService:
    """Reminders, no-shows, surveys and the scores they collect."""

    def __init__(
        self, sessions: sessionmaker[Session], clock: Clock, settings: CloudSettings
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        self._settings = settings

    def run_due(self, now: float | None = None) -> NotificationRun:
        """Everything due at ``now`` (default: the clock): no-shows first, so that a
        no-show gets no survey."""
        at = int(self._clock.now() if now is None else now)
        flagged, cleared = self.run_no_show_check(at)
        return NotificationRun(
            reminders=self.run_due_reminders(at),
            no_shows=flagged,
            no_shows_cleared=cleared,
            surveys=self.run_due_surveys(at),
        )

    def run_due_reminders(self, now: float) -> int:
        """Queue the day-before reminder of every booking that starts within the lead."""
        at, lead = int(now), self._settings.reminder_lead_s
        query = _approved_with_grant().where(
            Reservation.starts_at > at,
            Reservation.starts_at <= at + lead,
            Reservation.decided_at <= Reservation.starts_at - lead,
            ~_noticed(REMINDER),
        )
        sent = 0
        with self._sessions.begin() as session:
            for r in session.scalars(query).all():
                if claim_notice(session, r.id, REMINDER, at):
                    self._reminder_mail(session, r, at)
                    sent += 1
        if sent:
            log.info("queued %d reminders", sent)
        return sent

    def run_no_show_check(self, now: float) -> tuple[int, int]:
        """Flag approved bookings that ended with no unlock by their PIN; clear flags
        whose unlock arrived late. Returns (flagged, cleared)."""
        at = int(now)
        query = _approved_with_grant().where(
            Reservation.ends_at <= at,
            Reservation.ends_at > at - NO_SHOW_LOOKBACK_S,
            ~exists().where(NoShow.reservation_id == Reservation.id),
            ~_unlocked(AccessGrant.id),
        )
        late = (
            select(NoShow)
            .join(AccessGrant, AccessGrant.reservation_id == NoShow.reservation_id)
            .where(_unlocked(AccessGrant.id))
        )
        with self._sessions.begin() as session:
            flagged = 0
            for r in session.scalars(query).all():
                flagged += insert_once(
                    session, NoShow, ["reservation_id"], reservation_id=r.id, flagged_at=at
                )
            cleared_ids = [n.reservation_id for n in session.scalars(late).all()]
            if cleared_ids:
                session.execute(delete(NoShow).where(NoShow.reservation_id.in_(cleared_ids)))
        return flagged, len(cleared_ids)

    def run_due_surveys(self, now: float) -> int:
        """Queue the post-visit survey of every booking that ended a while ago."""
        at, delay = int(now), self._settings.survey_delay_s
        query = _approved_with_grant().where(
            Reservation.ends_at <= at - delay,
            Reservation.ends_at > at - delay - SURVEY_LOOKBACK_S,
            ~exists().where(NoShow.reservation_id == Reservation.id),
            ~_noticed(SURVEY),
        )
        sent = 0
        with self._sessions.begin() as session:
            for r in session.scalars(query).all():
                if claim_notice(session, r.id, SURVEY, at):
                    self._survey_mail(session, r, at)
                    sent += 1
        return sent

    def no_shows(
        self, facility_id: int, from_day: date | None = None, to_day: date | None = None
    ) -> list[NoShowView]:
        """Flagged bookings of a facility (optionally starting within local days)."""
        query = (
            select(Reservation, NoShow.flagged_at)
            .join(NoShow, NoShow.reservation_id == Reservation.id)
            .options(*LOAD)
            .where(Reservation.facility_id == facility_id)
            .order_by(Reservation.starts_at)
        )
        zone = self._settings.zone
        if from_day is not None:
            query = query.where(
                Reservation.starts_at >= epoch_from_local(from_day, _MIDNIGHT, zone)
            )
        if to_day is not None:
            end = epoch_from_local(to_day, _MIDNIGHT, zone) + 24 * 3600
            query = query.where(Reservation.starts_at < end)
        with self._sessions() as session:
            return [
                NoShowView(
                    reservation_id=r.id,
                    facility_id=r.facility_id,
                    room_name=r.room.name,
                    citizen_name=r.citizen_name,
                    email=r.email,
                    group_size=r.group_size,
                    starts_at=r.starts_at,
                    ends_at=r.ends_at,
                    flagged_at=flagged_at,
                )
                for r, flagged_at in session.execute(query).all()
            ]

    def survey(self, reservation_id: str, sig: str) -> SurveyView:
        """The booking behind a survey link; the signature must match."""
        with self._sessions() as session:
            r = self._signed(session, reservation_id, sig)
            score = session.get(SatisfactionScore, reservation_id)
            return _survey_view(r, None if score is None else score.score)

    def record_score(self, reservation_id: str, sig: str, score: int) -> SurveyView:
        """Record the citizen's 1-5 score, once (a second answer is refused with 409)."""
        if not MIN_SCORE <= score <= MAX_SCORE:
            raise InvalidRequestError(f"please pick a score from {MIN_SCORE} to {MAX_SCORE}")
        now = int(self._clock.now())
        with self._sessions.begin() as session:
            r = self._signed(session, reservation_id, sig)
            if r.status is not ReservationStatus.APPROVED or r.starts_at > now:
                raise ConflictError("this booking has not taken place; score it after your visit")
            recorded = insert_once(
                session,
                SatisfactionScore,
                ["reservation_id"],
                reservation_id=r.id,
                score=score,
                recorded_at=now,
            )
            if not recorded:
                raise ConflictError("you scored this visit already; thank you")
            return _survey_view(r, score)

    def _signed(self, session: Session, reservation_id: str, sig: str) -> Reservation:
        expected = survey_signature(self._settings.secret_key, reservation_id)
        r = session.get(Reservation, reservation_id, options=LOAD)
        if r is None or not hmac.compare_digest(expected, sig):
            raise NotFoundError("no visit matches this link; use the link from our mail")
        return r

    def _when(self, r: Reservation) -> str:
        s = self._settings
        return f"{format_span(r.starts_at, r.ends_at, s.zone)} ({s.timezone})"

    def _reminder_mail(self, session: Session, r: Reservation, now: int) -> None:
        url = status_url(self._settings, r.id, r.access_token)
        queue_mail(
            session,
            r.email,
            f"Reminder: {r.room.name}, {format_span(r.starts_at, r.ends_at, self._settings.zone)}",
            f"Dear {r.citizen_name},\n\na reminder of your booking of {r.room.name} "
            f"({r.facility.name}) for {self._when(r)}.\n\n"
            "Your PIN is in the mail we sent when the booking was approved, and on your "
            f"booking page (where you can also cancel it):\n{url}\n",
            now,
            private=(url,),
        )

    def _survey_mail(self, session: Session, r: Reservation, now: int) -> None:
        queue_mail(
            session,
            r.email,
            f"How was your visit to {r.facility.name}?",
            f"Dear {r.citizen_name},\n\nthank you for using {r.room.name} ({r.facility.name}) "
            f"on {self._when(r)}.\nHow satisfied were you, from 1 (not at all) to 5 (very)? "
            f"One click here:\n{survey_url(self._settings, r.id)}\n",
            now,
        )


def _survey_view(r: Reservation, score: int | None) -> SurveyView:
    return SurveyView(
        reservation_id=r.id,
        facility_name=r.facility.name,
        room_name=r.room.name,
        citizen_name=r.citizen_name,
        starts_at=r.starts_at,
        ends_at=r.ends_at,
        score=score,
    )
