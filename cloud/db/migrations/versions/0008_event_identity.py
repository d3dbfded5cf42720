"""event identity: a lock event is stored once per (site, lock_id, boot, seq); devices keep
a lock's event numbering; alerts name the boot of the event that opened them; the
``seq_backwards`` alert kind

``boot`` (the run of the lock's event counter) keeps a restarted lock's events apart from
its earlier ones; ``site`` is that of the topic the event arrived on. Existing events get
boot 0 and the site of their lock's facility (a lock no facility holds: the site the fleet
knows it at, else the empty string), existing alerts opened by an event boot 0. The
``kind`` CHECK constraint of ``alerts`` is rebuilt to admit ``seq_backwards``.

A downgrade keeps the first-stored of events that share ``(lock_id, seq)`` (the rest
cannot live under the old key) and deletes the ``seq_backwards`` alerts.

Revision ID: 0008
Revises: 0007
Create Date: 2027-01-12 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
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
    with op.batch_alter_table("lock_events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("site", sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column("boot", sa.BigInteger(), server_default="0", nullable=False))
    op.execute(
        "UPDATE lock_events SET site = COALESCE("
        "(SELECT facilities.site FROM locks JOIN facilities ON facilities.id = locks.facility_id"
        " WHERE locks.lock_id = lock_events.lock_id),"
        "(SELECT MIN(devices.site) FROM devices"
        " WHERE devices.device_id = lock_events.lock_id AND devices.kind = 'lock'),"
        "'')"
    )
    with op.batch_alter_table("lock_events", schema=None) as batch_op:
        batch_op.alter_column("site", existing_type=sa.String(length=40), nullable=False)
        batch_op.drop_constraint("uq_lock_events_lock_id_seq", type_="unique")
        batch_op.create_unique_constraint(
            batch_op.f("uq_lock_events_site_lock_id_boot_seq"), ["site", "lock_id", "boot", "seq"]
        )
        batch_op.create_index("ix_lock_events_lock_id_id", ["lock_id", "id"], unique=False)

    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.add_column(sa.Column("event_boot", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("boot_seen_at", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("event_seq", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("event_lock_ts", sa.BigInteger(), nullable=True))

    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("source_boot", sa.BigInteger(), nullable=True))
        batch_op.alter_column(
            "kind",
            existing_type=_alert_kind(),
            type_=_alert_kind("seq_backwards"),
            existing_nullable=False,
        )
    op.execute("UPDATE alerts SET source_boot = 0 WHERE source_seq IS NOT NULL")


def downgrade() -> None:
    """Downgrade schema."""
    op.execute("DELETE FROM alerts WHERE kind = 'seq_backwards'")
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.alter_column(
            "kind",
            existing_type=_alert_kind("seq_backwards"),
            type_=_alert_kind(),
            existing_nullable=False,
        )
        batch_op.drop_column("source_boot")

    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.drop_column("event_lock_ts")
        batch_op.drop_column("event_seq")
        batch_op.drop_column("boot_seen_at")
        batch_op.drop_column("event_boot")

    op.execute(
        "DELETE FROM lock_events WHERE id NOT IN "
        "(SELECT first_id FROM (SELECT MIN(id) AS first_id FROM lock_events"
        " GROUP BY lock_id, seq) AS kept)"
    )
    with op.batch_alter_table("lock_events", schema=None) as batch_op:
        batch_op.drop_index("ix_lock_events_lock_id_id")
        batch_op.drop_constraint(batch_op.f("uq_lock_events_site_lock_id_boot_seq"), type_="unique")
        batch_op.create_unique_constraint(
            batch_op.f("uq_lock_events_lock_id_seq"), ["lock_id", "seq"]
        )
        batch_op.drop_column("boot")
        batch_op.drop_column("site")
