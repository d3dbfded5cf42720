"""offline PINs and the lock's revocation list

Each lock may hold the ``offline_secret`` it got at pairing; a grant may be an offline
PIN (``offline_pins``: its id on one lock, never the code) instead of a slot PIN, so
``access_grants.pin`` becomes nullable; ``lock_sync`` keeps what the agent last reported
per lock (``access/applied`` and telemetry) for the manager's sync status.

Downgrade: offline grants cannot become slot PINs (nobody was told one), so they are
revoked and given a placeholder PIN before the column is made NOT NULL again.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table("locks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("offline_secret", sa.String(length=64), nullable=True))
    with op.batch_alter_table("access_grants", schema=None) as batch_op:
        batch_op.alter_column("pin", existing_type=sa.String(length=12), nullable=True)
    op.create_table(
        "offline_pins",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("grant_id", sa.String(length=36), nullable=False),
        sa.Column("lock_id", sa.Integer(), nullable=False),
        sa.Column("start_hour", sa.BigInteger(), nullable=False),
        sa.Column("hours", sa.Integer(), nullable=False),
        sa.Column("nonce", sa.Integer(), nullable=False),
        sa.Column("reason", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["grant_id"],
            ["access_grants.id"],
            name=op.f("fk_offline_pins_grant_id_access_grants"),
        ),
        sa.ForeignKeyConstraint(
            ["lock_id"], ["locks.id"], name=op.f("fk_offline_pins_lock_id_locks")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_offline_pins")),
        sa.UniqueConstraint("grant_id", name=op.f("uq_offline_pins_grant_id")),
        sa.UniqueConstraint(
            "lock_id",
            "start_hour",
            "hours",
            "nonce",
            name=op.f("uq_offline_pins_lock_id_start_hour_hours_nonce"),
        ),
    )
    with op.batch_alter_table("offline_pins", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_offline_pins_lock_id"), ["lock_id"], unique=False)
    op.create_table(
        "lock_sync",
        sa.Column("lock_id", sa.String(length=40), nullable=False),
        sa.Column("applied_version", sa.BigInteger(), nullable=True),
        sa.Column("grant_ids", sa.JSON(), nullable=True),
        sa.Column("loaded_at", sa.JSON(), nullable=True),
        sa.Column("deferred", sa.JSON(), nullable=True),
        sa.Column("clock_offset_s", sa.Float(), nullable=True),
        sa.Column("clock_set", sa.Boolean(), nullable=True),
        sa.Column("reason", sa.String(length=16), nullable=True),
        sa.Column("revocation_error", sa.String(length=200), nullable=True),
        sa.Column("applied_received_at", sa.BigInteger(), nullable=True),
        sa.Column("reachable", sa.Boolean(), nullable=True),
        sa.Column("last_sync_at", sa.BigInteger(), nullable=True),
        sa.Column("next_sync_at", sa.BigInteger(), nullable=True),
        sa.Column("clock_drift_s", sa.Float(), nullable=True),
        sa.Column("telemetry_received_at", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["lock_id"], ["locks.lock_id"], name=op.f("fk_lock_sync_lock_id_locks")
        ),
        sa.PrimaryKeyConstraint("lock_id", name=op.f("pk_lock_sync")),
    )


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_table("lock_sync")
    with op.batch_alter_table("offline_pins", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_offline_pins_lock_id"))
    op.drop_table("offline_pins")
    op.execute(
        "UPDATE access_grants SET pin = '000000', revoked_at = COALESCE(revoked_at, created_at) "
        "WHERE pin IS NULL"
    )
    with op.batch_alter_table("access_grants", schema=None) as batch_op:
        batch_op.alter_column("pin", existing_type=sa.String(length=12), nullable=False)
    with op.batch_alter_table("locks", schema=None) as batch_op:
        batch_op.drop_column("offline_secret")
