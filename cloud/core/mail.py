"""The mail outbox and its delivery over SMTP.

Every mail is first a ``mail_outbox`` row, queued inside the transaction that decided to
send it (an approval, a reminder), so a mail is never lost with a crash. A
:class:`MailDelivery` sends due rows and marks each one:

- ``sent`` only after the SMTP server accepted it;
- still ``queued``, with the error and a later ``next_attempt_at`` (capped exponential
  backoff), when the server was unreachable, timed out, or answered 4xx, or when our own
  SMTP settings were refused (sender, login, STARTTLS): a fixed setting sends the mail;
- ``failed``, with the error, only when the server refused that mail for good (5xx to its
  recipient or its content). Ops can queue it again from ``/mail``.

Several workers may run deliveries: each claims a row (``claimed_until``) before sending.
A worker that dies after the server accepted a mail but before marking it sent leaves
the claim to expire, and the mail goes out again: delivery is at least once.

Without ``smtp_host`` (the demo) nothing is delivered; the outbox is the ``/mail`` page.
No log line carries a body (the approval mail holds a PIN).

What is the recipient's alone (a PIN, the link to a booking page that shows it) is queued
as ``private``: staff read the mail with those parts blanked (:class:`MailOutbox`), and
once the server accepted the mail only that blanked copy is kept.
"""

from __future__ import annotations

import logging
import random
import smtplib
import ssl
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Protocol

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from cloud.core.models import MailMessage, MailState
from cloud.core.views import MailView
from cloud.errors import CloudError, ConflictError, NotFoundError
from cloud.settings import CloudSettings
from protocol.clock import Clock

log = logging.getLogger(__name__)

BATCH = 50
MAX_ERROR = 500
NOT_SHOWN = "[宛先にのみ送信・表示しません / sent to the recipient only, not shown]"


def redact(body: str, private: Collection[str]) -> str:
    """``body`` with each of ``private`` replaced by :data:`NOT_SHOWN`."""
    for secret in sorted(private, key=len, reverse=True):  # a link before a part of it
        body = body.replace(secret, NOT_SHOWN)
    return body


def queue_mail(
    session: Session,
    to: str,
    subject: str,
    body: str,
    now: int,
    *,
    bulk_mailing_id: int | None = None,
    private: Collection[str] = (),
) -> None:
    """Add a mail to the outbox inside the caller's transaction (due at once); the
    strings in ``private`` are never shown to staff nor kept once it is sent."""
    private = [p for p in private if p]
    session.add(
        MailMessage(
            to=to,
            subject=subject[:200],
            body=body,
            redacted_body=redact(body, private) if private else None,
            created_at=now,
            state=MailState.QUEUED,
            attempts=0,
            next_attempt_at=now,
            bulk_mailing_id=bulk_mailing_id,
        )
    )


class MailError(CloudError):
    """A mail could not be handed to the SMTP server."""

    def __init__(self, message: str, *, permanent: bool) -> None:
        super().__init__(message)
        self.permanent = permanent


class MailTransport(Protocol):
    """Hands messages to a mail server; one connection per batch."""

    def open(self) -> MailConnection:
        """Connect (and log in); raises :class:`MailError`."""
        ...


class MailConnection(Protocol):
    def send(self, message: EmailMessage) -> None:
        """Send one message; raises :class:`MailError`."""
        ...

    def close(self) -> None: ...


def _text(reply: bytes | str) -> str:
    return reply.decode(errors="replace") if isinstance(reply, bytes) else reply


