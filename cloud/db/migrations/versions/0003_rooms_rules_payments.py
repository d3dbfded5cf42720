"""rooms, opening hours, booking rules, auto-approval, payment and cancellation

A booking is now of a *room* (a court, the hall) instead of a lock, and a grant opens
every lock that serves its room. Existing data keeps its meaning: every existing lock
gets a room of its own (named after the lock) and its reservations move to that room;
existing facilities are open around the clock, as before, until a manager sets hours.

Revision ID: 0003
Revises: 0002
Create Date: 2025-03-01 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_PAYMENT_STATE = sa.Enum(
    "unpaid",
    "paid",
    "refunded",
    name="payment_state",
    native_enum=False,
    create_constraint=True,
    length=16,
)


def _create_tables() -> None:
    op.create_table(
        "opening_hours",
        sa.Column("facility_id", sa.Integer(), nullable=False),
        sa.Column("weekday", sa.Integer(), nullable=False),
        sa.Column("opens_minute", sa.Integer(), nullable=False),
        sa.Column("closes_minute", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["facility_id"], ["facilities.id"], name=op.f("fk_opening_hours_facility_id_facilities")
        ),
        sa.PrimaryKeyConstraint("facility_id", "weekday", name=op.f("pk_opening_hours")),
    )
    op.create_table(
        "closed_days",
        sa.Column("facility_id", sa.Integer(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("reason", sa.String(length=200), nullable=False),
        sa.ForeignKeyConstraint(
            ["facility_id"], ["facilities.id"], name=op.f("fk_closed_days_facility_id_facilities")
        ),
        sa.PrimaryKeyConstraint("facility_id", "day", name=op.f("pk_closed_days")),
    )
    op.create_table(
        "registered_groups",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("facility_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.ForeignKeyConstraint(
            ["facility_id"],
            ["facilities.id"],
            name=op.f("fk_registered_groups_facility_id_facilities"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_registered_groups")),
        sa.UniqueConstraint(
            "facility_id", "email", name=op.f("uq_registered_groups_facility_id_email")
        ),
    )
    op.create_table(
        "rooms",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("facility_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("capacity", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["facility_id"], ["facilities.id"], name=op.f("fk_rooms_facility_id_facilities")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rooms")),
        sa.UniqueConstraint("facility_id", "name", name=op.f("uq_rooms_facility_id_name")),
    )
    with op.batch_alter_table("rooms", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_rooms_facility_id"), ["facility_id"], unique=False)


def _add_columns() -> None:
    with op.batch_alter_table("facilities", schema=None) as batch_op:
        for name, default in (
            ("hourly_fee_yen", "0"),
            ("min_booking_minutes", "30"),
            ("max_booking_minutes", "1440"),
            ("lead_time_minutes", "0"),
            ("horizon_days", "90"),
        ):
            batch_op.add_column(
                sa.Column(name, sa.Integer(), server_default=default, nullable=False)
            )
        batch_op.add_column(sa.Column("off_peak_from_minute", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("off_peak_until_minute", sa.Integer(), nullable=True))
        batch_op.add_column(
            sa.Column(
                "payment_method", sa.String(length=16), server_default="counter", nullable=False
            )
        )
    with op.batch_alter_table("locks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("room_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_locks_room_id_rooms"), "rooms", ["room_id"], ["id"]
        )
    with op.batch_alter_table("reservations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("room_id", sa.Integer(), nullable=True))
        batch_op.add_column(
            sa.Column("group_size", sa.Integer(), server_default="1", nullable=False)
        )
        batch_op.add_column(
            sa.Column("purpose", sa.String(length=500), server_default="", nullable=False)
        )
        batch_op.add_column(sa.Column("idempotency_key", sa.String(length=64), nullable=True))
        for name in ("decided_by", "cancelled_by", "paid_by", "refunded_by"):
            batch_op.add_column(sa.Column(name, sa.String(length=100), nullable=True))
        for name in ("decided_at", "cancelled_at", "paid_at", "refunded_at"):
            batch_op.add_column(sa.Column(name, sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("cancel_reason", sa.String(length=500), nullable=True))
        batch_op.add_column(sa.Column("fee_yen", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(
            sa.Column(
                "payment_method", sa.String(length=16), server_default="counter", nullable=False
            )
        )
        batch_op.add_column(
            sa.Column("payment_state", _PAYMENT_STATE, server_default="unpaid", nullable=False)
        )
    with op.batch_alter_table("access_grants", schema=None) as batch_op:
        batch_op.add_column(sa.Column("revoked_at", sa.BigInteger(), nullable=True))


def _migrate_data() -> None:
    """A room per existing lock; reservations follow their lock; open around the clock."""
    conn = op.get_bind()
    facilities = sa.table("facilities", sa.column("id", sa.Integer()))
    hours = sa.table(
        "opening_hours",
        sa.column("facility_id", sa.Integer()),
        sa.column("weekday", sa.Integer()),
        sa.column("opens_minute", sa.Integer()),
        sa.column("closes_minute", sa.Integer()),
    )
    locks = sa.table(
        "locks",
        sa.column("id", sa.Integer()),
        sa.column("lock_id", sa.String()),
        sa.column("facility_id", sa.Integer()),
        sa.column("name", sa.String()),
        sa.column("room_id", sa.Integer()),
    )
    rooms = sa.table(
        "rooms",
        sa.column("id", sa.Integer()),
        sa.column("facility_id", sa.Integer()),
        sa.column("name", sa.String()),
    )
    reservations = sa.table(
        "reservations", sa.column("lock_id", sa.Integer()), sa.column("room_id", sa.Integer())
    )
    for (facility_id,) in conn.execute(sa.select(facilities.c.id)).all():
        conn.execute(
            hours.insert(),
            [
                {"facility_id": facility_id, "weekday": d, "opens_minute": 0, "closes_minute": 1440}
                for d in range(7)
            ],
        )
    used: set[tuple[int, str]] = set()
    for lock in conn.execute(sa.select(locks).order_by(locks.c.id)).all():
        name = (
            lock.name
            if (lock.facility_id, lock.name) not in used
            else f"{lock.name} ({lock.lock_id})"
        )
        used.add((lock.facility_id, name))
        room_id = conn.execute(
            rooms.insert().values(facility_id=lock.facility_id, name=name).returning(rooms.c.id)
        ).scalar_one()
        conn.execute(locks.update().where(locks.c.id == lock.id).values(room_id=room_id))
        conn.execute(
            reservations.update().where(reservations.c.lock_id == lock.id).values(room_id=room_id)
        )


def _drop_lock_columns() -> None:
    with op.batch_alter_table("reservations", schema=None) as batch_op:
        batch_op.drop_index("ix_reservations_lock_status")
        batch_op.drop_constraint("fk_reservations_lock_id_locks", type_="foreignkey")
        batch_op.drop_column("lock_id")
        batch_op.alter_column("room_id", existing_type=sa.Integer(), nullable=False)
        batch_op.create_foreign_key(
            batch_op.f("fk_reservations_room_id_rooms"), "rooms", ["room_id"], ["id"]
        )
        batch_op.create_unique_constraint(
            batch_op.f("uq_reservations_idempotency_key"), ["idempotency_key"]
        )
        batch_op.create_index("ix_reservations_room_status", ["room_id", "status"], unique=False)
    with op.batch_alter_table("access_grants", schema=None) as batch_op:
        batch_op.drop_index("ix_access_grants_lock_window")
        batch_op.drop_constraint("fk_access_grants_lock_id_locks", type_="foreignkey")
        batch_op.drop_column("lock_id")
        batch_op.create_index("ix_access_grants_window_end", ["window_end"], unique=False)


def upgrade() -> None:
    """Upgrade schema."""
    _create_tables()
    _add_columns()
    _migrate_data()
    _drop_lock_columns()


def downgrade() -> None:
    """Downgrade schema: a grant goes back to the first lock of its room; rules are lost."""
    with op.batch_alter_table("access_grants", schema=None) as batch_op:
        batch_op.drop_index("ix_access_grants_window_end")
        batch_op.add_column(sa.Column("lock_id", sa.Integer(), nullable=True))
    with op.batch_alter_table("reservations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("lock_id", sa.Integer(), nullable=True))
    conn = op.get_bind()
    conn.execute(
        sa.text(
            "UPDATE reservations SET lock_id = (SELECT MIN(l.id) FROM locks l WHERE "
            "l.facility_id = reservations.facility_id AND "
            "(l.room_id IS NULL OR l.room_id = reservations.room_id))"
        )
    )
    conn.execute(
        sa.text(
            "UPDATE access_grants SET lock_id = (SELECT r.lock_id FROM reservations r "
            "WHERE r.id = access_grants.reservation_id)"
        )
    )
    with op.batch_alter_table("access_grants", schema=None) as batch_op:
        batch_op.alter_column("lock_id", existing_type=sa.Integer(), nullable=False)
        batch_op.drop_column("revoked_at")
        batch_op.create_foreign_key(
            batch_op.f("fk_access_grants_lock_id_locks"), "locks", ["lock_id"], ["id"]
        )
        batch_op.create_index(
            "ix_access_grants_lock_window", ["lock_id", "window_end"], unique=False
        )
    with op.batch_alter_table("reservations", schema=None) as batch_op:
        batch_op.drop_index("ix_reservations_room_status")
        batch_op.drop_constraint("uq_reservations_idempotency_key", type_="unique")
        batch_op.drop_constraint("fk_reservations_room_id_rooms", type_="foreignkey")
        for name in [
            "room_id",
            "group_size",
            "purpose",
            "idempotency_key",
            "decided_by",
            "cancelled_by",
            "paid_by",
            "refunded_by",
            "decided_at",
            "cancelled_at",
            "paid_at",
            "refunded_at",
            "cancel_reason",
            "fee_yen",
            "payment_method",
            "payment_state",
        ]:
            batch_op.drop_column(name)
        batch_op.alter_column("lock_id", existing_type=sa.Integer(), nullable=False)
        batch_op.create_foreign_key(
            batch_op.f("fk_reservations_lock_id_locks"), "locks", ["lock_id"], ["id"]
        )
        batch_op.create_index("ix_reservations_lock_status", ["lock_id", "status"], unique=False)
    with op.batch_alter_table("locks", schema=None) as batch_op:
        batch_op.drop_constraint("fk_locks_room_id_rooms", type_="foreignkey")
        batch_op.drop_column("room_id")
    with op.batch_alter_table("facilities", schema=None) as batch_op:
        for name in [
            "hourly_fee_yen",
            "min_booking_minutes",
            "max_booking_minutes",
            "lead_time_minutes",
            "horizon_days",
            "off_peak_from_minute",
            "off_peak_until_minute",
            "payment_method",
        ]:
            batch_op.drop_column(name)
    with op.batch_alter_table("rooms", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_rooms_facility_id"))
    op.drop_table("rooms")
    op.drop_table("registered_groups")
    op.drop_table("closed_days")
    op.drop_table("opening_hours")
