"""The clinic desk's state in SQLite: the day's clinic state, the queues the agent runs
while the internet is down, card tags, open requests and kiosk screens.

WAL with ``synchronous=FULL`` (like :mod:`edge.store`): a number the kiosk showed survives
a power cut, so an agent restarted in the middle of an outage never issues it again.
``secure_delete`` is on and the end-of-day purge truncates the WAL: the day's data leaves
no copy in the files.

What is kept, and for how long
    Never a card number (that lives only in an outbox row until the broker has it) and
    never a name. A card appears as its tag under the day's key (``cards``), which is
    worthless tomorrow. Everything of a day is deleted when the Asia/Tokyo day ends
    (:meth:`DayStore.purge`), except the journal of local events that have not reached the
    outbox yet (ticket numbers and times only: the cloud must still learn of them).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge.errors import StoreError
from edge.store import connect_durable
from protocol.messages import ClinicStateData

_SCHEMA = """
CREATE TABLE IF NOT EXISTS clinic_state (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    version INTEGER NOT NULL,
    day TEXT NOT NULL,
    synthetic INTEGER NOT NULL,  -- 1: made by the agent at midnight, not sent by the cloud
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS desk (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    day TEXT,                    -- the Asia/Tokyo day the day's rows belong to
    local_body TEXT,             -- the queues this agent runs; NULL: the cloud runs them
    last_local_event TEXT,       -- the newest event made while running them
    last_event TEXT,             -- the newest id made (event or request): ids only grow
    display_seq INTEGER NOT NULL DEFAULT 0  -- local display state versions, never reused
);
INSERT OR IGNORE INTO desk (id) VALUES (1);
CREATE TABLE IF NOT EXISTS cards (
    tag TEXT PRIMARY KEY,        -- the card under the day's key, never the card number
    number TEXT,                 -- its ticket today; NULL while the cloud has not answered
    department TEXT,
    request_id TEXT,
    at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS requests (
    request_id TEXT PRIMARY KEY, -- the envelope id of a check-in or action sent online
    kind TEXT NOT NULL,
    kiosk TEXT,
    tag TEXT,
    created_at REAL NOT NULL,
    delivered INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS journal (
    event_id TEXT PRIMARY KEY,   -- a local event on its way to the outbox (no card number)
    body BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS screens (
    kiosk TEXT PRIMARY KEY,
    body TEXT NOT NULL
);
"""


@dataclass(frozen=True, slots=True)
class DeskRecord:
    day: str | None
    local: ClinicStateData | None
    last_local_event: str | None
    last_event: str | None


@dataclass(frozen=True, slots=True)
class CardRecord:
    tag: str
    number: str | None
    department: str | None
    request_id: str | None


@dataclass(frozen=True, slots=True)
class OpenRequest:
    request_id: str
    kind: str  # "checkin" or "action"
    kiosk: str | None
    tag: str | None
    delivered: bool


class DayStore:
    """``open()`` before use, ``close()`` after; group writes with :meth:`transaction`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn: sqlite3.Connection | None = None
        self._depth = 0

    def open(self) -> None:
        try:
            self._conn = connect_durable(self.path)
            self._conn.execute("PRAGMA secure_delete=ON")
            self._conn.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the clinic day store {self.path}: {exc}") from exc

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    @property
    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError("the clinic day store is not open")
        return self._conn

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One durable transaction around the writes inside (nested blocks join it)."""
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot write the clinic day store: {exc}") from exc
        self._depth = 1
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        else:
            try:
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._db.execute("ROLLBACK")
                raise StoreError(f"cannot write the clinic day store: {exc}") from exc
        finally:
            self._depth = 0

    def _write(self, sql: str, args: tuple[object, ...] = ()) -> int:
        try:
            with self.transaction():
                return self._db.execute(sql, args).rowcount
        except sqlite3.Error as exc:
            raise StoreError(f"cannot write the clinic day store: {exc}") from exc

    def _read(self, sql: str, args: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
        try:
            return list(self._db.execute(sql, args).fetchall())
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read the clinic day store: {exc}") from exc

    # ------------------------------------------------------------ the cloud's state

    def clinic_state(self) -> tuple[ClinicStateData, bool] | None:
        """The stored state and whether the agent made it (at midnight), or ``None``."""
        rows = self._read("SELECT body, synthetic FROM clinic_state WHERE id = 1")
        if not rows:
            return None
        return ClinicStateData.model_validate_json(str(rows[0][0])), bool(rows[0][1])

    def save_clinic_state(self, state: ClinicStateData, *, synthetic: bool = False) -> None:
        self._write(
            "INSERT OR REPLACE INTO clinic_state (id, version, day, synthetic, body)"
            " VALUES (1, ?, ?, ?, ?)",
            (state.version, state.day, int(synthetic), state.model_dump_json()),
        )

    # ------------------------------------------------------------ the desk

    def desk(self) -> DeskRecord:
        day, body, last_local, last = self._read(
            "SELECT day, local_body, last_local_event, last_event FROM desk WHERE id = 1"
        )[0]
        local = None if body is None else ClinicStateData.model_validate_json(str(body))
        return DeskRecord(
            None if day is None else str(day),
            local,
            None if last_local is None else str(last_local),
            None if last is None else str(last),
        )

    def set_day(self, day: str) -> None:
        self._write("UPDATE desk SET day = ? WHERE id = 1", (day,))

    def set_local(self, local: ClinicStateData | None, last_local_event: str | None) -> None:
        """The queues the agent runs (``None``: the cloud runs them again)."""
        body = None if local is None else local.model_dump_json()
        self._write(
            "UPDATE desk SET local_body = ?, last_local_event = ? WHERE id = 1",
            (body, last_local_event),
        )

    def set_last_event(self, event_id: str) -> None:
        self._write("UPDATE desk SET last_event = ? WHERE id = 1", (event_id,))

    def next_display_seq(self) -> int:
        with self.transaction():
            self._write("UPDATE desk SET display_seq = display_seq + 1 WHERE id = 1")
            return int(self._read("SELECT display_seq FROM desk WHERE id = 1")[0][0])

    # ------------------------------------------------------------ cards

    def card(self, tag: str) -> CardRecord | None:
        rows = self._read("SELECT number, department, request_id FROM cards WHERE tag = ?", (tag,))
        if not rows:
            return None
        number, department, request_id = rows[0]
        return CardRecord(
            tag,
            None if number is None else str(number),
            None if department is None else str(department),
            None if request_id is None else str(request_id),
        )

    def set_card(
        self,
        tag: str,
        *,
        number: str | None,
        department: str | None,
        request_id: str | None,
        at: float,
    ) -> None:
        self._write(
            "INSERT OR REPLACE INTO cards (tag, number, department, request_id, at)"
            " VALUES (?, ?, ?, ?, ?)",
            (tag, number, department, request_id, at),
        )

    def forget_card(self, tag: str) -> None:
        self._write("DELETE FROM cards WHERE tag = ?", (tag,))

    # ------------------------------------------------------------ open requests

    def add_request(
        self, request_id: str, kind: str, *, kiosk: str | None, tag: str | None, at: float
    ) -> None:
        self._write(
            "INSERT INTO requests (request_id, kind, kiosk, tag, created_at)"
            " VALUES (?, ?, ?, ?, ?)",
            (request_id, kind, kiosk, tag, at),
        )

    def requests(self) -> list[OpenRequest]:
        """Every request still waiting for the cloud's answer, oldest first."""
        rows = self._read(
            "SELECT request_id, kind, kiosk, tag, delivered FROM requests ORDER BY request_id"
        )
        return [
            OpenRequest(
                str(r[0]),
                str(r[1]),
                None if r[2] is None else str(r[2]),
                None if r[3] is None else str(r[3]),
                bool(r[4]),
            )
            for r in rows
        ]

    def request(self, request_id: str) -> OpenRequest | None:
        for req in self.requests():
            if req.request_id == request_id:
                return req
        return None

    def mark_delivered(self, request_id: str) -> None:
        self._write("UPDATE requests SET delivered = 1 WHERE request_id = ?", (request_id,))

    def drop_request(self, request_id: str) -> None:
        self._write("DELETE FROM requests WHERE request_id = ?", (request_id,))

    # ------------------------------------------------------------ journal

    def journal_add(self, event_id: str, body: bytes) -> None:
        self._write(
            "INSERT OR IGNORE INTO journal (event_id, body) VALUES (?, ?)", (event_id, body)
        )

    def journal(self) -> list[tuple[str, bytes]]:
        """Local events not yet handed to the outbox, in the order they were made."""
        rows = self._read("SELECT event_id, body FROM journal ORDER BY event_id")
        return [(str(r[0]), bytes(r[1])) for r in rows]

    def journal_drop(self, event_id: str) -> None:
        self._write("DELETE FROM journal WHERE event_id = ?", (event_id,))

    # ------------------------------------------------------------ kiosk screens

    def screen(self, kiosk: str) -> str | None:
        rows = self._read("SELECT body FROM screens WHERE kiosk = ?", (kiosk,))
        return None if not rows else str(rows[0][0])

    def set_screen(self, kiosk: str, body: str) -> None:
        self._write("INSERT OR REPLACE INTO screens (kiosk, body) VALUES (?, ?)", (kiosk, body))

    # ------------------------------------------------------------ end of day

    def purge(
        self, today: str, *, state: ClinicStateData | None, local: ClinicStateData | None
    ) -> None:
        """Delete every row of the days before ``today``; keep ``state`` and ``local``
        (the next day's skeletons: departments and displays, no tickets, no tags)."""
        with self.transaction():
            for table in ("cards", "requests", "screens", "clinic_state"):
                self._write(f"DELETE FROM {table}")  # noqa: S608 - fixed names
            if state is not None:
                self.save_clinic_state(state, synthetic=True)
            self._write(
                "UPDATE desk SET day = ?, local_body = ? WHERE id = 1",
                (today, None if local is None else local.model_dump_json()),
            )
        try:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot scrub the clinic day store: {exc}") from exc