def _smtp_error(exc: Exception) -> MailError:
    """Translate an smtplib/socket error; only a refusal of this one mail is permanent."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in exc.recipients.values()]
        text = "; ".join(f"{code} {_text(msg)}" for code, msg in exc.recipients.values())
        return MailError(f"recipient refused: {text}", permanent=all(c >= 500 for c in codes))
    if isinstance(exc, smtplib.SMTPDataError):
        message = _text(exc.smtp_error)
        return MailError(
            f"message refused: {exc.smtp_code} {message}", permanent=exc.smtp_code >= 500
        )
    if isinstance(exc, smtplib.SMTPResponseException):
        # sender refused, login failed, …: our settings, not this mail; retry after a fix
        message = _text(exc.smtp_error)
        return MailError(f"SMTP server said {exc.smtp_code} {message}", permanent=False)
    return MailError(f"SMTP server unreachable: {type(exc).__name__}: {exc}", permanent=False)


class _SmtpConnection:
    def __init__(self, smtp: smtplib.SMTP) -> None:
        self._smtp = smtp

    def send(self, message: EmailMessage) -> None:
        try:
            refused = self._smtp.send_message(message)
        except (smtplib.SMTPException, OSError) as exc:
            raise _smtp_error(exc) from exc
        if refused:  # one recipient per mail: refused here means refused as a whole
            raise _smtp_error(smtplib.SMTPRecipientsRefused(refused))

    def close(self) -> None:
        try:
            self._smtp.quit()
        except (smtplib.SMTPException, OSError):
            self._smtp.close()


class SmtpTransport:
    """Standard-library SMTP (blocking: call it from a worker thread)."""

    def __init__(self, settings: CloudSettings) -> None:
        self._settings = settings

    def open(self) -> MailConnection:
        s = self._settings
        assert s.smtp_host is not None
        try:
            smtp = smtplib.SMTP(s.smtp_host, s.smtp_port, timeout=s.smtp_timeout_s)
        except (smtplib.SMTPException, OSError) as exc:
            raise _smtp_error(exc) from exc
        try:
            if s.smtp_starttls:
                smtp.starttls(context=ssl.create_default_context())
            if s.smtp_username is not None and s.smtp_password is not None:
                smtp.login(s.smtp_username, s.smtp_password)
        except (smtplib.SMTPException, OSError) as exc:
            smtp.close()
            raise _smtp_error(exc) from exc
        return _SmtpConnection(smtp)


@dataclass(frozen=True, slots=True)
class DeliveryRun:
    """What one delivery pass did."""

    sent: int = 0
    retrying: int = 0
    failed: int = 0


def _message(row: MailMessage, sender: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = row.to
    message["Subject"] = row.subject
    message["Date"] = format_datetime(datetime.fromtimestamp(row.created_at, UTC))
    # the same id on every attempt: a receiver can drop the duplicate of an at-least-once send
    message["Message-ID"] = make_msgid(idstring=f"mail-{row.id}-{row.created_at}", domain="denen")
    message.set_content(row.body)
    return message


class MailDelivery:
    """Send due outbox rows through a :class:`MailTransport`, with retries and backoff."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        clock: Clock,
        settings: CloudSettings,
        transport: MailTransport,
        rng: random.Random | None = None,
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        self._settings = settings
        self._transport = transport
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not a secret

    def backoff_s(self, attempts: int) -> int:
        """Delay before attempt ``attempts + 1``: capped exponential with equal jitter."""
        s = self._settings
        ceiling: int = min(s.mail_retry_cap_s, s.mail_retry_base_s * 2 ** min(attempts - 1, 20))
        return ceiling // 2 + self._rng.randint(0, ceiling - ceiling // 2)

    def deliver_due(self) -> DeliveryRun:
        """Send every due mail once (blocking: run it in a worker thread)."""
        now = int(self._clock.now())
        claimed = self._claim(now)
        if not claimed:
            return DeliveryRun()
        try:
            connection = self._transport.open()
        except MailError as exc:
            log.warning("mail delivery: %s; %d mails stay queued", exc, len(claimed))
            for mail_id in claimed:
                self._record(mail_id, exc, now)
            return DeliveryRun(retrying=len(claimed))
        sent = retrying = failed = 0
        try:
            for mail_id in claimed:
                with self._sessions() as session:
                    row = session.get(MailMessage, mail_id)
                    assert row is not None
                    message = _message(row, self._settings.smtp_from)
                try:
                    connection.send(message)
                except MailError as exc:
                    self._record(mail_id, exc, int(self._clock.now()))
                    if exc.permanent:
                        failed += 1
                    else:
                        retrying += 1
                    continue
                self._mark_sent(mail_id, int(self._clock.now()))
                sent += 1
        finally:
            connection.close()
        return DeliveryRun(sent=sent, retrying=retrying, failed=failed)

    def _claim(self, now: int) -> list[int]:
        lease = now + int(self._settings.smtp_timeout_s * 4) + 60
        with self._sessions.begin() as session:
            due = session.scalars(
                select(MailMessage.id)
                .where(
                    MailMessage.state == MailState.QUEUED,
                    MailMessage.next_attempt_at <= now,
                    or_(MailMessage.claimed_until.is_(None), MailMessage.claimed_until <= now),
                )
                .order_by(MailMessage.id)
                .limit(BATCH)
            ).all()
            claimed = []
            for mail_id in due:
                # the WHERE is checked again under the row lock: one worker wins each row
                result = session.execute(
                    update(MailMessage)
                    .where(
                        MailMessage.id == mail_id,
                        MailMessage.state == MailState.QUEUED,
                        or_(
                            MailMessage.claimed_until.is_(None),
                            MailMessage.claimed_until <= now,
                        ),
                    )
                    .values(claimed_until=lease)
                )
                if result.rowcount == 1:  # type: ignore[attr-defined]
                    claimed.append(mail_id)
            return claimed

    def _mark_sent(self, mail_id: int, now: int) -> None:
        with self._sessions.begin() as session:
            row = session.get(MailMessage, mail_id)
            assert row is not None
            row.state, row.sent_at, row.claimed_until = MailState.SENT, now, None
            if row.redacted_body is not None:
                row.body = row.redacted_body  # the PIN left with the mail; none is kept
            row.attempts += 1
            row.last_error = None
        log.info("mail %d sent", mail_id)

    def _record(self, mail_id: int, exc: MailError, now: int) -> None:
        with self._sessions.begin() as session:
            row = session.get(MailMessage, mail_id)
            assert row is not None
            row.attempts += 1
            row.last_error = str(exc)[:MAX_ERROR]
            row.claimed_until = None
            if exc.permanent:
                row.state = MailState.FAILED
                log.warning("mail %d failed for good: %s", mail_id, row.last_error)
            else:
                row.next_attempt_at = now + self.backoff_s(row.attempts)
                log.info("mail %d stays queued (attempt %d): %s", mail_id, row.attempts, exc)


