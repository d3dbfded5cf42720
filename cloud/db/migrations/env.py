"""Alembic environment: the URL comes from ``cloud.db.migrate`` (config attribute), the
``-x url=...`` option, ``sqlalchemy.url`` or ``DENEN_CLOUD_DATABASE_URL``."""

from __future__ import annotations

import os

from alembic import context

from cloud.db.engine import make_engine
from cloud.tables import Base

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    url = config.attributes.get("database_url") or context.get_x_argument(as_dictionary=True).get(
        "url"
    )
    url = url or config.get_main_option("sqlalchemy.url")
    url = url or os.environ.get("DENEN_CLOUD_DATABASE_URL", "sqlite:///./denen.db")
    return str(url)


def run_migrations_offline() -> None:
    context.configure(url=_url(), target_metadata=target_metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = make_engine(_url())
    try:
        with engine.connect() as connection:
            sqlite = connection.dialect.name == "sqlite"
            if sqlite:
                # SQLite's documented way to rebuild a table (batch mode does): foreign keys
                # off outside the transaction, then check them before committing
                connection.connection.driver_connection.execute("PRAGMA foreign_keys=OFF")  # type: ignore[union-attr]
            context.configure(
                connection=connection, target_metadata=target_metadata, render_as_batch=True
            )
            with context.begin_transaction():
                context.run_migrations()
                if sqlite:
                    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").all()
                    if broken:
                        raise RuntimeError(f"the migration broke foreign keys: {broken[:5]}")
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
