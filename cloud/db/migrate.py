"""Run the Alembic migrations programmatically (called on start-up)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

MIGRATIONS = Path(__file__).with_name("migrations")


def alembic_config(url: str, secret_key: str | None = None) -> Config:
    """An Alembic config pointing at our migrations and at ``url``; ``secret_key`` for
    a migration that seals data with it (0010 encrypts stored PINs)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    # passed as an attribute, not an option: ConfigParser would choke on "%" in a URL
    cfg.attributes["database_url"] = url
    cfg.attributes["secret_key"] = secret_key
    return cfg


def migrate(url: str, secret_key: str | None = None) -> None:
    """Bring the database at ``url`` to the newest schema (``alembic upgrade head``)."""
    command.upgrade(alembic_config(url, secret_key), "head")