class MailOutbox:
    """Read the outbox (as staff do: private parts blanked); queue a failed mail again."""

    def __init__(self, sessions: sessionmaker[Session], clock: Clock) -> None:
        self._sessions = sessions
        self._clock = clock

    def messages(self, limit: int = 100) -> list[MailView]:
        """Newest first."""
        with self._sessions() as session:
            rows = session.scalars(
                select(MailMessage).order_by(MailMessage.id.desc()).limit(limit)
            ).all()
            return [_view(m) for m in rows]

    def get(self, mail_id: int) -> MailView:
        """One mail."""
        with self._sessions() as session:
            row = session.get(MailMessage, mail_id)
            if row is None:
                raise NotFoundError(f"no mail {mail_id}")
            return _view(row)

    def retry(self, mail_id: int) -> MailView:
        """Queue a failed mail again (after the address was fixed at the receiving end)."""
        now = int(self._clock.now())
        with self._sessions.begin() as session:
            row = session.get(MailMessage, mail_id, with_for_update=True)
            if row is None:
                raise NotFoundError(f"no mail {mail_id}")
            if row.state is not MailState.FAILED:
                raise ConflictError(
                    f"mail {mail_id} is {row.state.value}; only a failed one is retried"
                )
            row.state, row.next_attempt_at, row.claimed_until = MailState.QUEUED, now, None
            return _view(row)


def _view(m: MailMessage) -> MailView:
    return MailView(
        id=m.id,
        to=m.to,
        subject=m.subject,
        body=m.body if m.redacted_body is None else m.redacted_body,
        created_at=m.created_at,
        state=m.state,
        attempts=m.attempts,
        next_attempt_at=m.next_attempt_at,
        sent_at=m.sent_at,
        last_error=m.last_error,
    )
