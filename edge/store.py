"""The agent's local state in SQLite: the latest access snapshot and what each lock holds,
grants revoked by a fleet command, the replies to commands, and the agent config twin.

``lock_slots`` keeps, per lock and slot, what the agent last wrote and confirmed: grant,
window, PIN tag (the lock never reports tags back) and when it was loaded. The sync policy
diffs against it, and ``access/applied`` reports "on the lock since" from it.

``revoked_grants`` holds grants a ``revoke-pin`` command took off a lock before the cloud's
next snapshot did: :meth:`Store.lock_access` leaves them out of every snapshot until their
window has ended. ``commands`` keeps each command's reply by transaction, so a command
delivered twice is answered twice with the same reply and carried out once.

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
from protocol.messages import AccessSnapshotData, AgentConfigData, DisplayStateData, LockAccess

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
CREATE TABLE IF NOT EXISTS revoked_grants (
    lock_id TEXT NOT NULL,
    grant_id TEXT NOT NULL,
    until REAL NOT NULL,
    revoked_at REAL NOT NULL,
    PRIMARY KEY (lock_id, grant_id)
);
CREATE TABLE IF NOT EXISTS commands (
    txn TEXT PRIMARY KEY,
    verb TEXT NOT NULL,
    reply BLOB NOT NULL,
    keep_until REAL NOT NULL,
    handled_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS agent_config (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    version INTEGER NOT NULL,
    body TEXT NOT NULL
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
        """The stored snapshot's version and this lock's part (empty when not listed),
        without the grants a fleet command revoked on this lock."""
        snap = self.snapshot()
        if snap is None:
            return None
        for lock in snap.locks:
            if lock.lock_id == lock_id:
                revoked = self.revoked_grants(lock_id)
                if revoked and any(g.grant_id in revoked for g in lock.grants):
                    kept = [g for g in lock.grants if g.grant_id not in revoked]
                    return snap.version, lock.model_copy(update={"grants": kept})
                return snap.version, lock
        return snap.version, LockAccess(lock_id=lock_id)

    # ------------------------------------------------------------ fleet commands

    def revoke_grant(self, lock_id: str, grant_id: str, *, until: float, at: float) -> None:
        """Keep ``grant_id`` off ``lock_id`` until ``until`` (its window's end), whatever a
        snapshot says; revocations past their end are forgotten."""
        try:
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.execute("DELETE FROM revoked_grants WHERE until <= ?", (at,))
                self._db.execute(
                    "INSERT OR REPLACE INTO revoked_grants (lock_id, grant_id, until, revoked_at)"
                    " VALUES (?, ?, ?, ?)",
                    (lock_id, grant_id, until, at),
                )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot record the revocation on lock {lock_id}: {exc}") from exc

    def revoked_grants(self, lock_id: str) -> set[str]:
        """The grant ids revoked on ``lock_id`` by a command."""
        try:
            rows = self._db.execute(
                "SELECT grant_id FROM revoked_grants WHERE lock_id = ?", (lock_id,)
            ).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read the revocations of lock {lock_id}: {exc}") from exc
        return {str(r[0]) for r in rows}

    def command_reply(self, transaction: str) -> bytes | None:
        """The reply stored for ``transaction``, or ``None`` when it was never handled."""
        try:
            row = self._db.execute(
                "SELECT reply FROM commands WHERE txn = ?", (transaction,)
            ).fetchone()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read the command replies: {exc}") from exc
        return None if row is None else bytes(row[0])

    def record_command(
        self, transaction: str, verb: str, reply: bytes, *, keep_until: float, at: float
    ) -> None:
        """Remember the reply to ``transaction`` until ``keep_until``; forget older ones."""
        try:
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.execute("DELETE FROM commands WHERE keep_until < ?", (at,))
                self._db.execute(
                    "INSERT OR REPLACE INTO commands (txn, verb, reply, keep_until, handled_at)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (transaction, verb, reply, keep_until, at),
                )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot record the reply to a command: {exc}") from exc

    def save_agent_config(self, config: AgentConfigData) -> bool:
        """Keep ``config`` if it is newer than the stored one; return whether it was."""
        try:
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")
                row = self._db.execute("SELECT version FROM agent_config WHERE id = 1").fetchone()
                if row is not None and row[0] >= config.version:
                    return False
                self._db.execute(
                    "INSERT OR REPLACE INTO agent_config (id, version, body) VALUES (1, ?, ?)",
                    (config.version, config.model_dump_json()),
                )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot store the agent config: {exc}") from exc
        return True

    def agent_config(self) -> AgentConfigData | None:
        """The agent config applied last, or ``None`` before the first one."""
        try:
            row = self._db.execute("SELECT body FROM agent_config WHERE id = 1").fetchone()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read the agent config: {exc}") from exc
        return None if row is None else AgentConfigData.model_validate_json(row[0])

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
