"""mail delivery, reminders, bulk mail, satisfaction scores

The outbox becomes a delivery queue: every existing row is ``queued`` and due at once
(it was waiting for SMTP delivery, which did not exist yet). New tables hold the
once-only marks of reminders and surveys, no-show flags, scores and bulk mailings.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_MAIL_STATE = sa.Enum(
    "queued",
    "sent",
    "failed",
    name="mail_state",
    native_enum=False,
    create_constraint=True,
    length=16,
)


def _reservation_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["reservation_id"],
        ["reservations.id"],
        name=op.f(f"fk_{table}_reservation_id_reservations"),
    )


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "bulk_mailings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("facility_id", sa.Integer(), nullable=False),
        sa.Column("from_day", sa.Date(), nullable=False),
        sa.Column("to_day", sa.Date(), nullable=False),
        sa.Column("subject", sa.String(length=200), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("sent_by", sa.String(length=100), nullable=False),
        sa.Column("sent_at", sa.BigInteger(), nullable=False),
        sa.Column("recipients", sa.Integer(), nullable=False),
        sa.Column("submit_key", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["facility_id"], ["facilities.id"], name=op.f("fk_bulk_mailings_facility_id_facilities")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bulk_mailings")),
        sa.UniqueConstraint("submit_key", name=op.f("uq_bulk_mailings_submit_key")),
    )
    op.create_index(
        "ix_bulk_mailings_facility_id_sent_at", "bulk_mailings", ["facility_id", "sent_at"]
    )
    op.create_table(
        "reservation_notices",
        sa.Column("reservation_id", sa.String(length=36), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        _reservation_fk("reservation_notices"),
        sa.PrimaryKeyConstraint("reservation_id", "kind", name=op.f("pk_reservation_notices")),
    )
    op.create_table(
        "no_shows",
        sa.Column("reservation_id", sa.String(length=36), nullable=False),
        sa.Column("flagged_at", sa.BigInteger(), nullable=False),
        _reservation_fk("no_shows"),
        sa.PrimaryKeyConstraint("reservation_id", name=op.f("pk_no_shows")),
    )
    op.create_table(
        "satisfaction_scores",
        sa.Column("reservation_id", sa.String(length=36), nullable=False),
        sa.Column("score", sa.Integer(), nullable=False),
        sa.Column("recorded_at", sa.BigInteger(), nullable=False),
        _reservation_fk("satisfaction_scores"),
        sa.PrimaryKeyConstraint("reservation_id", name=op.f("pk_satisfaction_scores")),
    )
    with op.batch_alter_table("mail_outbox", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("state", _MAIL_STATE, server_default="queued", nullable=False)
        )
        batch_op.add_column(sa.Column("attempts", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(
            sa.Column("next_attempt_at", sa.BigInteger(), server_default="0", nullable=False)
        )
        batch_op.add_column(sa.Column("claimed_until", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("sent_at", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("last_error", sa.String(length=500), nullable=True))
        batch_op.add_column(sa.Column("bulk_mailing_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_mail_outbox_bulk_mailing_id_bulk_mailings"),
            "bulk_mailings",
            ["bulk_mailing_id"],
            ["id"],
        )
        batch_op.create_index(
            "ix_mail_outbox_state_next_attempt_at", ["state", "next_attempt_at"], unique=False
        )


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table("mail_outbox", schema=None) as batch_op:
        batch_op.drop_index("ix_mail_outbox_state_next_attempt_at")
        batch_op.drop_constraint(
            batch_op.f("fk_mail_outbox_bulk_mailing_id_bulk_mailings"), type_="foreignkey"
        )
        for column in (
            "bulk_mailing_id",
            "last_error",
            "sent_at",
            "claimed_until",
            "next_attempt_at",
            "attempts",
            "state",
        ):
            batch_op.drop_column(column)
    op.drop_table("satisfaction_scores")
    op.drop_table("no_shows")
    op.drop_table("reservation_notices")
    op.drop_index("ix_bulk_mailings_facility_id_sent_at", table_name="bulk_mailings")
    op.drop_table("bulk_mailings")
