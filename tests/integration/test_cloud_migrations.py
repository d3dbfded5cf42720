"""The Alembic migrations build exactly the schema the models declare."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from cloud.db import Base, make_engine, migrate
from tests.support.cloud import DB_KINDS, fresh_database


@pytest.mark.parametrize("kind", DB_KINDS)
def test_upgrade_head_matches_the_models(kind: str, tmp_path: Path) -> None:
    with fresh_database(kind, tmp_path) as url:
        migrate(url)
        migrate(url)  # a second start-up is a no-op
        engine = make_engine(url)
        try:
            with engine.connect() as conn:
                context = MigrationContext.configure(conn, opts={"compare_type": True})
                assert compare_metadata(context, Base.metadata) == []
                tables = set(inspect(conn).get_table_names())
        finally:
            engine.dispose()
    assert set(Base.metadata.tables) <= tables
    assert "alembic_version" in tables
