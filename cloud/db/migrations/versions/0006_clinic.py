"""clinic: sites, departments and rooms, patients, appointments, tickets, agent requests,
the staff action log, city announcements; the clinic staff role

The ``role`` CHECK constraint of ``users`` is rebuilt to admit ``clinic``. A downgrade
deletes the clinic users (the role stops existing) and the clinic tables.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _role(*extra: str) -> sa.Enum:
    return sa.Enum(
        "ops",
        "manager",
        *extra,
        name="role",
        native_enum=False,
        create_constraint=True,
        length=16,
    )


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "announcements",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("text", sa.String(length=240), nullable=False),
        sa.Column(
            "level",
            sa.Enum(
                "info",
                "urgent",
                name="announcement_level",
                native_enum=False,
                create_constraint=True,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
        sa.Column("sites", sa.JSON(), nullable=True),
        sa.Column("created_by", sa.String(length=100), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("ended_at", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_announcements")),
    )
    op.create_table(
        "appointments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=40), nullable=False),
        sa.Column("external_id", sa.String(length=100), nullable=False),
        sa.Column("card_number", sa.String(length=16), nullable=False),
        sa.Column("site", sa.String(length=40), nullable=False),
        sa.Column("department", sa.String(length=40), nullable=False),
        sa.Column("at", sa.BigInteger(), nullable=False),
        sa.Column("cancelled", sa.Boolean(), server_default="0", nullable=False),
        sa.Column("imported_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_appointments")),
        sa.UniqueConstraint(
            "source", "external_id", name=op.f("uq_appointments_source_external_id")
        ),
    )
    with op.batch_alter_table("appointments", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_appointments_card_number"), ["card_number"], unique=False
        )
        batch_op.create_index("ix_appointments_site_at", ["site", "at"], unique=False)

    op.create_table(
        "clinic_actions",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("site", sa.String(length=40), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.Column("actor", sa.String(length=100), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("number", sa.String(length=12), nullable=True),
        sa.Column("department", sa.String(length=40), nullable=True),
        sa.Column("room", sa.String(length=16), nullable=True),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("detail", sa.String(length=300), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_clinic_actions")),
    )
    with op.batch_alter_table("clinic_actions", schema=None) as batch_op:
        batch_op.create_index("ix_clinic_actions_site_day", ["site", "day"], unique=False)

    op.create_table(
        "clinic_requests",
        sa.Column("request_id", sa.String(length=64), nullable=False),
        sa.Column("site", sa.String(length=40), nullable=False),
        sa.Column("gateway", sa.String(length=40), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("number", sa.String(length=12), nullable=True),
        sa.Column("department", sa.String(length=40), nullable=True),
        sa.Column("estimated_wait_s", sa.Float(), nullable=True),
        sa.Column("error", sa.String(length=300), nullable=True),
        sa.Column("applied_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("request_id", name=op.f("pk_clinic_requests")),
    )
    with op.batch_alter_table("clinic_requests", schema=None) as batch_op:
        batch_op.create_index(
            "ix_clinic_requests_site_applied_at", ["site", "applied_at"], unique=False
        )

    op.create_table(
        "clinics",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("site", sa.String(length=40), nullable=False),
        sa.Column("gateway", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("walk_in_department", sa.String(length=40), nullable=True),
        sa.Column("displays", sa.JSON(), nullable=False),
        sa.Column("state_version", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("display_version", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("applied_through", sa.String(length=64), nullable=True),
        sa.Column("published_day", sa.Date(), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_clinics")),
        sa.UniqueConstraint("site", name=op.f("uq_clinics_site")),
    )
    op.create_table(
        "patients",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("card_number", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("issuing_facility", sa.String(length=100), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_patients")),
        sa.UniqueConstraint("card_number", name=op.f("uq_patients_card_number")),
    )
    op.create_table(
        "clinic_departments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("clinic_id", sa.Integer(), nullable=False),
        sa.Column("slug", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=60), nullable=False),
        sa.Column("prefix", sa.String(length=3), nullable=False),
        sa.Column("tolerance_s", sa.Integer(), server_default="900", nullable=False),
        sa.Column("default_service_s", sa.Integer(), server_default="600", nullable=False),
        sa.Column("notify_when_left", sa.Integer(), server_default="3", nullable=False),
        sa.ForeignKeyConstraint(
            ["clinic_id"], ["clinics.id"], name=op.f("fk_clinic_departments_clinic_id_clinics")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_clinic_departments")),
        sa.UniqueConstraint(
            "clinic_id", "prefix", name=op.f("uq_clinic_departments_clinic_id_prefix")
        ),
        sa.UniqueConstraint("clinic_id", "slug", name=op.f("uq_clinic_departments_clinic_id_slug")),
    )
    op.create_table(
        "clinic_tickets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("site", sa.String(length=40), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("department", sa.String(length=40), nullable=False),
        sa.Column("number", sa.String(length=12), nullable=False),
        sa.Column(
            "state",
            sa.Enum(
                "waiting",
                "called",
                "in_room",
                "skipped",
                "done",
                "no_show",
                name="ticket_state",
                native_enum=False,
                create_constraint=True,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("queued_at", sa.Float(), nullable=False),
        sa.Column("urgent", sa.Boolean(), server_default="0", nullable=False),
        sa.Column("appointment_at", sa.Float(), nullable=True),
        sa.Column("preferred_room", sa.String(length=16), nullable=True),
        sa.Column("room", sa.String(length=16), nullable=True),
        sa.Column("call_seq", sa.Integer(), server_default="0", nullable=False),
        sa.Column("called_at", sa.Float(), nullable=True),
        sa.Column("first_called_at", sa.Float(), nullable=True),
        sa.Column("started_at", sa.Float(), nullable=True),
        sa.Column("finished_at", sa.Float(), nullable=True),
        sa.Column("appointment_id", sa.Integer(), nullable=True),
        sa.Column("patient_id", sa.Integer(), nullable=True),
        sa.Column(
            "source",
            sa.Enum(
                "kiosk",
                "app",
                "desk",
                "agent",
                name="ticket_source",
                native_enum=False,
                create_constraint=True,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("status_token", sa.String(length=32), nullable=False),
        sa.Column("left_notified_at", sa.BigInteger(), nullable=True),
        sa.Column("called_notified_at", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["appointment_id"],
            ["appointments.id"],
            name=op.f("fk_clinic_tickets_appointment_id_appointments"),
        ),
        sa.ForeignKeyConstraint(
            ["patient_id"], ["patients.id"], name=op.f("fk_clinic_tickets_patient_id_patients")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_clinic_tickets")),
        sa.UniqueConstraint("appointment_id", name=op.f("uq_clinic_tickets_appointment_id")),
        sa.UniqueConstraint(
            "site", "day", "number", name=op.f("uq_clinic_tickets_site_day_number")
        ),
        sa.UniqueConstraint("status_token", name=op.f("uq_clinic_tickets_status_token")),
    )
    with op.batch_alter_table("clinic_tickets", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_clinic_tickets_patient_id"), ["patient_id"], unique=False
        )

    op.create_table(
        "clinic_rooms",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("clinic_id", sa.Integer(), nullable=False),
        sa.Column("department_id", sa.Integer(), nullable=False),
        sa.Column("label", sa.String(length=16), nullable=False),
        sa.ForeignKeyConstraint(
            ["clinic_id"], ["clinics.id"], name=op.f("fk_clinic_rooms_clinic_id_clinics")
        ),
        sa.ForeignKeyConstraint(
            ["department_id"],
            ["clinic_departments.id"],
            name=op.f("fk_clinic_rooms_department_id_clinic_departments"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_clinic_rooms")),
        sa.UniqueConstraint("clinic_id", "label", name=op.f("uq_clinic_rooms_clinic_id_label")),
    )
    with op.batch_alter_table("clinic_rooms", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_clinic_rooms_department_id"), ["department_id"], unique=False
        )

    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.alter_column(
            "role", existing_type=_role(), type_=_role("clinic"), existing_nullable=False
        )


def downgrade() -> None:
    """Downgrade schema."""
    op.execute("DELETE FROM users WHERE role = 'clinic'")
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.alter_column(
            "role", existing_type=_role("clinic"), type_=_role(), existing_nullable=False
        )
    with op.batch_alter_table("clinic_rooms", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_clinic_rooms_department_id"))

    op.drop_table("clinic_rooms")
    with op.batch_alter_table("clinic_tickets", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_clinic_tickets_patient_id"))

    op.drop_table("clinic_tickets")
    op.drop_table("clinic_departments")
    op.drop_table("patients")
    op.drop_table("clinics")
    with op.batch_alter_table("clinic_requests", schema=None) as batch_op:
        batch_op.drop_index("ix_clinic_requests_site_applied_at")

    op.drop_table("clinic_requests")
    with op.batch_alter_table("clinic_actions", schema=None) as batch_op:
        batch_op.drop_index("ix_clinic_actions_site_day")

    op.drop_table("clinic_actions")
    with op.batch_alter_table("appointments", schema=None) as batch_op:
        batch_op.drop_index("ix_appointments_site_at")
        batch_op.drop_index(batch_op.f("ix_appointments_card_number"))

    op.drop_table("appointments")
    op.drop_table("announcements")
