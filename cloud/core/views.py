"""What the core services hand back: plain frozen values, safe after the session closed."""

from __future__ import annotations

from dataclasses import dataclass, field

from cloud.core.models import MailState, Role


@dataclass(frozen=True, slots=True)
class UserView:
    id: int
    username: str
    role: Role


@dataclass(frozen=True, slots=True)
class MailView:
    """An outbox row as staff read it: ``body`` has the recipient's private parts (a PIN,
    a booking link) blanked (see :mod:`cloud.core.mail`); kept out of ``repr`` all the same."""

    id: int
    to: str
    subject: str
    body: str = field(repr=False)
    created_at: int = 0
    state: MailState = MailState.QUEUED
    attempts: int = 0
    next_attempt_at: int = 0
    sent_at: int | None = None
    last_error: str | None = None
