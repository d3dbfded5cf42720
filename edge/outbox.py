"""The durable outbox: what the agent must publish, kept on disk until the broker's PUBACK.

SQLite in WAL mode with ``synchronous=FULL``: once ``add`` returned, the row survives a
power cut. ``dedupe_key`` is UNIQUE, and a delivered key is remembered for
``remember_delivered_s`` so a lock event read twice (the agent crashed between storing it
and acknowledging it to the lock) is published once.

A row added with ``sensitive=True`` (a check-in carries the patient's card number) is
the only place the agent keeps that number at rest: when it leaves the outbox (delivered
or withdrawn) it is overwritten (``secure_delete``) and the WAL is truncated, so no copy
stays in the files.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from edge.errors import OutboxError
from edge.store import connect_durable

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    qos INTEGER NOT NULL,
    dedupe_key TEXT NOT NULL UNIQUE,
    created_at REAL NOT NULL,
    sensitive INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS delivered (
    dedupe_key TEXT PRIMARY KEY,
    delivered_at REAL NOT NULL
);
"""
PAGE_SIZE = 4096
log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class OutboxRow:
    id: int
    topic: str
    payload: bytes
    qos: int
    dedupe_key: str


class Outbox:
    """``add`` / ``peek`` / ``remove`` / ``depth``; ``wakeup`` is set whenever a row is added.

    ``max_bytes`` caps the database file (an SD card must not fill up with telemetry of a
    week offline); past it ``add`` raises :class:`OutboxError` and stores nothing.
    """

    def __init__(
        self,
        path: Path,
        *,
        max_bytes: int | None = None,
        remember_delivered_s: float = 7 * 24 * 3600,
    ) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.remember_delivered_s = remember_delivered_s
        self.wakeup = asyncio.Event()
        self._conn: sqlite3.Connection | None = None

    def open(self, *, now: float = 0.0) -> None:
        """Open (and create) the database and forget deliveries older than the window."""
        try:
            self._conn = connect_durable(self.path)
            self._conn.execute("PRAGMA secure_delete=ON")
            self._conn.executescript(_SCHEMA)
            columns = {r[1] for r in self._conn.execute("PRAGMA table_info(outbox)")}
            if "sensitive" not in columns:  # an outbox made before check-ins existed
                self._conn.execute(
                    "ALTER TABLE outbox ADD COLUMN sensitive INTEGER NOT NULL DEFAULT 0"
                )
            if self.max_bytes is not None:
                self._conn.execute(f"PRAGMA max_page_count={max(self.max_bytes // PAGE_SIZE, 8)}")
            if now:
                self._conn.execute(
                    "DELETE FROM delivered WHERE delivered_at < ?",
                    (now - self.remember_delivered_s,),
                )
        except sqlite3.Error as exc:
            raise OutboxError(f"cannot open the outbox {self.path}: {exc}") from exc
        if self.depth():
            self.wakeup.set()

    def close(self) -> None:
        """Close the database; safe to call twice."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    @property
    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise OutboxError("the outbox is not open")
        return self._conn

    def add(
        self,
        topic: str,
        payload: bytes,
        dedupe_key: str,
        *,
        qos: int = 1,
        now: float = 0.0,
        sensitive: bool = False,
    ) -> bool:
        """Store a message durably; ``False`` when ``dedupe_key`` was already seen.

        ``sensitive``: the payload holds personal data (a card number) that must leave no
        trace in the files once the row is gone.

        Raises :class:`OutboxError` (disk full, I/O error) after rolling back: nothing was
        stored, so the caller must keep its data (and not acknowledge it to a lock).
        """
        try:
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")
                seen = self._db.execute(
                    "SELECT 1 FROM delivered WHERE dedupe_key = ?", (dedupe_key,)
                ).fetchone()
                if seen is not None:
                    return False
                cur = self._db.execute(
                    "INSERT OR IGNORE INTO outbox"
                    " (topic, payload, qos, dedupe_key, created_at, sensitive)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (topic, payload, qos, dedupe_key, now, int(sensitive)),
                )
        except sqlite3.Error as exc:
            raise OutboxError(f"cannot store an outgoing message ({_reason(exc)})") from exc
        if cur.rowcount:
            self.wakeup.set()
        return bool(cur.rowcount)

    def peek(self, n: int = 1) -> list[OutboxRow]:
        """The ``n`` oldest rows, in the order they were added."""
        try:
            rows = self._db.execute(
                "SELECT id, topic, payload, qos, dedupe_key FROM outbox ORDER BY id LIMIT ?",
                (n,),
            ).fetchall()
        except sqlite3.Error as exc:
            raise OutboxError(f"cannot read the outbox ({_reason(exc)})") from exc
        return [OutboxRow(int(r[0]), str(r[1]), bytes(r[2]), int(r[3]), str(r[4])) for r in rows]

    def remove(self, row_id: int, *, now: float = 0.0) -> None:
        """Delete a row the broker acknowledged, remembering its key as delivered."""
        try:
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")
                row = self._db.execute(
                    "SELECT dedupe_key, sensitive FROM outbox WHERE id = ?", (row_id,)
                ).fetchone()
                if row is None:
                    return
                self._db.execute(
                    "INSERT OR REPLACE INTO delivered (dedupe_key, delivered_at) VALUES (?, ?)",
                    (row[0], now),
                )
                self._db.execute("DELETE FROM outbox WHERE id = ?", (row_id,))
        except sqlite3.Error as exc:
            # the row stays and is published again: a duplicate the cloud ignores
            raise OutboxError(f"cannot delete a delivered message ({_reason(exc)})") from exc
        if row[1]:
            self._scrub()

    def withdraw(self, dedupe_key: str) -> OutboxRow | None:
        """Take back a row the broker has not acknowledged: delete it and return it.

        ``None`` when it is no longer there (it was delivered, or never added). Atomic
        with respect to :meth:`remove`: a row is either withdrawn or delivered, never both,
        so the caller may do locally what the row asked the cloud to do. The key is not
        remembered as delivered: nothing was.
        """
        try:
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")
                row = self._db.execute(
                    "SELECT id, topic, payload, qos, dedupe_key, sensitive FROM outbox"
                    " WHERE dedupe_key = ?",
                    (dedupe_key,),
                ).fetchone()
                if row is None:
                    return None
                self._db.execute("DELETE FROM outbox WHERE id = ?", (row[0],))
        except sqlite3.Error as exc:
            raise OutboxError(f"cannot withdraw a message ({_reason(exc)})") from exc
        if row[5]:
            self._scrub()
        return OutboxRow(int(row[0]), str(row[1]), bytes(row[2]), int(row[3]), str(row[4]))

    def _scrub(self) -> None:
        # secure_delete zeroed the row in the database pages; the WAL still holds the
        # frames that wrote it until it is checkpointed and cut back to nothing
        try:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error as exc:
            # the row is gone already; the next scrub or SQLite's own checkpoint clears it
            log.warning("could not truncate the outbox WAL (%s)", _reason(exc))

    def depth(self) -> int:
        """How many rows wait for the broker."""
        try:
            return int(self._db.execute("SELECT count(*) FROM outbox").fetchone()[0])
        except sqlite3.Error as exc:
            raise OutboxError(f"cannot read the outbox ({_reason(exc)})") from exc

    def oldest_created_at(self) -> float | None:
        """When the oldest waiting row was added; ``None`` when nothing waits."""
        try:
            row = self._db.execute("SELECT min(created_at) FROM outbox").fetchone()
        except sqlite3.Error as exc:
            raise OutboxError(f"cannot read the outbox ({_reason(exc)})") from exc
        return None if row is None or row[0] is None else float(row[0])

    def waiting(self, dedupe_key: str) -> bool:
        """True while a message with this key waits for the broker's acknowledgement."""
        try:
            row = self._db.execute(
                "SELECT 1 FROM outbox WHERE dedupe_key = ?", (dedupe_key,)
            ).fetchone()
        except sqlite3.Error as exc:
            raise OutboxError(f"cannot read the outbox ({_reason(exc)})") from exc
        return row is not None

    def knows(self, dedupe_key: str) -> bool:
        """True when a message with this key is waiting or was delivered."""
        for table in ("outbox", "delivered"):
            row = self._db.execute(
                f"SELECT 1 FROM {table} WHERE dedupe_key = ?",  # noqa: S608 - fixed names
                (dedupe_key,),
            ).fetchone()
            if row is not None:
                return True
        return False


def _reason(exc: sqlite3.Error) -> str:
    if isinstance(exc, sqlite3.OperationalError) and "full" in str(exc):
        return "the disk or the outbox size limit is full; nothing was stored"
    return str(exc)
