"""The agent's local state in SQLite: the latest access snapshot and what each lock holds.

``lock_slots`` keeps, per lock and slot, what the agent last wrote and confirmed: grant,
window, PIN tag (the lock never reports tags back) and when it was loaded. The sync policy
diffs against it, and ``access/applied`` reports "on the lock since" from it.

WAL with ``synchronous=FULL``: a snapshot the agent said it stored survives a power cut,
so a site with no internet keeps loading its locks from what it last received.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from edge.errors import StoreError
from edge.sync_policy import HeldSlot
from protocol.messages import AccessSnapshotData, DisplayStateData, LockAccess

_SCHEMA = """
CREATE TABLE IF NOT EXISTS snapshot (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    version INTEGER NOT NULL,
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS display_state (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    version INTEGER NOT NULL,
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS applied (
    lock_id TEXT PRIMARY KEY,
    version INTEGER NOT NULL,
    grant_ids TEXT NOT NULL,
    applied_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS lock_slots (
    lock_id TEXT NOT NULL,
    slot INTEGER NOT NULL,
    grant_id TEXT,
    start INTEGER NOT NULL,
    "end" INTEGER NOT NULL,
    tag BLOB NOT NULL,
    loaded_at INTEGER,
    PRIMARY KEY (lock_id, slot)
);
"""


def connect_durable(path: Path) -> sqlite3.Connection:
    """A connection in WAL mode whose every commit is fsynced."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # isolation_level=None: we issue BEGIN/COMMIT ourselves, one transaction per call
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    return conn


@dataclass(frozen=True, slots=True)
class AppliedState:
    lock_id: str
    version: int
    grant_ids: list[str]
    applied_at: float


class Store:
    """Snapshot and per-lock applied state. ``open()`` before use, ``close()`` after."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn: sqlite3.Connection | None = None

    def open(self) -> None:
        """Open (and create) the database."""
        try:
            self._conn = connect_durable(self.path)
            self._conn.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the state store {self.path}: {exc}") from exc

    def close(self) -> None:
        """Close the database; safe to call twice."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    @property
    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError("the state store is not open")
        return self._conn

    def save_snapshot(self, snapshot: AccessSnapshotData) -> bool:
        """Keep ``snapshot`` if it is newer than the stored one; return whether it was."""
        try:
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")
                row = self._db.execute("SELECT version FROM snapshot WHERE id = 1").fetchone()
                if row is not None and row[0] >= snapshot.version:
                    return False
                self._db.execute(
                    "INSERT OR REPLACE INTO snapshot (id, version, body) VALUES (1, ?, ?)",
                    (snapshot.version, snapshot.model_dump_json()),
                )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot store the access snapshot: {exc}") from exc
        return True

    def snapshot(self) -> AccessSnapshotData | None:
        """The stored snapshot, or ``None`` before the first one arrived."""
        row = self._db.execute("SELECT body FROM snapshot WHERE id = 1").fetchone()
        return None if row is None else AccessSnapshotData.model_validate_json(row[0])

    def save_display_state(self, state: DisplayStateData) -> bool:
        """Keep ``state`` if it is newer than the stored one; return whether it was."""
        try:
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")
                row = self._db.execute("SELECT version FROM display_state WHERE id = 1").fetchone()
                if row is not None and row[0] >= state.version:
                    return False
                self._db.execute(
                    "INSERT OR REPLACE INTO display_state (id, version, body) VALUES (1, ?, ?)",
                    (state.version, state.model_dump_json()),
                )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot store the display state: {exc}") from exc
        return True

    def display_state(self) -> DisplayStateData | None:
        """The stored display state, or ``None`` before the first one arrived."""
        try:
            row = self._db.execute("SELECT body FROM display_state WHERE id = 1").fetchone()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read the display state: {exc}") from exc
        return None if row is None else DisplayStateData.model_validate_json(row[0])

    def lock_access(self, lock_id: str) -> tuple[int, LockAccess] | None:
        """The stored snapshot's version and this lock's part (empty when not listed)."""
        snap = self.snapshot()
        if snap is None:
            return None
        for lock in snap.locks:
            if lock.lock_id == lock_id:
                return snap.version, lock
        return snap.version, LockAccess(lock_id=lock_id)

    def set_applied(self, lock_id: str, version: int, grant_ids: list[str], at: float) -> None:
        """Record what a lock holds after a confirmed sync."""
        try:
            with self._db:
                self._db.execute(
                    "INSERT OR REPLACE INTO applied (lock_id, version, grant_ids, applied_at)"
                    " VALUES (?, ?, ?, ?)",
                    (lock_id, version, json.dumps(grant_ids), at),
                )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot record the state of lock {lock_id}: {exc}") from exc

    def applied(self, lock_id: str) -> AppliedState | None:
        """What a lock held after its last confirmed sync."""
        row = self._db.execute(
            "SELECT version, grant_ids, applied_at FROM applied WHERE lock_id = ?", (lock_id,)
        ).fetchone()
        if row is None:
            return None
        return AppliedState(lock_id, int(row[0]), list(json.loads(row[1])), float(row[2]))

    def record_sync(self, lock_id: str, version: int, slots: list[HeldSlot], at: float) -> None:
        """Record, in one transaction, the version and exact slots a lock holds after a
        confirmed sync."""
        grant_ids = [h.grant_id for h in slots if h.grant_id is not None]
        rows = [
            (lock_id, h.slot, h.grant_id, h.start, h.end, h.tag or b"", h.loaded_at) for h in slots
        ]
        try:
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.execute(
                    "INSERT OR REPLACE INTO applied (lock_id, version, grant_ids, applied_at)"
                    " VALUES (?, ?, ?, ?)",
                    (lock_id, version, json.dumps(grant_ids), at),
                )
                self._db.execute("DELETE FROM lock_slots WHERE lock_id = ?", (lock_id,))
                self._db.executemany(
                    "INSERT INTO lock_slots"
                    ' (lock_id, slot, grant_id, start, "end", tag, loaded_at)'
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    rows,
                )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot record the slots of lock {lock_id}: {exc}") from exc

    def held_slots(self, lock_id: str) -> list[HeldSlot]:
        """The slots of ``lock_id`` as of its last confirmed sync, by slot number."""
        try:
            rows = self._db.execute(
                'SELECT slot, grant_id, start, "end", tag, loaded_at FROM lock_slots'
                " WHERE lock_id = ? ORDER BY slot",
                (lock_id,),
            ).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read the slots of lock {lock_id}: {exc}") from exc
        return [
            HeldSlot(
                int(slot),
                grant_id,
                int(start),
                int(end),
                bytes(tag) or None,
                None if loaded_at is None else int(loaded_at),
            )
            for slot, grant_id, start, end, tag, loaded_at in rows
        ]
