"""Where a piece of personal data still is: every row of every table of the database, and
on SQLite the bytes of its files (a deleted row can linger in free pages and in the
write-ahead log)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import MetaData, select
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker


def tables_holding(sessions: sessionmaker[Session], needle: str) -> dict[str, int]:
    """Per table, how many rows hold ``needle`` (any case) in any column."""
    wanted = needle.lower()
    found: dict[str, int] = {}
    with sessions() as session:
        meta = MetaData()
        meta.reflect(bind=session.get_bind())
        for table in meta.sorted_tables:
            hits = sum(
                any(wanted in str(value).lower() for value in row)
                for row in session.execute(select(table))
            )
            if hits:
                found[table.name] = hits
    return found


def sqlite_files_holding(url: str, needle: str) -> list[str]:
    """The files of a SQLite database (main, -wal, -journal) whose bytes hold ``needle``
    (UTF-8); empty for another database."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return []
    main = Path(parsed.database)
    files = [main, *(main.with_name(main.name + suffix) for suffix in ("-wal", "-journal"))]
    raw = needle.encode()
    return [f.name for f in files if f.exists() and raw in f.read_bytes()]
