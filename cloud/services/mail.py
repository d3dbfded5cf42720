"""The mail outbox. Real SMTP delivery comes later; the demo shows the outbox."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from cloud.db.models import MailMessage
from cloud.services.views import MailView


def queue_mail(session: Session, to: str, subject: str, body: str, now: int) -> None:
    """Add a mail to the outbox inside the caller's transaction."""
    session.add(MailMessage(to=to, subject=subject, body=body, created_at=now))


class MailOutbox:
    """Read the outbox."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def messages(self, limit: int = 100) -> list[MailView]:
        """Newest first."""
        with self._sessions() as session:
            rows = session.scalars(
                select(MailMessage).order_by(MailMessage.id.desc()).limit(limit)
            ).all()
            return [MailView(m.id, m.to, m.subject, m.body, m.created_at) for m in rows]
