"""A citizen's personal data in bookings: anonymised when its time is up, deleted when the
citizen asks, handed over when the citizen asks (APPI; :mod:`cloud.core.personal_data`).

**What is personal** in a booking: the name, the email, the purpose and the cancel reason
(free text), the status link's token and the client's idempotency key (both lead back to
the booking's page, which shows the name). :func:`_anonymise` replaces all of them; the
row keeps its facility, room, times, group size, status, fee and payment, and the
no-show and score rows keep pointing at it, so every figure of :mod:`cloud.gym.figures`
stays. The email becomes ``anonymised-<random>@anonymised.invalid``, one per person per
facility and month: the month's distinct-users figure counts emails, and stays the same.

**When.** ``booking_retention_months`` (13) after the booking's end, a whole local month
of bookings at once (that keeps one person one pseudonym within the month): the month is
due once its last day plus one (a booking past midnight) lies that many months back, so a
booking goes 13 to 14 months after its end. Mail sent that long ago is deleted too.

**On request** (ops, :meth:`BookingRetention.erase`): the citizen's bookings that have not
ended are cancelled first through the normal path (PIN revoked and the site's snapshot
republished, so the locks forget it; a paid fee refunded; the cancellation mail sent),
then every booking of the address is anonymised and the mail to it deleted (the
cancellation mails once they went out).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import date, time, timedelta

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session, selectinload, sessionmaker

from cloud.core.models import PersonalDataAction
from cloud.core.personal_data import (
    delete_forgotten_mail,
    delete_mail_older_than,
    forget_mail,
    last_mail_id,
    log_personal_data,
    mask_email,
)
from cloud.core.spreadsheet import csv_document
from cloud.db.engine import scrub_deleted
from cloud.errors import ConflictError, InvalidRequestError, NotFoundError
from cloud.gym.booking_common import BLOCKING
from cloud.gym.cancellations import CancellationService
from cloud.gym.models import Reservation
from cloud.gym.notifications import REMINDER, SURVEY, claim_notice
from cloud.localtime import epoch_from_local, format_local, local
from cloud.settings import CloudSettings
from protocol.clock import Clock

DOMAIN = "gym"
ANONYMISED_NAME = "(匿名化済み / anonymised)"
ANONYMISED_DOMAIN = "anonymised.invalid"  # RFC 2606: never delivered
ERASURE_REASON = "ご本人の削除のご依頼により / at your request to delete your personal data"
MAX_EMAIL = 320


@dataclass(frozen=True, slots=True)
class BookingRecord:
    """One booking as the citizen gets it in an export (no PIN: a PIN is a key, not data
    about them, and an ended one opens nothing)."""

    reservation_id: str
    facility: str
    room: str
    starts_local: str
    ends_local: str
    status: str
    citizen_name: str
    email: str
    group_size: int
    purpose: str
    booked_local: str
    cancel_reason: str | None
    fee_yen: int
    payment_state: str


EXPORT_COLUMNS = tuple(BookingRecord.__dataclass_fields__)


@dataclass(frozen=True, slots=True)
class ErasurePreview:
    """What an erasure of ``email`` would do now: the confirmation step shows it."""

    email: str
    bookings: int
    to_cancel: int


@dataclass(frozen=True, slots=True)
class BookingErasure:
    cancelled: int
    anonymised: int
    mails_deleted: int


def normalised_email(email: str) -> str:
    """The address as bookings are matched (any case), or a clear error."""
    address = email.strip().lower()
    if not address or "@" not in address or len(address) > MAX_EMAIL:
        raise InvalidRequestError(
            f"{email!r} is not an email address; give the address the citizen booked with"
        )
    return address


def _months_back(day: date, months: int) -> date:
    index = day.year * 12 + day.month - 1 - months
    year, month = divmod(index, 12)
    first = date(year, month + 1, 1)
    last = ((first + timedelta(days=32)).replace(day=1) - timedelta(days=1)).day
    return first.replace(day=min(day.day, last))


def anonymise_before(now: int, settings: CloudSettings) -> int:
    """Epoch seconds: bookings starting before it are due (module docstring)."""
    zone = settings.zone
    reach = _months_back(local(now, zone).date(), settings.booking_retention_months)
    month = (reach - timedelta(days=1)).replace(day=1)
    return epoch_from_local(month, time(0, 0), zone)


def _anonymise(rows: Iterable[Reservation], now: int, settings: CloudSettings) -> int:
    """Anonymise ``rows``, one pseudonym per person per facility and local month."""
    pseudonyms: dict[tuple[int, str, str], str] = {}
    count = 0
    for r in rows:
        month = f"{local(r.starts_at, settings.zone):%Y-%m}"
        key = (r.facility_id, month, r.email.strip().lower())
        if key not in pseudonyms:
            pseudonyms[key] = f"anonymised-{secrets.token_hex(8)}@{ANONYMISED_DOMAIN}"
        r.email = pseudonyms[key]
        r.citizen_name = ANONYMISED_NAME
        r.purpose = ""
        r.cancel_reason = None
        r.access_token = secrets.token_urlsafe(32)  # the old status link shows nothing
        r.idempotency_key = None
        r.anonymised_at = now
        count += 1
    return count


def _of_address(address: str) -> tuple[ColumnElement[bool], ...]:
    return (func.lower(Reservation.email) == address, Reservation.anonymised_at.is_(None))


class BookingRetention:
    """The gym's :class:`~cloud.core.personal_data.RetentionPolicy`, and erasure and
    export on a citizen's request."""

    domain = DOMAIN

    def __init__(
        self,
        sessions: sessionmaker[Session],
        clock: Clock,
        settings: CloudSettings,
        cancellations: CancellationService,
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        self._settings = settings
        self._cancellations = cancellations

    def run_due(self, now: int) -> dict[str, int]:
        """Anonymise the bookings whose month is due; delete mail as old, and the mail of
        erased citizens that has gone out since."""
        before = anonymise_before(now, self._settings)
        with self._sessions.begin() as session:
            rows = session.scalars(
                select(Reservation)
                .where(Reservation.anonymised_at.is_(None), Reservation.starts_at < before)
                .order_by(Reservation.starts_at)
                .with_for_update()  # a second worker waits, then finds them done
            ).all()
            anonymised = _anonymise(rows, now, self._settings)
            mails = delete_mail_older_than(session, before) + delete_forgotten_mail(session)
        return {"bookings_anonymised": anonymised, "mails_deleted": mails}

    def preview(self, email: str) -> ErasurePreview:
        """How many bookings an erasure of ``email`` anonymises, and how many of them it
        cancels first; NotFoundError when there are none."""
        address = normalised_email(email)
        now = int(self._clock.now())
        with self._sessions() as session:
            rows = session.execute(
                select(Reservation.status, Reservation.ends_at).where(*_of_address(address))
            ).all()
        if not rows:
            raise NotFoundError(
                "no booking holds this email address (or its bookings are already "
                "anonymised); check the spelling with the citizen"
            )
        to_cancel = sum(status in BLOCKING and ends_at > now for status, ends_at in rows)
        return ErasurePreview(address, len(rows), to_cancel)

    def erase(self, email: str, actor: str, expected_bookings: int) -> BookingErasure:
        """Cancel the address's bookings that have not ended, then anonymise all of them
        and forget the mail to it; logged. ``expected_bookings`` is what the confirmation
        showed: a ConflictError when that changed, so nobody erases what they did not see.
        ``actor`` is the ops user's name."""
        seen = self.preview(email)
        if seen.bookings != expected_bookings:
            raise ConflictError(
                f"this address now has {seen.bookings} bookings, not the {expected_bookings} "
                "you confirmed; look at them again before you delete"
            )
        now = int(self._clock.now())
        cancelled = 0
        with self._sessions() as session:
            before_cancelling = last_mail_id(session)
            open_ids = session.scalars(
                select(Reservation.id).where(
                    *_of_address(seen.email),
                    Reservation.status.in_(BLOCKING),
                    Reservation.ends_at > now,
                )
            ).all()
        for reservation_id in open_ids:
            try:
                self._cancellations.by_manager(reservation_id, actor, ERASURE_REASON)
            except ConflictError:
                continue  # it ended or was cancelled meanwhile: anonymised all the same
            cancelled += 1
        with self._sessions.begin() as session:
            rows = session.scalars(
                select(Reservation).where(*_of_address(seen.email)).with_for_update()
            ).all()
            for r in rows:  # no reminder or survey to an address that is gone
                claim_notice(session, r.id, REMINDER, now)
                claim_notice(session, r.id, SURVEY, now)
            anonymised = _anonymise(rows, now, self._settings)
            mails = forget_mail(session, seen.email, send_after=before_cancelling)
            result = BookingErasure(cancelled, anonymised, mails)
            log_personal_data(
                session,
                now=now,
                actor=f"ops:{actor}",
                action=PersonalDataAction.ERASURE,
                domain=DOMAIN,
                subject=mask_email(seen.email),
                counts=asdict(result),
            )
        scrub_deleted(self._sessions)
        return result

    def export(self, email: str, actor: str) -> list[BookingRecord]:
        """Every booking of ``email`` (any case) that still carries it, oldest first;
        logged (an empty export too: someone looked)."""
        address = normalised_email(email)
        zone, now = self._settings.zone, int(self._clock.now())
        with self._sessions.begin() as session:
            rows = session.scalars(
                select(Reservation)
                .where(*_of_address(address))
                .options(selectinload(Reservation.facility), selectinload(Reservation.room))
                .order_by(Reservation.starts_at)
            ).all()
            records = [
                BookingRecord(
                    reservation_id=r.id,
                    facility=r.facility.name,
                    room=r.room.name,
                    starts_local=format_local(r.starts_at, zone),
                    ends_local=format_local(r.ends_at, zone),
                    status=r.status.value,
                    citizen_name=r.citizen_name,
                    email=r.email,
                    group_size=r.group_size,
                    purpose=r.purpose,
                    booked_local=format_local(r.created_at, zone),
                    cancel_reason=r.cancel_reason,
                    fee_yen=r.fee_yen,
                    payment_state=r.payment_state.value,
                )
                for r in rows
            ]
            log_personal_data(
                session,
                now=now,
                actor=f"ops:{actor}",
                action=PersonalDataAction.EXPORT,
                domain=DOMAIN,
                subject=mask_email(address),
                counts={"bookings": len(records)},
            )
        return records


def bookings_csv(records: Sequence[BookingRecord]) -> str:
    """An export as CSV (:mod:`cloud.core.spreadsheet` quotes what could be a formula)."""
    return csv_document(EXPORT_COLUMNS, ([getattr(r, c) for c in EXPORT_COLUMNS] for r in records))
