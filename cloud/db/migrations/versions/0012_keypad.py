"""the ``keypad_guessing`` and ``tamper`` alert kinds, and ``alerts.seen_at``

``keypad_guessing``: a lock took wrong PINs faster than typos come; ``tamper``: a lock
refused frames (forged, replayed, under another key). Both clear after a quiet period,
counted from ``seen_at``: when the condition last showed (null for the older alerts,
which clear as they always did). The ``kind`` CHECK constraint of ``alerts`` is rebuilt
to admit the two kinds; a downgrade deletes those alerts first.

Revision ID: 0012
Revises: 0011
Create Date: 2027-01-20 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | Sequence[str] | None = "0011"
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
    "foreign_device",
)
_NEW_KINDS = ("keypad_guessing", "tamper")


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
        batch_op.add_column(sa.Column("seen_at", sa.BigInteger(), nullable=True))
        batch_op.alter_column(
            "kind",
            existing_type=_alert_kind(),
            type_=_alert_kind(*_NEW_KINDS),
            existing_nullable=False,
        )


def downgrade() -> None:
    """Downgrade schema."""
    op.execute("DELETE FROM alerts WHERE kind IN ('keypad_guessing', 'tamper')")
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.alter_column(
            "kind",
            existing_type=_alert_kind(*_NEW_KINDS),
            type_=_alert_kind(),
            existing_nullable=False,
        )
        batch_op.drop_column("seen_at")
