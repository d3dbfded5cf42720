"""The outbox and the state store: durable, ordered, deduplicated, and honest when full."""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

import pytest

from edge.backoff import Backoff
from edge.errors import OutboxError
from edge.outbox import Outbox
from edge.store import Store
from protocol.messages import AccessGrantEntry, AccessSnapshotData, LockAccess


@pytest.fixture
def outbox(tmp_path: Path):  # type: ignore[no-untyped-def]
    box = Outbox(tmp_path / "outbox.sqlite3")
    box.open()
    yield box
    box.close()


def test_rows_come_out_in_order(outbox: Outbox) -> None:
    for i in range(5):
        assert outbox.add("t", b"%d" % i, f"k{i}")
    assert [r.payload for r in outbox.peek(3)] == [b"0", b"1", b"2"]
    assert outbox.depth() == 5


def test_same_key_is_stored_once(outbox: Outbox) -> None:
    assert outbox.add("t", b"first", "event:l1:7")
    assert not outbox.add("t", b"again", "event:l1:7")
    assert [r.payload for r in outbox.peek(10)] == [b"first"]


def test_a_delivered_key_is_not_stored_again(outbox: Outbox) -> None:
    outbox.add("t", b"x", "event:l1:7")
    outbox.remove(outbox.peek(1)[0].id, now=100.0)
    assert outbox.depth() == 0
    assert not outbox.add("t", b"x", "event:l1:7")
    assert outbox.knows("event:l1:7")


def test_remove_deletes_only_that_row(outbox: Outbox) -> None:
    outbox.add("t", b"a", "a")
    outbox.add("t", b"b", "b")
    outbox.remove(outbox.peek(1)[0].id)
    assert [r.dedupe_key for r in outbox.peek(5)] == ["b"]


def test_rows_survive_reopen(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    first = Outbox(path)
    first.open()
    first.add("denen/v1/s/g/events", b"payload", "event:l1:1")
    first.close()
    second = Outbox(path)
    second.open()
    try:
        (row,) = second.peek(5)
        assert (row.topic, row.payload, row.qos) == ("denen/v1/s/g/events", b"payload", 1)
        assert second.wakeup.is_set()  # a reopened backlog wakes the publisher
        assert not second.add("t", b"x", "event:l1:1")
    finally:
        second.close()


def test_delivered_keys_are_forgotten_after_the_window(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    box = Outbox(path, remember_delivered_s=60)
    box.open(now=1000.0)
    box.add("t", b"x", "k")
    box.remove(box.peek(1)[0].id, now=1000.0)
    box.close()
    box.open(now=2000.0)
    try:
        assert not box.knows("k")
    finally:
        box.close()


def test_full_outbox_raises_and_keeps_what_it_had(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "outbox.sqlite3", max_bytes=64 * 1024)
    box.open()
    try:
        stored, error = 0, None
        for i in range(1000):
            try:
                box.add("t", bytes(2000), f"k{i}")
            except OutboxError as exc:
                error = exc
                break
            stored += 1
        assert error is not None
        assert "full; nothing was stored" in str(error)
        assert stored > 0
        assert box.depth() == stored
        assert not box.knows(f"k{stored}")
    finally:
        box.close()


def test_wakeup_is_set_by_a_new_row_only(outbox: Outbox) -> None:
    outbox.add("t", b"x", "k")
    outbox.wakeup.clear()
    outbox.add("t", b"x", "k")
    assert not outbox.wakeup.is_set()
    outbox.add("t", b"y", "k2")
    assert outbox.wakeup.is_set()


def test_a_withdrawn_row_is_gone_and_a_delivered_one_cannot_be_withdrawn(
    outbox: Outbox,
) -> None:
    outbox.add("t", b"checkin", "req-1")
    outbox.add("t", b"later", "req-2")
    row = outbox.withdraw("req-1")
    assert row is not None
    assert (row.payload, row.dedupe_key) == (b"checkin", "req-1")
    assert [r.dedupe_key for r in outbox.peek(5)] == ["req-2"]  # never published now
    assert outbox.withdraw("req-1") is None  # once only
    assert not outbox.knows("req-1")  # nothing was delivered
    outbox.remove(outbox.peek(1)[0].id)
    assert outbox.withdraw("req-2") is None  # the broker has it: the caller must not redo it


def test_a_sensitive_row_leaves_no_copy_in_the_files(tmp_path: Path) -> None:
    card = b"3101000000000019"
    box = Outbox(tmp_path / "outbox.sqlite3")
    box.open()
    try:
        box.add("t", b'{"card": "' + card + b'"}', "req-1", sensitive=True)
        box.add("t", b'{"card": "' + card[::-1] + b'"}', "req-2", sensitive=True)
        box.remove(box.peek(1)[0].id)
        assert box.withdraw("req-2") is not None
        for path in tmp_path.iterdir():
            data = path.read_bytes()
            assert card not in data, path.name
            assert card[::-1] not in data, path.name
    finally:
        box.close()


def test_an_old_outbox_file_gains_the_sensitive_column(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    conn = sqlite3.connect(path)
    conn.execute(
        "CREATE TABLE outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL,"
        " payload BLOB NOT NULL, qos INTEGER NOT NULL, dedupe_key TEXT NOT NULL UNIQUE,"
        " created_at REAL NOT NULL)"
    )
    conn.execute(
        "INSERT INTO outbox (topic, payload, qos, dedupe_key, created_at)"
        " VALUES ('t', x'00', 1, 'old', 0)"
    )
    conn.commit()
    conn.close()
    box = Outbox(path)
    box.open()
    try:
        assert [r.dedupe_key for r in box.peek(5)] == ["old"]
        box.add("t", b"new", "new", sensitive=True)
        assert box.withdraw("new") is not None
    finally:
        box.close()


def _snapshot(version: int) -> AccessSnapshotData:
    grant = AccessGrantEntry(
        grant_id="00000000-0000-4000-8000-000000000001", tag="00" * 16, start=1, end=2
    )
    return AccessSnapshotData(version=version, locks=[LockAccess(lock_id="l1", grants=[grant])])


def test_store_keeps_the_newest_snapshot(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.sqlite3")
    store.open()
    try:
        assert store.save_snapshot(_snapshot(2))
        assert not store.save_snapshot(_snapshot(1))
        assert not store.save_snapshot(_snapshot(2))
        stored = store.lock_access("l1")
        assert stored is not None
        assert stored[0] == 2
        assert len(stored[1].grants) == 1
        assert store.lock_access("other") == (2, LockAccess(lock_id="other"))
        store.set_applied("l1", 2, ["g"], 5.0)
        applied = store.applied("l1")
        assert applied is not None
        assert (applied.version, applied.grant_ids) == (2, ["g"])
    finally:
        store.close()


def test_store_survives_reopen(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.sqlite3")
    store.open()
    store.save_snapshot(_snapshot(3))
    store.close()
    store.open()
    try:
        snap = store.snapshot()
        assert snap is not None
        assert snap.version == 3
    finally:
        store.close()


def test_backoff_is_capped_full_jitter() -> None:
    backoff = Backoff(0.5, 4.0, random.Random(1))
    delays = [backoff.next_delay() for _ in range(20)]
    assert all(0 <= d <= 4.0 for d in delays)
    assert max(delays[:1]) <= 0.5
    backoff.reset()
    assert backoff.next_delay() <= 0.5
