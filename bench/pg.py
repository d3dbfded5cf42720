"""A fresh PostgreSQL database for a bench run, dropped afterwards.

The server is ``DENEN_BENCH_POSTGRES_URL`` (default: the test server on 127.0.0.1:5432,
database ``test``, used only to create and drop ``denen_bench_…``)."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator

import psycopg
from psycopg import sql
from sqlalchemy.engine import make_url

POSTGRES_URL = os.environ.get(
    "DENEN_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def psycopg_dsn(url: str) -> str:
    """``url`` (SQLAlchemy's form) as psycopg takes it."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@contextlib.contextmanager
def bench_database() -> Iterator[str]:
    """The SQLAlchemy URL of a new, empty database; dropped (connections closed) after."""
    name = f"denen_bench_{secrets.token_hex(5)}"
    with psycopg.connect(psycopg_dsn(POSTGRES_URL), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(psycopg_dsn(POSTGRES_URL), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
