"""clinic trust boundaries: an appointment is keyed on its site too; the patient
registry's audit trail

``appointments`` loses ``(source, external_id)`` for ``(source, site, external_id)``, so a
clinic's import never reaches another clinic's appointment. ``patient_changes`` records
who created or changed which patient, when, and what.

A downgrade keeps the first-imported of appointments that share ``(source,
external_id)`` at different sites (the rest cannot live under the old key; tickets that
point at them lose the link) and drops the audit trail.

Revision ID: 0011
Revises: 0010
Create Date: 2027-01-15 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | Sequence[str] | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table("appointments", schema=None) as batch_op:
        batch_op.drop_constraint("uq_appointments_source_external_id", type_="unique")
        batch_op.create_unique_constraint(
            batch_op.f("uq_appointments_source_site_external_id"),
            ["source", "site", "external_id"],
        )

    op.create_table(
        "patient_changes",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            nullable=False,
        ),
        sa.Column("at", sa.BigInteger(), nullable=False),
        sa.Column("actor", sa.String(length=100), nullable=False),
        sa.Column("card_number", sa.String(length=16), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("changes", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_patient_changes")),
    )
    with op.batch_alter_table("patient_changes", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_patient_changes_card_number"), ["card_number"], unique=False
        )


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table("patient_changes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_patient_changes_card_number"))
    op.drop_table("patient_changes")

    op.execute(
        "UPDATE clinic_tickets SET appointment_id = NULL WHERE appointment_id IS NOT NULL"
        " AND appointment_id NOT IN (SELECT first_id FROM (SELECT MIN(id) AS first_id"
        " FROM appointments GROUP BY source, external_id) AS kept)"
    )
    op.execute(
        "DELETE FROM appointments WHERE id NOT IN (SELECT first_id FROM (SELECT MIN(id)"
        " AS first_id FROM appointments GROUP BY source, external_id) AS kept)"
    )
    with op.batch_alter_table("appointments", schema=None) as batch_op:
        batch_op.drop_constraint(
            batch_op.f("uq_appointments_source_site_external_id"), type_="unique"
        )
        batch_op.create_unique_constraint(
            batch_op.f("uq_appointments_source_external_id"), ["source", "external_id"]
        )
