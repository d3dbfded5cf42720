"""the ``foreign_device`` alert kind: a gateway named a lock of another site or gateway

The ``kind`` CHECK constraint of ``alerts`` is rebuilt to admit it; a downgrade deletes
those alerts first.

Revision ID: 0009
Revises: 0008
Create Date: 2027-01-14 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ALERT_KINDS = (
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
    "seq_backwards",
)


def _alert_kind(*extra: str) -> sa.Enum:
    return sa.Enum(
        *_ALERT_KINDS,
        *extra,
        name="alert_kind",
        native_enum=False,
        create_constraint=True,
        length=16,
    )


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.alter_column(
            "kind",
            existing_type=_alert_kind(),
            type_=_alert_kind("foreign_device"),
            existing_nullable=False,
        )


def downgrade() -> None:
    """Downgrade schema."""
    op.execute("DELETE FROM alerts WHERE kind = 'foreign_device'")
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.alter_column(
            "kind",
            existing_type=_alert_kind("foreign_device"),
            type_=_alert_kind(),
            existing_nullable=False,
        )
