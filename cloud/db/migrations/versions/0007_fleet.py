"""fleet: city departments and their members, sites, devices, twins, health samples,
alerts, commands, firmware images, rollouts and their targets, the fleet audit log; the
gateways table gains its health; the technician role

The ``role`` CHECK constraint of ``users`` is rebuilt to admit ``technician`` (as 0006 did
for ``clinic``). A downgrade deletes the technician users and the fleet tables.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-08 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
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
        "alerts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column(
            "kind",
            sa.Enum(
                "gateway_offline",
                "missed_sync",
                "battery_low",
                "battery_critical",
                "battery_forecast",
                "lockout",
                "door_held_open",
                "jam",
                "clock_drift",
                "outbox_backlog",
                name="alert_kind",
                native_enum=False,
                create_constraint=True,
            ),
            nullable=False,
        ),
        sa.Column(
            "severity",
            sa.Enum(
                "critical",
                "warning",
                name="severity",
                native_enum=False,
                create_constraint=True,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("site", sa.String(length=40), nullable=False),
        sa.Column("gateway", sa.String(length=40), nullable=False),
        sa.Column(
            "subject_kind",
            sa.Enum(
                "gateway",
                "lock",
                "display",
                "reader",
                name="alert_subject",
                native_enum=False,
                create_constraint=True,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("subject", sa.String(length=40), nullable=False),
        sa.Column("message", sa.String(length=300), nullable=False),
        sa.Column("opened_at", sa.BigInteger(), nullable=False),
        sa.Column("acknowledged_at", sa.BigInteger(), nullable=True),
        sa.Column("acknowledged_by", sa.String(length=100), nullable=True),
        sa.Column("resolved_at", sa.BigInteger(), nullable=True),
        sa.Column("resolution", sa.String(length=200), nullable=True),
        sa.Column("source_seq", sa.BigInteger(), nullable=True),
        sa.Column("open_key", sa.String(length=140), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alerts")),
        sa.UniqueConstraint("open_key", name=op.f("uq_alerts_open_key")),
    )
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.create_index("ix_alerts_resolved_at", ["resolved_at"], unique=False)
        batch_op.create_index("ix_alerts_site_opened_at", ["site", "opened_at"], unique=False)

    op.create_table(
        "departments",
        sa.Column("slug", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("slug", name=op.f("pk_departments")),
    )
    op.create_table(
        "devices",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("site", sa.String(length=40), nullable=False),
        sa.Column("gateway", sa.String(length=40), nullable=False),
        sa.Column("device_id", sa.String(length=40), nullable=False),
        sa.Column(
            "kind",
            sa.Enum(
                "lock",
                "display",
                "reader",
                name="device_kind",
                native_enum=False,
                create_constraint=True,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("model", sa.String(length=32), nullable=True),
        sa.Column("firmware", sa.String(length=64), nullable=True),
        sa.Column("config", sa.JSON(), nullable=True),
        sa.Column("reachable", sa.Boolean(), nullable=True),
        sa.Column("battery_pct", sa.Integer(), nullable=True),
        sa.Column("battery_days_left", sa.Float(), nullable=True),
        sa.Column("clock_offset_s", sa.Float(), nullable=True),
        sa.Column("clock_drift_s", sa.Float(), nullable=True),
        sa.Column("rssi_dbm", sa.Integer(), nullable=True),
        sa.Column("door_open", sa.Boolean(), nullable=True),
        sa.Column("locked_out", sa.Boolean(), nullable=True),
        sa.Column("last_sync_at", sa.BigInteger(), nullable=True),
        sa.Column("next_sync_at", sa.BigInteger(), nullable=True),
        sa.Column("shown_version", sa.BigInteger(), nullable=True),
        sa.Column("telemetry_at", sa.BigInteger(), nullable=True),
        sa.Column("sampled_at", sa.BigInteger(), nullable=True),
        sa.Column("first_seen_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_devices")),
        sa.UniqueConstraint("site", "device_id", name=op.f("uq_devices_site_device_id")),
    )
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.create_index("ix_devices_site_gateway", ["site", "gateway"], unique=False)

    op.create_table(
        "firmware_images",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column(
            "kind",
            sa.Enum(
                "lock",
                "display",
                "reader",
                name="image_kind",
                native_enum=False,
                create_constraint=True,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("model", sa.String(length=32), nullable=False),
        sa.Column("version", sa.String(length=20), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("key_id", sa.String(length=16), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("uploaded_by", sa.String(length=100), nullable=False),
        sa.Column("uploaded_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_firmware_images")),
        sa.UniqueConstraint("sha256", name=op.f("uq_firmware_images_sha256")),
    )
    op.create_table(
        "fleet_audit",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("at", sa.BigInteger(), nullable=False),
        sa.Column("actor", sa.String(length=100), nullable=False),
        sa.Column("action", sa.String(length=40), nullable=False),
        sa.Column("site", sa.String(length=40), nullable=True),
        sa.Column("subject", sa.String(length=80), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fleet_audit")),
    )
    with op.batch_alter_table("fleet_audit", schema=None) as batch_op:
        batch_op.create_index("ix_fleet_audit_at", ["at"], unique=False)

    op.create_table(
        "health_samples",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("site", sa.String(length=40), nullable=False),
        sa.Column(
            "subject_kind",
            sa.Enum(
                "gateway",
                "lock",
                "display",
                "reader",
                name="sample_kind",
                native_enum=False,
                create_constraint=True,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("subject", sa.String(length=40), nullable=False),
        sa.Column("at", sa.BigInteger(), nullable=False),
        sa.Column("battery_pct", sa.Integer(), nullable=True),
        sa.Column("clock_offset_s", sa.Float(), nullable=True),
        sa.Column("rssi_dbm", sa.Integer(), nullable=True),
        sa.Column("last_sync_at", sa.BigInteger(), nullable=True),
        sa.Column("outbox_depth", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_health_samples")),
    )
    with op.batch_alter_table("health_samples", schema=None) as batch_op:
        batch_op.create_index("ix_health_samples_at", ["at"], unique=False)
        batch_op.create_index(
            "ix_health_samples_site_subject_at", ["site", "subject", "at"], unique=False
        )

    op.create_table(
        "twins",
        sa.Column("site", sa.String(length=40), nullable=False),
        sa.Column(
            "kind",
            sa.Enum(
                "gateway",
                "lock",
                "display",
                "reader",
                name="twin_kind",
                native_enum=False,
                create_constraint=True,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("subject", sa.String(length=40), nullable=False),
        sa.Column("gateway", sa.String(length=40), nullable=False),
        sa.Column("desired", sa.JSON(), nullable=True),
        sa.Column("desired_version", sa.BigInteger(), nullable=True),
        sa.Column("desired_at", sa.BigInteger(), nullable=True),
        sa.Column("reported", sa.JSON(), nullable=True),
        sa.Column("reported_version", sa.BigInteger(), nullable=True),
        sa.Column("reported_at", sa.BigInteger(), nullable=True),
        sa.Column("diverged_since", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("site", "kind", "subject", name=op.f("pk_twins")),
    )
    op.create_table(
        "department_members",
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("department", sa.String(length=40), nullable=False),
        sa.ForeignKeyConstraint(
            ["department"],
            ["departments.slug"],
            name=op.f("fk_department_members_department_departments"),
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_department_members_user_id_users")
        ),
        sa.PrimaryKeyConstraint("user_id", "department", name=op.f("pk_department_members")),
    )
    op.create_table(
        "rollouts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column(
            "kind",
            sa.Enum(
                "firmware",
                "config",
                name="rollout_kind",
                native_enum=False,
                create_constraint=True,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("firmware_image_id", sa.Integer(), nullable=True),
        sa.Column("config", sa.JSON(), nullable=True),
        sa.Column("rings", sa.JSON(), nullable=False),
        sa.Column("current_ring", sa.Integer(), server_default="0", nullable=False),
        sa.Column(
            "phase",
            sa.Enum(
                "sending",
                "soaking",
                "passed",
                name="ring_phase",
                native_enum=False,
                create_constraint=True,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column(
            "state",
            sa.Enum(
                "running",
                "paused",
                "halted",
                "completed",
                name="rollout_state",
                native_enum=False,
                create_constraint=True,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("soak_s", sa.Integer(), nullable=False),
        sa.Column("auto_advance", sa.Boolean(), server_default="1", nullable=False),
        sa.Column("ring_started_at", sa.BigInteger(), nullable=True),
        sa.Column("ring_done_at", sa.BigInteger(), nullable=True),
        sa.Column("created_by", sa.String(length=100), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.Column("halted_at", sa.BigInteger(), nullable=True),
        sa.Column("halted_reason", sa.String(length=300), nullable=True),
        sa.ForeignKeyConstraint(
            ["firmware_image_id"],
            ["firmware_images.id"],
            name=op.f("fk_rollouts_firmware_image_id_firmware_images"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rollouts")),
    )
    op.create_table(
        "sites",
        sa.Column("slug", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("department", sa.String(length=40), nullable=True),
        sa.Column("ring", sa.Integer(), server_default="2", nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["department"], ["departments.slug"], name=op.f("fk_sites_department_departments")
        ),
        sa.PrimaryKeyConstraint("slug", name=op.f("pk_sites")),
    )
    with op.batch_alter_table("sites", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sites_department"), ["department"], unique=False)

    op.create_table(
        "commands",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("transaction", sa.String(length=64), nullable=False),
        sa.Column("verb", sa.String(length=32), nullable=False),
        sa.Column("site", sa.String(length=40), nullable=False),
        sa.Column("gateway", sa.String(length=40), nullable=False),
        sa.Column("device_id", sa.String(length=40), nullable=True),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("firmware_image_id", sa.Integer(), nullable=True),
        sa.Column("requested_by", sa.String(length=100), nullable=False),
        sa.Column("reason", sa.String(length=200), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "pending",
                "sent",
                "ok",
                "error",
                "expired",
                "rejected",
                name="command_state",
                native_enum=False,
                create_constraint=True,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("sent_at", sa.BigInteger(), nullable=True),
        sa.Column("replied_at", sa.BigInteger(), nullable=True),
        sa.Column("reply_data", sa.JSON(), nullable=True),
        sa.Column("reply_error", sa.String(length=500), nullable=True),
        sa.Column("duplicate_replies", sa.Integer(), server_default="0", nullable=False),
        sa.Column("rollout_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["firmware_image_id"],
            ["firmware_images.id"],
            name=op.f("fk_commands_firmware_image_id_firmware_images"),
        ),
        sa.ForeignKeyConstraint(
            ["rollout_id"], ["rollouts.id"], name=op.f("fk_commands_rollout_id_rollouts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_commands")),
        sa.UniqueConstraint("transaction", name=op.f("uq_commands_transaction")),
    )
    with op.batch_alter_table("commands", schema=None) as batch_op:
        batch_op.create_index("ix_commands_site_created_at", ["site", "created_at"], unique=False)
        batch_op.create_index(
            "ix_commands_status_expires_at", ["status", "expires_at"], unique=False
        )

    op.create_table(
        "rollout_targets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("rollout_id", sa.Integer(), nullable=False),
        sa.Column("ring", sa.Integer(), nullable=False),
        sa.Column("site", sa.String(length=40), nullable=False),
        sa.Column("gateway", sa.String(length=40), nullable=False),
        sa.Column("device_id", sa.String(length=40), nullable=True),
        sa.Column(
            "state",
            sa.Enum(
                "waiting",
                "deferred",
                "sent",
                "succeeded",
                "failed",
                "cancelled",
                "rolled_back",
                name="target_state",
                native_enum=False,
                create_constraint=True,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("transaction", sa.String(length=64), nullable=True),
        sa.Column("config_version", sa.BigInteger(), nullable=True),
        sa.Column("previous", sa.JSON(), nullable=True),
        sa.Column("detail", sa.String(length=300), nullable=True),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("sent_at", sa.BigInteger(), nullable=True),
        sa.Column("done_at", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["rollout_id"], ["rollouts.id"], name=op.f("fk_rollout_targets_rollout_id_rollouts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rollout_targets")),
    )
    with op.batch_alter_table("rollout_targets", schema=None) as batch_op:
        batch_op.create_index(
            "ix_rollout_targets_rollout_id_ring", ["rollout_id", "ring"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_rollout_targets_transaction"), ["transaction"], unique=False
        )

    with op.batch_alter_table("gateways", schema=None) as batch_op:
        batch_op.add_column(sa.Column("available", sa.Boolean(), nullable=True))
        batch_op.add_column(sa.Column("available_since", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("telemetry_at", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("uptime_s", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("outbox_depth", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("outbox_oldest_age_s", sa.Float(), nullable=True))
        batch_op.add_column(
            sa.Column("outbox_growth", sa.Integer(), server_default="0", nullable=False)
        )
        batch_op.add_column(sa.Column("frames_dropped", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("time_trusted", sa.Boolean(), nullable=True))
        batch_op.add_column(sa.Column("sampled_at", sa.BigInteger(), nullable=True))

    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.alter_column(
            "role",
            existing_type=_role("clinic"),
            type_=_role("clinic", "technician"),
            existing_nullable=False,
        )


def downgrade() -> None:
    """Downgrade schema."""
    op.execute(
        "DELETE FROM department_members WHERE user_id IN "
        "(SELECT id FROM users WHERE role = 'technician')"
    )
    op.execute("DELETE FROM users WHERE role = 'technician'")
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.alter_column(
            "role",
            existing_type=_role("clinic", "technician"),
            type_=_role("clinic"),
            existing_nullable=False,
        )
    with op.batch_alter_table("gateways", schema=None) as batch_op:
        batch_op.drop_column("sampled_at")
        batch_op.drop_column("time_trusted")
        batch_op.drop_column("frames_dropped")
        batch_op.drop_column("outbox_growth")
        batch_op.drop_column("outbox_oldest_age_s")
        batch_op.drop_column("outbox_depth")
        batch_op.drop_column("uptime_s")
        batch_op.drop_column("telemetry_at")
        batch_op.drop_column("available_since")
        batch_op.drop_column("available")

    with op.batch_alter_table("rollout_targets", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_rollout_targets_transaction"))
        batch_op.drop_index("ix_rollout_targets_rollout_id_ring")

    op.drop_table("rollout_targets")
    with op.batch_alter_table("commands", schema=None) as batch_op:
        batch_op.drop_index("ix_commands_status_expires_at")
        batch_op.drop_index("ix_commands_site_created_at")

    op.drop_table("commands")
    with op.batch_alter_table("sites", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sites_department"))

    op.drop_table("sites")
    op.drop_table("rollouts")
    op.drop_table("department_members")
    op.drop_table("twins")
    with op.batch_alter_table("health_samples", schema=None) as batch_op:
        batch_op.drop_index("ix_health_samples_site_subject_at")
        batch_op.drop_index("ix_health_samples_at")

    op.drop_table("health_samples")
    with op.batch_alter_table("fleet_audit", schema=None) as batch_op:
        batch_op.drop_index("ix_fleet_audit_at")

    op.drop_table("fleet_audit")
    op.drop_table("firmware_images")
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.drop_index("ix_devices_site_gateway")

    op.drop_table("devices")
    op.drop_table("departments")
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.drop_index("ix_alerts_site_opened_at")
        batch_op.drop_index("ix_alerts_resolved_at")

    op.drop_table("alerts")
