"""Lock events into the audit log, idempotently: ``(lock_id, seq)`` is stored once.

An event of an offline PIN (no slot; its short id in ``value``) is stored with the grant
of the code it names (:func:`~cloud.gym.offline_pins.attribute_offline_events`), so
the audit log and no-show detection treat it like a slot PIN's."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.dialects import sqlite
from sqlalchemy.orm import Session, sessionmaker

from cloud.gym.models import LockEvent
from cloud.gym.offline_pins import attribute_offline_events
from protocol.clock import Clock
from protocol.messages import LockEventData

# PostgreSQL: the batch as one array per column, unnested into rows: one short statement
# whatever the batch size. SQLAlchemy's multi-row VALUES (8 parameters per event) made the
# driver render and re-parse a new statement per batch: 20-65 ms of CPU for 1,000 events
# against 2.3 ms this way (measured on PostgreSQL 15 here)
_COLUMNS = ("lock_id", "seq", "lock_ts", "kind", "grant_id", "slot", "value", "received_at")
_PG_INSERT = """
INSERT INTO lock_events (lock_id, seq, lock_ts, kind, grant_id, slot, value, received_at)
SELECT * FROM unnest(
    %s::text[], %s::int8[], %s::int8[], %s::text[], %s::text[], %s::int4[], %s::int8[], %s::int8[]
)
ON CONFLICT (lock_id, seq) DO NOTHING
RETURNING id
"""


class EventService:
    """Store lock events; a redelivered event is a no-op."""

    def __init__(self, sessions: sessionmaker[Session], clock: Clock) -> None:
        self._sessions = sessions
        self._clock = clock

    def ingest(self, event: LockEventData) -> bool:
        """Store one event; False when it was stored before."""
        return self.ingest_batch([event]) == 1

    def ingest_batch(self, events: Sequence[LockEventData]) -> int:
        """Store many events in one transaction; return how many were new."""
        if not events:
            return 0
        now = int(self._clock.now())
        rows: dict[tuple[str, int], dict[str, Any]] = {}
        for e in events:
            rows.setdefault(
                (e.lock_id, e.seq),
                {
                    "lock_id": e.lock_id,
                    "seq": e.seq,
                    "lock_ts": e.lock_ts,
                    "kind": e.kind.value,
                    "grant_id": e.grant_id,
                    "slot": e.slot,
                    "value": e.value,
                    "received_at": now,
                },
            )
        with self._sessions.begin() as session:
            # an offline code's events carry its short id, not a grant: name the grant here
            attribute_offline_events(session, list(rows.values()))
            dialect = session.get_bind().dialect.name
            if dialect == "postgresql":
                columns = tuple([row[name] for row in rows.values()] for name in _COLUMNS)
                return len(session.connection().exec_driver_sql(_PG_INSERT, columns).all())
            stmt = (
                sqlite.insert(LockEvent)
                .on_conflict_do_nothing(index_elements=["lock_id", "seq"])
                .returning(LockEvent.id)
            )
            result = session.connection().execute(stmt, list(rows.values()))
            return len(result.all())
