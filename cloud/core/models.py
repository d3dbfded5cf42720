"""The core tables: users and their roles, their sign-in (sessions, second factor, API
tokens), city departments and who belongs to them, sites, and the mail outbox. Times are
UTC epoch seconds (``BigInteger``)."""

from __future__ import annotations

from enum import StrEnum

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column

from cloud.db.base import Base, string_enum


class Role(StrEnum):
    OPS = "ops"
    MANAGER = "manager"
    CLINIC = "clinic"  # clinic staff: queues, check-in at the desk, imports, figures
    TECHNICIAN = "technician"  # fleet: reads everything, sends commands but no unlock

    @property
    def needs_second_factor(self) -> bool:
        """Whether logging in takes a one-time code after the password: the roles that
        can open doors (ops' remote unlock), command the locks' gateways (technicians) or
        see patients (clinic staff). A facility manager sees bookings of one department."""
        return self is not Role.MANAGER


class PersonalDataAction(StrEnum):
    RETENTION = "retention"  # the periodic pass deleted or anonymised what is due
    ERASURE = "erasure"  # a person asked for their data to be deleted
    EXPORT = "export"  # a person asked for a copy of their data


class MailState(StrEnum):
    QUEUED = "queued"
    SENT = "sent"
    FAILED = "failed"


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(256))
    role: Mapped[Role] = mapped_column(string_enum(Role, "role"))
    created_at: Mapped[int] = mapped_column(BigInteger)
    # the TOTP secret, encrypted (cloud/core/second_factor.py); it counts once the user
    # typed a first code from it (``totp_enabled_at``); a code's time step works once
    totp_secret: Mapped[str | None] = mapped_column(String(200))
    totp_enabled_at: Mapped[int | None] = mapped_column(BigInteger)
    totp_last_step: Mapped[int | None] = mapped_column(BigInteger)


class RecoveryCode(Base):
    """A one-time code that stands in for the authenticator app (ten per enrolment),
    kept as a keyed hash; ``used_at`` once spent."""

    __tablename__ = "recovery_codes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    code_hash: Mapped[str] = mapped_column(String(64))
    used_at: Mapped[int | None] = mapped_column(BigInteger)


class ApiToken(Base):
    """A user's token for the HTTP API (in Basic auth's password slot), kept as its
    SHA-256; the way onto the API for roles whose login needs a second factor."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    label: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[int] = mapped_column(BigInteger)
    last_used_at: Mapped[int | None] = mapped_column(BigInteger)


class WebSession(Base):
    """A dashboard session, kept by the SHA-256 of the cookie's random id so that logging
    out ends it on the server. ``pending``: the password was right and the second factor
    (or its enrolment) is still to come; such a session reaches nothing else."""

    __tablename__ = "web_sessions"

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    pending: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[int] = mapped_column(BigInteger)
    expires_at: Mapped[int] = mapped_column(BigInteger)


class MailMessage(Base):
    """The mail outbox: a row leaves ``queued`` only when the SMTP server accepted it
    (``sent``) or refused it for good (``failed``, with the error); see
    ``cloud.core.mail``. Without an SMTP host (the demo) rows stay queued."""

    __tablename__ = "mail_outbox"
    __table_args__ = (Index("ix_mail_outbox_state_next_attempt_at", "state", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    to: Mapped[str] = mapped_column(String(320))
    subject: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    # the body with what is the recipient's alone (a PIN, a booking link) blanked: what
    # staff are shown, and what is kept of the body once it is sent; null: nothing to hide
    redacted_body: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[int] = mapped_column(BigInteger)
    state: Mapped[MailState] = mapped_column(
        string_enum(MailState, "mail_state"), server_default=MailState.QUEUED.value
    )
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    next_attempt_at: Mapped[int] = mapped_column(BigInteger, server_default="0")
    # a worker sending it holds it until then; after a crash another worker takes it over
    claimed_until: Mapped[int | None] = mapped_column(BigInteger)
    sent_at: Mapped[int | None] = mapped_column(BigInteger)
    last_error: Mapped[str | None] = mapped_column(String(500))
    bulk_mailing_id: Mapped[int | None] = mapped_column(ForeignKey("bulk_mailings.id"))


class CityDepartment(Base):
    """A city department that owns sites (education board, health department, …)."""

    __tablename__ = "departments"

    slug: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[int] = mapped_column(BigInteger)


class DepartmentMember(Base):
    """A user acting for a department: a facility manager sees only its sites."""

    __tablename__ = "department_members"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True)
    department: Mapped[str] = mapped_column(ForeignKey("departments.slug"), primary_key=True)


class Site(Base):
    """A site of the fleet (a gym, a clinic), its owning department and its default
    rollout ring (0: the first few sites, 1: more, 2: the rest). A site is created when
    one of its gateways first reports, with no department until ops assign one."""

    __tablename__ = "sites"

    slug: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    department: Mapped[str | None] = mapped_column(ForeignKey("departments.slug"), index=True)
    ring: Mapped[int] = mapped_column(Integer, server_default="2")
    created_at: Mapped[int] = mapped_column(BigInteger)


class PersonalDataLog(Base):
    """Who deleted, anonymised or exported personal data, when, and how many rows
    (:mod:`cloud.core.personal_data`). ``subject`` names the person only masked
    (``t***@example.jp``, ``****-****-****-0042``): the log outlives their data."""

    __tablename__ = "personal_data_log"
    __table_args__ = (Index("ix_personal_data_log_at", "at"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    at: Mapped[int] = mapped_column(BigInteger)
    actor: Mapped[str] = mapped_column(String(100))  # "retention", "ops:<username>", …
    action: Mapped[PersonalDataAction] = mapped_column(
        string_enum(PersonalDataAction, "personal_data_action")
    )
    domain: Mapped[str] = mapped_column(String(16))  # "gym", "clinic"
    site: Mapped[str | None] = mapped_column(String(40))
    subject: Mapped[str | None] = mapped_column(String(100))
    rows: Mapped[int] = mapped_column(Integer)
    detail: Mapped[dict[str, int]] = mapped_column(JSON)


class MailToForget(Base):
    """A queued mail to someone whose data was deleted (the cancellation of their
    bookings): it goes out, then the retention pass deletes it."""

    __tablename__ = "mail_to_forget"

    mail_id: Mapped[int] = mapped_column(ForeignKey("mail_outbox.id"), primary_key=True)
