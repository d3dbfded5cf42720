"""Offline-PIN revocation on the wire and in the agent, without I/O: the snapshot's
``revoked_offline`` entries, their compatibility with peers that predate them, and the
list the agent sends (expired entries dropped)."""

from __future__ import annotations

import json

import pytest

from edge.devices.slot_loader import live_revocations
from protocol.errors import MessageError
from protocol.lock_wire import MAX_REVOCATIONS_PER_FRAME, decode_revocations, encode_revocations
from protocol.messages import (
    AccessAppliedData,
    AccessSnapshotData,
    LockAccess,
    MessageType,
    RevokedOffline,
    make,
    parse,
)
from protocol.offline_pin import OfflinePinError, OfflinePinId

PID = OfflinePinId(start_hour=500_000, hours=3, nonce=2)


def test_an_entry_is_the_wire_entry_in_hex_and_round_trips() -> None:
    entry = RevokedOffline.of(PID)
    assert bytes.fromhex(entry.id) == encode_revocations([PID])[1:]
    assert entry.expires_at == PID.expires_at
    assert entry.pin_id() == PID
    snapshot = AccessSnapshotData(
        version=3, locks=[LockAccess(lock_id="d", revoked_offline=[entry])]
    )
    _, parsed = parse(make(MessageType.ACCESS_SNAPSHOT, snapshot, ts=1))
    assert parsed == snapshot
    assert decode_revocations(encode_revocations([entry.pin_id()])) == [PID]


def test_new_fields_stay_off_the_wire_while_empty() -> None:
    # an agent that predates offline PINs forbids unknown fields: it still reads these
    raw = json.loads(
        make(
            MessageType.ACCESS_SNAPSHOT,
            AccessSnapshotData(version=1, locks=[LockAccess(lock_id="d")]),
            ts=1,
        )
    )
    assert raw["data"]["locks"] == [{"lock_id": "d", "grants": []}]
    applied = json.loads(
        make(MessageType.ACCESS_APPLIED, AccessAppliedData(lock_id="d", version=1), ts=1)
    )
    assert "revocations" not in applied["data"]
    assert "revocation_error" not in applied["data"]


def test_a_malformed_entry_is_refused() -> None:
    bad = {
        "v": 1,
        "type": "access_snapshot",
        "id": "x",
        "ts": 1,
        "data": {
            "version": 1,
            "locks": [{"lock_id": "d", "revoked_offline": [{"id": "zz", "expires_at": 1}]}],
        },
    }
    with pytest.raises(MessageError, match="revoked_offline"):
        parse(json.dumps(bad))
    with pytest.raises(OfflinePinError):
        RevokedOffline(id="00000001" + "00" + "00", expires_at=1).pin_id()  # 0 hours


def test_the_agent_sends_only_live_entries_latest_expiry_first() -> None:
    old = OfflinePinId(PID.start_hour - 10, 1, 0)
    later = OfflinePinId(PID.start_hour + 5, 2, 0)
    broken = RevokedOffline(id="0000000100" + "00", expires_at=PID.expires_at + 10**6)
    access = LockAccess(
        lock_id="d",
        revoked_offline=[RevokedOffline.of(p) for p in (old, PID, later)] + [broken],
    )
    assert live_revocations(access, now=old.expires_at) == [later, PID]
    assert live_revocations(access, now=later.expires_at) == []
    many = [OfflinePinId(PID.start_hour + i // 8, 1, i % 8) for i in range(200)]
    capped = live_revocations(
        LockAccess(lock_id="d", revoked_offline=[RevokedOffline.of(p) for p in many]), now=0
    )
    assert len(capped) == MAX_REVOCATIONS_PER_FRAME
