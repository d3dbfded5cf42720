"""store_many: a batch of best-effort reports, one transaction, one bad report costs itself."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

from cloud.db.batches import store_many


@pytest.fixture
def engine() -> Engine:
    engine = create_engine("sqlite://")
    with engine.begin() as conn:
        conn.execute(text("create table pct (k text primary key, v integer check (v <= 100))"))
    return engine


def _store(engine: Engine, table: str = "pct"):  # type: ignore[no-untyped-def]
    calls: list[int] = []

    def store(rows: Sequence[tuple[str, int]]) -> None:
        calls.append(len(rows))
        with engine.begin() as conn:
            conn.execute(
                text(f"insert into {table} (k, v) values (:k, :v)"),
                [{"k": k, "v": v} for k, v in rows],
            )

    return store, calls


def _stored(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        rows = conn.execute(text("select k, v from pct")).all()
    return {str(row[0]): int(row[1]) for row in rows}


def test_a_good_batch_is_one_transaction(engine: Engine) -> None:
    store, calls = _store(engine)
    assert store_many(store, [("a", 1), ("b", 2), ("c", 3)], "levels")
    assert calls == [3]
    assert _stored(engine) == {"a": 1, "b": 2, "c": 3}


def test_one_refused_report_does_not_lose_the_others(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    store, calls = _store(engine)
    assert not store_many(store, [("a", 1), ("bad", 400), ("c", 3)], "levels")
    assert _stored(engine) == {"a": 1, "c": 3}  # the batch rolled back, then one by one
    assert calls == [3, 1, 1, 1]
    assert "one at a time" in caplog.text
    assert "could not store one report (levels)" in caplog.text


def test_a_database_that_is_away_is_not_asked_again_per_report(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    store, calls = _store(engine, table="no_such_table")  # OperationalError, like a lost DB
    assert not store_many(store, [("a", 1), ("b", 2)], "levels")
    assert calls == [2]
    assert "the database is not answering" in caplog.text


def test_nothing_to_store_touches_nothing(engine: Engine) -> None:
    store, calls = _store(engine)
    assert store_many(store, [], "levels")
    assert calls == []
