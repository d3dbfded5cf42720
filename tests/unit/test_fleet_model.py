"""A simulated gateway speaks the contract: what it sends parses as the agent's messages,
and it takes an access snapshot only when it is newer."""

from __future__ import annotations

from firmware_sim.fleet.model import SimGateway
from protocol import messages
from protocol.messages import (
    AccessAppliedData,
    AccessGrantEntry,
    AccessSnapshotData,
    GatewayState,
    LockAccess,
    LockEventData,
    LockEventKind,
    MessageType,
    StatusData,
    TelemetryData,
)

NOW = 1_800_000_000.0


def clinic() -> SimGateway:
    return SimGateway.create("fleet-00010", "gw-1", locks=2, displays=2, started_at=NOW)


def snapshot(version: int, grant: str = "g-1") -> bytes:
    entry = AccessGrantEntry(grant_id=grant, tag="ab" * 16, start=int(NOW), end=int(NOW) + 3600)
    data = AccessSnapshotData(
        version=version,
        locks=[LockAccess(lock_id="fleet-00010-l1", grants=[entry])],
    )
    return messages.make(MessageType.ACCESS_SNAPSHOT, data, ts=NOW)


def test_birth_and_will_name_the_locks() -> None:
    gw = clinic()
    for state in GatewayState:
        _env, data = messages.parse(gw.status(state, NOW))
        assert isinstance(data, StatusData)
        assert data.state is state
        assert data.locks == ["fleet-00010-l1", "fleet-00010-l2"]
    assert gw.client_id == "fleet-00010-gw-1"
    assert gw.subscriptions == (
        "denen/v1/fleet-00010/gw-1/access",
        "denen/v1/fleet-00010/gw-1/display",
    )


def test_telemetry_reports_every_lock_and_display_with_a_draining_battery() -> None:
    gw = clinic()
    _env, fresh = messages.parse(gw.telemetry(NOW, 0, 0))
    _env, later = messages.parse(gw.telemetry(NOW + 200 * 86400, 200 * 86400, 3))
    assert isinstance(fresh, TelemetryData)
    assert isinstance(later, TelemetryData)
    assert [lock.lock_id for lock in fresh.locks] == ["fleet-00010-l1", "fleet-00010-l2"]
    assert [d.display_id for d in fresh.displays] == ["fleet-00010-d1", "fleet-00010-d2"]
    assert later.outbox_depth == 3
    assert all(
        (b.battery_pct or 0) < (a.battery_pct or 0)
        for a, b in zip(fresh.locks, later.locks, strict=True)
    )


def test_lock_events_carry_each_locks_own_sequence() -> None:
    gw = clinic()
    events = [messages.parse(p)[1] for p in gw.lock_events(8, NOW)]
    assert all(isinstance(e, LockEventData) for e in events)
    keys = [(e.lock_id, e.seq) for e in events if isinstance(e, LockEventData)]
    assert len(set(keys)) == 8
    assert sorted(seq for lock, seq in keys if lock == "fleet-00010-l1") == [1, 2, 3, 4]
    one_at_a_time = [messages.parse(gw.lock_events(1, NOW)[0])[1] for _ in range(2)]
    assert [(e.lock_id, e.seq) for e in one_at_a_time if isinstance(e, LockEventData)] == [
        ("fleet-00010-l1", 5),
        ("fleet-00010-l2", 5),
    ]
    kinds = [e.kind for e in events if isinstance(e, LockEventData)][::2]
    assert kinds == [
        LockEventKind.UNLOCKED,
        LockEventKind.DOOR_OPENED,
        LockEventKind.DOOR_CLOSED,
        LockEventKind.RELOCKED,
    ]


def test_a_newer_snapshot_is_taken_and_reported_per_lock_an_older_one_ignored() -> None:
    gw = clinic()
    reports = [messages.parse(p)[1] for p in gw.take_access(snapshot(3), NOW, 12.5)]
    assert [(r.lock_id, r.version) for r in reports if isinstance(r, AccessAppliedData)] == [
        ("fleet-00010-l1", 3),
        ("fleet-00010-l2", 3),
    ]
    first = reports[0]
    assert isinstance(first, AccessAppliedData)
    assert first.grant_ids == ["g-1"]
    assert (gw.access_version, gw.access_taken_at) == (3, 12.5)
    assert gw.take_access(snapshot(2), NOW, 13.0) == []
    assert gw.take_access(snapshot(3), NOW, 13.0) == []
    assert gw.take_access(b"", NOW, 13.0) == []  # a cleared retained topic
    assert gw.take_access(b"{not json", NOW, 13.0) == []
    assert (gw.access_version, gw.access_taken_at, gw.malformed) == (3, 12.5, 1)
    _env, event = messages.parse(gw.lock_events(1, NOW)[0])
    assert isinstance(event, LockEventData)
    assert event.grant_id == "g-1"  # the unlock names the PIN the lock holds
