"""Migrated databases made fast: migrate a template once per module, then give each test a
copy (a file copy on SQLite, ``CREATE DATABASE … TEMPLATE`` on PostgreSQL), which takes a
fraction of the time a migration does."""

from __future__ import annotations

import contextlib
import secrets
import shutil
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql
from sqlalchemy.engine import make_url

from cloud.db import migrate
from tests.conftest import POSTGRES_URL


@dataclass(frozen=True)
class Template:
    kind: str
    location: str  # a file path (sqlite) or a database name (postgresql)


def _admin_dsn() -> str:
    return make_url(POSTGRES_URL).set(drivername="postgresql").render_as_string(hide_password=False)


@contextlib.contextmanager
def migrated_template(kind: str, tmp_path: Path) -> Iterator[Template]:
    """A database at the newest schema to copy from, dropped afterwards."""
    if kind == "sqlite":
        path = tmp_path / "template.db"
        migrate(f"sqlite:///{path}")
        with contextlib.closing(sqlite3.connect(path)) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            conn.execute("PRAGMA journal_mode=DELETE")  # one self-contained file to copy
        yield Template(kind, str(path))
        return
    name = f"denen_tpl_{secrets.token_hex(6)}"
    with psycopg.connect(_admin_dsn(), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        migrate(make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False))
        yield Template(kind, name)
    finally:
        with psycopg.connect(_admin_dsn(), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


@contextlib.contextmanager
def copy_of(template: Template, tmp_path: Path) -> Iterator[str]:
    """The URL of a fresh copy of ``template``, dropped afterwards."""
    if template.kind == "sqlite":
        path = tmp_path / "copy.db"
        shutil.copyfile(template.location, path)
        yield f"sqlite:///{path}"
        return
    name = f"denen_t_{secrets.token_hex(6)}"
    with psycopg.connect(_admin_dsn(), autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(template.location)
            )
        )
    try:
        yield make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(_admin_dsn(), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
