"""Personal data under Japan's APPI: how long the cloud keeps it, how a person has it
deleted or gets a copy, and the log that shows ops each of these.

- **Retention.** Each domain owns a :class:`RetentionPolicy` (the gym's bookings:
  :mod:`cloud.gym.retention`; the clinic's check-ins: :mod:`cloud.clinic.retention`);
  :class:`RetentionJobs` runs them as one named background task (``retention``, every
  ``retention_poll_s``) and logs each run's counts, zero included, so ops see it ran.
- **Erasure and export** on request are the domains' services too; each writes one
  :class:`~cloud.core.models.PersonalDataLog` row with :func:`log_personal_data`: who,
  when, what and how many rows. The person is named there only masked (:func:`mask_email`,
  :func:`mask_card`): the log outlives their data.
- **Mail** to the person is part of their data: :func:`forget_mail` deletes it, sent or
  still queued (a PIN for a booking that is gone need not go out), except the
  cancellations the erasure itself wrote: those go out, and the retention pass deletes
  them after (:func:`delete_forgotten_mail`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session, sessionmaker

from cloud.core.models import (
    MailMessage,
    MailState,
    MailToForget,
    PersonalDataAction,
    PersonalDataLog,
)
from cloud.db.engine import scrub_deleted
from cloud.periodic import PeriodicPass
from cloud.settings import CloudSettings
from protocol.clock import Clock

log = logging.getLogger(__name__)

RETENTION_ACTOR = "retention"
LOG_PAGE = 100


def mask_email(address: str) -> str:
    """``tanaka@example.jp`` as ``t***@example.jp``: enough to tell requests apart."""
    local, _, domain = address.strip().partition("@")
    return f"{local[:1]}***@{domain}" if domain else "***"


def mask_card(card_digits: str) -> str:
    """A card number with only its last four digits."""
    return f"****-****-****-{card_digits[-4:]}"


def log_personal_data(
    session: Session,
    *,
    now: int,
    actor: str,
    action: PersonalDataAction,
    domain: str,
    counts: Mapping[str, int],
    site: str | None = None,
    subject: str | None = None,
) -> None:
    """Add one log row inside the caller's transaction (``rows``: the counts summed)."""
    session.add(
        PersonalDataLog(
            at=now,
            actor=actor,
            action=action,
            domain=domain,
            site=site,
            subject=subject,
            rows=sum(counts.values()),
            detail=dict(counts),
        )
    )


def last_mail_id(session: Session) -> int:
    """The newest mail's id (0: none): what :func:`forget_mail` keeps queued after it."""
    return int(session.scalar(select(func.max(MailMessage.id))) or 0)


def forget_mail(session: Session, address: str, *, send_after: int | None = None) -> int:
    """Delete the mail to ``address`` (any case), sent or not; with ``send_after`` (a
    :func:`last_mail_id`), the mail queued since then (the cancellations an erasure just
    wrote) goes out first and is deleted by the retention pass after. Returns how many
    were deleted now."""
    to = func.lower(MailMessage.to) == address.strip().lower()
    ids = session.execute(select(MailMessage.id, MailMessage.state).where(to)).all()
    later = [
        mail_id
        for mail_id, state in ids
        if send_after is not None and mail_id > send_after and state == MailState.QUEUED
    ]
    marked = set(
        session.scalars(select(MailToForget.mail_id).where(MailToForget.mail_id.in_(later)))
    )
    session.add_all(MailToForget(mail_id=mail_id) for mail_id in later if mail_id not in marked)
    return _delete_mail(session, [mail_id for mail_id, _ in ids if mail_id not in later])


def delete_forgotten_mail(session: Session) -> int:
    """Delete the marked mail that has gone out (or failed for good)."""
    done = session.scalars(
        select(MailToForget.mail_id)
        .join(MailMessage, MailMessage.id == MailToForget.mail_id)
        .where(MailMessage.state != MailState.QUEUED)
    ).all()
    return _delete_mail(session, done)


def delete_mail_older_than(session: Session, before: int) -> int:
    """Delete the mail written before ``before``, whatever became of it: every mail
    names its person, and one still queued that long (no SMTP host) will not matter."""
    old = session.scalars(select(MailMessage.id).where(MailMessage.created_at < before)).all()
    return _delete_mail(session, old)


def _delete_mail(session: Session, ids: Sequence[int]) -> int:
    if not ids:
        return 0
    session.execute(delete(MailToForget).where(MailToForget.mail_id.in_(ids)))
    session.execute(delete(MailMessage).where(MailMessage.id.in_(ids)))
    return len(ids)


@dataclass(frozen=True, slots=True)
class LogEntry:
    at: int
    actor: str
    action: PersonalDataAction
    domain: str
    site: str | None
    subject: str | None
    rows: int
    detail: Mapping[str, int]


class PersonalDataLogService:
    """Read the log, newest first."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def recent(
        self, *, sites: frozenset[str] | None = None, limit: int = LOG_PAGE
    ) -> list[LogEntry]:
        """The newest ``limit`` entries; with ``sites``, only the entries of those sites
        (a clinic's staff see their clinics' erasures and exports, not the city's)."""
        query = select(PersonalDataLog).order_by(PersonalDataLog.id.desc()).limit(limit)
        if sites is not None:
            query = query.where(PersonalDataLog.site.in_(sites))
        with self._sessions() as session:
            return [
                LogEntry(
                    e.at, e.actor, e.action, e.domain, e.site, e.subject, e.rows, dict(e.detail)
                )
                for e in session.scalars(query)
            ]


class RetentionPolicy(Protocol):
    """What a domain deletes or anonymises when its period has passed."""

    domain: str

    def run_due(self, now: int) -> Mapping[str, int]:
        """Do it (blocking, idempotent); the rows affected, by kind. Logs nothing."""
        ...


class RetentionJobs:
    """Start and stop the ``retention`` pass; tests call :meth:`run_due`."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        clock: Clock,
        settings: CloudSettings,
        policies: Sequence[RetentionPolicy],
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        self._settings = settings
        self._policies = policies
        self._pass = PeriodicPass("retention", self.run_due, settings.retention_poll_s)

    def run_due(self) -> dict[str, dict[str, int]]:
        """One pass: every domain's policy, each logged (blocking)."""
        runs: dict[str, dict[str, int]] = {}
        for policy in self._policies:
            now = int(self._clock.now())
            counts = dict(policy.run_due(now))
            with self._sessions.begin() as session:
                log_personal_data(
                    session,
                    now=now,
                    actor=RETENTION_ACTOR,
                    action=PersonalDataAction.RETENTION,
                    domain=policy.domain,
                    counts=counts,
                )
            log.info("retention %s: %s", policy.domain, counts)
            runs[policy.domain] = counts
        scrub_deleted(self._sessions)
        return runs

    async def start(self) -> None:
        """Start the pass every ``retention_poll_s`` unless retention is off."""
        if self._settings.retention_enabled:
            await self._pass.start()

    async def stop(self) -> None:
        """Cancel the pass and wait for it."""
        await self._pass.stop()
