"""Telling a patient their turn is near, and that they are called.

*When* is decided here (:func:`notify_patients`, run inside the transaction of each queue
change): once ``notify_when_left`` or fewer patients are before a waiting ticket, and when
a ticket is called for the first time, with its room. Each at most once per ticket: the
ticket row's ``left_notified_at`` / ``called_notified_at`` is set in the same transaction
that queues the message, so a retry or a second worker sends nothing more.

*How* is a :class:`PatientNotifier`: :class:`EmailNotifier` puts a mail in the outbox
(:mod:`cloud.core.mail`); an app push can implement the same method later. A patient
the notifier cannot reach (no email) is skipped, and the ticket is marked all the same.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from sqlalchemy.orm import Session

from cloud.clinic.day import SiteDay
from cloud.clinic.models import Patient
from cloud.core.mail import queue_mail

log = logging.getLogger(__name__)


class NoticeKind(StrEnum):
    LEFT = "left"  # ``left`` patients are before the ticket
    CALLED = "called"  # the ticket is called to ``room``


@dataclass(frozen=True, slots=True)
class PatientNotice:
    """One message for one patient; never carries the card number."""

    kind: NoticeKind
    patient_id: int
    email: str | None
    clinic_name: str
    department_name: str
    number: str
    left: int
    room: str | None
    at: int


class PatientNotifier(Protocol):
    """Delivers notices to patients (email today; an app push later)."""

    def deliver(self, session: Session, notice: PatientNotice) -> bool:
        """Queue ``notice`` inside the caller's transaction (so it leaves once, with the
        change that caused it); False when this notifier cannot reach the patient."""
        ...


class EmailNotifier:
    """Notices as mails in the outbox; patients without an email address are skipped."""

    def deliver(self, session: Session, notice: PatientNotice) -> bool:
        """Queue the mail; False without an address."""
        if not notice.email:
            return False
        if notice.kind is NoticeKind.CALLED:
            subject = f"{notice.clinic_name}: {notice.number}, please come to room {notice.room}"
            body = (
                f"Your number {notice.number} ({notice.department_name}) is called now.\n"
                f"Please come to room {notice.room}.\n"
            )
        else:
            before = (
                "you are next"
                if notice.left == 0
                else f"{notice.left} patient{'s' if notice.left != 1 else ''} before you"
            )
            subject = f"{notice.clinic_name}: {notice.number}, {before}"
            body = (
                f"Your number {notice.number} ({notice.department_name}): {before}.\n"
                "Please come back to the waiting room; the display will call your number.\n"
            )
        queue_mail(session, notice.email, subject, body, notice.at)
        return True


def notify_patients(day: SiteDay, notifier: PatientNotifier, now: float) -> int:
    """Send the notices ``day``'s changes so far call for; returns how many were sent."""
    sent = 0
    for number, room in day.live_calls:
        row = day.rows[number]
        if row.called_notified_at is not None:
            continue
        row.called_notified_at = int(now)
        sent += _deliver(notifier, day, number, NoticeKind.CALLED, left=0, room=room, now=now)
    day.live_calls.clear()
    for department in day.clinic.departments:
        queue = day.queues.get(department.slug)
        if queue is None:
            continue
        for left, ticket in enumerate(queue.waiting_order(now)[: department.notify_when_left + 1]):
            row = day.rows[ticket.number]
            if row.left_notified_at is not None:
                continue
            row.left_notified_at = int(now)
            sent += _deliver(
                notifier, day, ticket.number, NoticeKind.LEFT, left=left, room=None, now=now
            )
    return sent


def _deliver(
    notifier: PatientNotifier,
    day: SiteDay,
    number: str,
    kind: NoticeKind,
    *,
    left: int,
    room: str | None,
    now: float,
) -> int:
    session, row = day.session, day.rows[number]
    if row.patient_id is None:
        return 0
    patient = session.get(Patient, row.patient_id)
    if patient is None:
        return 0
    notice = PatientNotice(
        kind=kind,
        patient_id=patient.id,
        email=patient.email,
        clinic_name=day.clinic.name,
        department_name=next(
            (d.name for d in day.clinic.departments if d.slug == row.department), row.department
        ),
        number=number,
        left=left,
        room=room,
        at=int(now),
    )
    if not notifier.deliver(session, notice):
        return 0
    log.info("%s notice for %s at %s", kind.value, number, day.clinic.site)
    return 1
