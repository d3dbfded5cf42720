"""personal data retention (APPI): the log of deletions, anonymisations and exports; a
clinic day's figures kept when its tickets go; a booking's ``anonymised_at``; mails to
forget once sent

New tables and one new nullable column: nothing existing changes. A downgrade drops them
(the kept figures with them: the days whose tickets were already deleted lose their
figures).

Revision ID: 0010
Revises: 0009
Create Date: 2027-01-15 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "clinic_kept_days",
        sa.Column("site", sa.String(length=40), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("checkins", sa.Integer(), nullable=False),
        sa.Column("offline_tickets", sa.Integer(), nullable=False),
        sa.Column("checkins_per_hour", sa.JSON(), nullable=False),
        sa.Column("kept_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("site", "day", name=op.f("pk_clinic_kept_days")),
    )
    op.create_table(
        "clinic_kept_departments",
        sa.Column("site", sa.String(length=40), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("department", sa.String(length=40), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=60), nullable=False),
        sa.Column("tickets", sa.Integer(), nullable=False),
        sa.Column("called", sa.Integer(), nullable=False),
        sa.Column("wait_median_s", sa.Float(), nullable=True),
        sa.Column("wait_p90_s", sa.Float(), nullable=True),
        sa.Column("done", sa.Integer(), nullable=False),
        sa.Column("no_shows", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint(
            "site", "day", "department", name=op.f("pk_clinic_kept_departments")
        ),
    )
    op.create_table(
        "personal_data_log",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("at", sa.BigInteger(), nullable=False),
        sa.Column("actor", sa.String(length=100), nullable=False),
        sa.Column(
            "action",
            sa.Enum(
                "retention",
                "erasure",
                "export",
                name="personal_data_action",
                native_enum=False,
                create_constraint=True,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("domain", sa.String(length=16), nullable=False),
        sa.Column("site", sa.String(length=40), nullable=True),
        sa.Column("subject", sa.String(length=100), nullable=True),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_personal_data_log")),
    )
    with op.batch_alter_table("personal_data_log", schema=None) as batch_op:
        batch_op.create_index("ix_personal_data_log_at", ["at"], unique=False)

    op.create_table(
        "mail_to_forget",
        sa.Column("mail_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["mail_id"], ["mail_outbox.id"], name=op.f("fk_mail_to_forget_mail_id_mail_outbox")
        ),
        sa.PrimaryKeyConstraint("mail_id", name=op.f("pk_mail_to_forget")),
    )
    with op.batch_alter_table("reservations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("anonymised_at", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table("reservations", schema=None) as batch_op:
        batch_op.drop_column("anonymised_at")

    op.drop_table("mail_to_forget")
    with op.batch_alter_table("personal_data_log", schema=None) as batch_op:
        batch_op.drop_index("ix_personal_data_log_at")

    op.drop_table("personal_data_log")
    op.drop_table("clinic_kept_departments")
    op.drop_table("clinic_kept_days")
